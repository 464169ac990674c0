//! Ciphertext format v1: building and defensive parsing.
//!
//! ```text
//! offset  size      field
//! 0       1         version            = 0x01
//! 1       1         algorithm id       = 0x01 (AES-256-GCM, HMAC-SHA-256 key commitment,
//!                                               96-bit random nonce)
//! 2       1         keyring kind       (1 = local, 2 = AWS KMS)
//! 3       1         key id length L    (1..=255)
//! 4       L         key id             (UTF-8)
//! 4+L     2         EDK length E       (u16 big-endian, 1..=65535)
//! 6+L     E         EDK bytes
//! 6+L+E   32        key commitment
//! 38+L+E  12        nonce
//! 50+L+E  n + 16    AES-256-GCM ciphertext and tag
//! ```
//!
//! The header is every byte before the nonce. AAD = header || canonical context bytes.
//! See `docs/ciphertext-format.md` for the rationale.
//!
//! This module is the one owner of that layout: the data-key cache gets its headers and AADs
//! from [`key_prefix`] and `header_and_aad`, the envelope seals and opens through `seal` and
//! `with_aad`, sizes come from [`FIXED_OVERHEAD`] and the EDK limits [`MAX_KEY_ID_LEN`] and
//! [`MAX_EDK_LEN`] (which the AWS KMS keyring checks its answers against).
//!
//! Format v2 (text prefix `lv2.`) differs only in the EDK fields: byte 2 is an EDK count
//! `C` (1..=255), followed by `C` entries laid out like v1's EDK fields (kind, key id length,
//! key id, EDK length, EDK). One EDK costs one byte more than v1.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::crypto::{KeyMaterial, COMMITMENT_LEN, NONCE_LEN, TAG_LEN};
use crate::{EncryptedDataKey, EnvelopeError, KeyringKind};

/// Format version written by this build.
pub const VERSION_1: u8 = 1;
/// Algorithm 1: AES-256-GCM with an HMAC-SHA-256 key commitment and a 96-bit random nonce.
pub const ALG_AES256GCM_HMACSHA256_COMMIT: u8 = 1;
/// Prefix of the text form (`lv1.` + base64url without padding of the binary form).
pub const TEXT_PREFIX: &str = "lv1.";
/// Format version 2: one or more EDKs of one data key (multi-keyring).
pub const VERSION_2: u8 = 2;
/// Prefix of the text form of format v2.
pub const TEXT_PREFIX_V2: &str = "lv2.";
/// The most EDKs a v2 ciphertext holds.
pub const MAX_EDKS: usize = 255;
/// Bytes of fixed overhead outside the EDK fields: version, algorithm, commitment, nonce, tag.
pub const FIXED_OVERHEAD: usize = 1 + 1 + COMMITMENT_LEN + NONCE_LEN + TAG_LEN;
/// The longest master key id an EDK entry holds (its length is one byte).
pub const MAX_KEY_ID_LEN: usize = 255;
/// The longest encrypted data key an EDK entry holds (its length is two bytes).
pub const MAX_EDK_LEN: usize = 65_535;

/// Bytes of one EDK entry: kind, key id length, key id, EDK length, EDK.
pub(crate) fn edk_entry_len(edk: &EncryptedDataKey) -> usize {
    1 + 1 + edk.key_id.len() + 2 + edk.ciphertext.len()
}

/// Bytes of the v1 ciphertext of an `n`-byte plaintext whose data key is wrapped as `edk`.
pub(crate) fn ciphertext_len_v1(edk: &EncryptedDataKey, n: usize) -> usize {
    FIXED_OVERHEAD + edk_entry_len(edk) + n
}

/// A data key's header (`prefix` from [`key_prefix`], then its commitment) followed by the
/// canonical context: the AAD of every message sealed with it. Returns the buffer and the
/// header's length (the header is the AAD's first bytes).
pub(crate) fn header_and_aad(prefix: &[u8], commitment: &[u8], ctx_bytes: &[u8]) -> (Vec<u8>, usize) {
    let header_len = prefix.len() + commitment.len();
    let mut aad = Vec::with_capacity(header_len + ctx_bytes.len());
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(commitment);
    aad.extend_from_slice(ctx_bytes);
    (aad, header_len)
}

/// One ciphertext: `header`, then `nonce`, then the AES-GCM body and tag of `plaintext` under
/// `aad` (which [`header_and_aad`] made from the same header).
pub(crate) fn seal(
    material: &KeyMaterial,
    header: &[u8],
    aad: &[u8],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(header);
    material.seal_into(nonce, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Runs `open` with the AAD of a parsed ciphertext (its header, then the canonical context),
/// built on the stack when it fits (the usual case), else on the heap.
pub(crate) fn with_aad<R>(header: &[u8], ctx_bytes: &[u8], open: impl FnOnce(&[u8]) -> R) -> R {
    let aad_len = header.len() + ctx_bytes.len();
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let aad: &mut [u8] = match stack.get_mut(..aad_len) {
        Some(s) => s,
        None => {
            heap.resize(aad_len, 0);
            &mut heap
        }
    };
    let (h, c) = aad.split_at_mut(header.len());
    h.copy_from_slice(header);
    c.copy_from_slice(ctx_bytes);
    open(aad)
}

/// A bounds-checked reader over untrusted bytes: every read returns
/// [`EnvelopeError::Malformed`] with the offset instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self.pos.checked_add(n).ok_or(EnvelopeError::Malformed { what, offset: self.pos })?;
        let s = self.buf.get(self.pos..end).ok_or(EnvelopeError::Malformed { what, offset: self.pos })?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        let s = self.take(1, what)?;
        s.first().copied().ok_or(EnvelopeError::Malformed { what, offset: self.pos })
    }

    pub(crate) fn u16_be(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        let s = self.take(2, what)?;
        let arr: [u8; 2] = s.try_into().map_err(|_| EnvelopeError::Malformed { what, offset: self.pos })?;
        Ok(u16::from_be_bytes(arr))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }
}

/// A parsed v1 or v2 ciphertext, borrowing from the input.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// Format version (1 or 2).
    pub(crate) version: u8,
    /// The first EDK (the only one in v1).
    pub(crate) kind: KeyringKind,
    pub(crate) key_id: &'a str,
    pub(crate) edk: &'a [u8],
    /// Number of EDKs (1 in v1).
    pub(crate) edk_count: usize,
    /// The EDK entries (v1: the EDK fields; v2: the entries after the count).
    pub(crate) edk_list: &'a [u8],
    /// Version, algorithm and every EDK field (bytes 0 up to the commitment): what names the
    /// data key's encrypted copies, used for cache keys (includes the version, so a v1 and a
    /// v2 ciphertext never share an entry).
    pub(crate) edk_fields: &'a [u8],
    pub(crate) commitment: &'a [u8],
    /// Everything before the nonce (the AAD prefix).
    pub(crate) header: &'a [u8],
    pub(crate) nonce: &'a [u8],
    /// AES-GCM ciphertext followed by the 16-byte tag.
    pub(crate) body: &'a [u8],
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("version byte")?;
    if version != VERSION_1 && version != VERSION_2 {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let alg = r.u8("algorithm id")?;
    if alg != ALG_AES256GCM_HMACSHA256_COMMIT {
        return Err(EnvelopeError::UnsupportedAlgorithm(alg));
    }
    let edk_count = if version == VERSION_2 {
        let at = r.offset();
        let c = r.u8("EDK count")?;
        if c == 0 {
            return Err(EnvelopeError::Malformed { what: "EDK count is 0", offset: at });
        }
        usize::from(c)
    } else {
        1
    };
    let list_start = r.offset();
    let (kind, key_id, edk) = read_edk(&mut r)?;
    for _ in 1..edk_count {
        read_edk(&mut r)?;
    }
    let fields_end = r.offset();
    let commitment = r.take(COMMITMENT_LEN, "key commitment")?;
    let header_end = r.offset();
    let nonce = r.take(NONCE_LEN, "nonce")?;
    let body_at = r.offset();
    let body = r.rest();
    if body.len() < TAG_LEN {
        return Err(EnvelopeError::Malformed { what: "ciphertext shorter than the tag", offset: body_at });
    }
    let header = bytes.get(..header_end).ok_or(EnvelopeError::Malformed { what: "header", offset: 0 })?;
    let edk_fields =
        bytes.get(..fields_end).ok_or(EnvelopeError::Malformed { what: "EDK fields", offset: list_start })?;
    let edk_list = bytes
        .get(list_start..fields_end)
        .ok_or(EnvelopeError::Malformed { what: "EDK fields", offset: list_start })?;
    Ok(Parsed {
        version,
        kind,
        key_id,
        edk,
        edk_count,
        edk_list,
        edk_fields,
        commitment,
        header,
        nonce,
        body,
    })
}

/// One EDK entry: kind, key id length, key id, EDK length, EDK.
fn read_edk<'a>(r: &mut Reader<'a>) -> Result<(KeyringKind, &'a str, &'a [u8]), EnvelopeError> {
    let kind_byte = r.u8("keyring kind")?;
    let kind = KeyringKind::from_byte(kind_byte).ok_or(EnvelopeError::UnsupportedKeyring(kind_byte))?;
    let id_len_at = r.offset();
    let id_len = r.u8("key id length")?;
    if id_len == 0 {
        return Err(EnvelopeError::Malformed { what: "empty key id", offset: id_len_at });
    }
    let id_at = r.offset();
    let key_id = std::str::from_utf8(r.take(usize::from(id_len), "key id")?)
        .map_err(|_| EnvelopeError::Malformed { what: "key id is not UTF-8", offset: id_at })?;
    let edk_len_at = r.offset();
    let edk_len = r.u16_be("EDK length")?;
    if edk_len == 0 {
        return Err(EnvelopeError::Malformed { what: "empty EDK", offset: edk_len_at });
    }
    let edk = r.take(usize::from(edk_len), "EDK bytes")?;
    Ok((kind, key_id, edk))
}

impl Parsed<'_> {
    /// Every EDK, in order (owned: the cold path hands them to keyrings).
    pub(crate) fn edks(&self) -> Result<Vec<EncryptedDataKey>, EnvelopeError> {
        let mut r = Reader::new(self.edk_list);
        (0..self.edk_count)
            .map(|_| {
                read_edk(&mut r).map(|(kind, key_id, edk)| EncryptedDataKey {
                    kind,
                    key_id: key_id.to_owned(),
                    ciphertext: edk.to_vec(),
                })
            })
            .collect()
    }
}

/// Version, algorithm and EDK fields of a ciphertext holding `edks`: the header without the
/// commitment. v1 takes exactly one EDK; v2 one to 255.
pub(crate) fn key_prefix(version: u8, edks: &[EncryptedDataKey]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = vec![version, ALG_AES256GCM_HMACSHA256_COMMIT];
    match (version, edks) {
        (VERSION_1, [one]) => out.extend_from_slice(&edk_fields(one)?),
        (VERSION_2, list) if !list.is_empty() && list.len() <= MAX_EDKS => {
            out.push(list.len() as u8);
            for e in list {
                out.extend_from_slice(&edk_fields(e)?);
            }
        }
        (VERSION_1, _) => return Err(EnvelopeError::ApiMisuse("format v1 holds exactly one EDK")),
        (VERSION_2, _) => return Err(EnvelopeError::ApiMisuse("format v2 holds 1 to 255 EDKs")),
        _ => return Err(EnvelopeError::UnsupportedVersion(version)),
    }
    Ok(out)
}

/// Serializes the EDK fields (kind, key id length, key id, EDK length, EDK).
pub(crate) fn edk_fields(edk: &EncryptedDataKey) -> Result<Vec<u8>, EnvelopeError> {
    let id = edk.key_id.as_bytes();
    let id_len = u8::try_from(id.len()).ok().filter(|l| *l > 0).ok_or(EnvelopeError::Keyring(format!(
        "key id must be 1..={MAX_KEY_ID_LEN} bytes, got {}",
        id.len()
    )))?;
    let edk_len = u16::try_from(edk.ciphertext.len()).ok().filter(|l| *l > 0).ok_or(
        EnvelopeError::Keyring(format!("EDK must be 1..={MAX_EDK_LEN} bytes, got {}", edk.ciphertext.len())),
    )?;
    let mut out = Vec::with_capacity(edk_entry_len(edk));
    out.push(edk.kind.to_byte());
    out.push(id_len);
    out.extend_from_slice(id);
    out.extend_from_slice(&edk_len.to_be_bytes());
    out.extend_from_slice(&edk.ciphertext);
    Ok(out)
}

/// Binary → text form (`lv2.` for a v2 ciphertext, else `lv1.`).
pub(crate) fn to_text(bytes: &[u8]) -> String {
    let prefix = if bytes.first() == Some(&VERSION_2) { TEXT_PREFIX_V2 } else { TEXT_PREFIX };
    let mut s = String::with_capacity(prefix.len() + bytes.len().div_ceil(3) * 4);
    s.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s
}

/// Text form → binary. Offsets in errors count characters of the text.
pub(crate) fn from_text(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let (version, body) = match (text.strip_prefix(TEXT_PREFIX), text.strip_prefix(TEXT_PREFIX_V2)) {
        (Some(b), _) => (VERSION_1, b),
        (None, Some(b)) => (VERSION_2, b),
        (None, None) => {
            return Err(EnvelopeError::Malformed {
                what: "text form must start with \"lv1.\" or \"lv2.\"",
                offset: 0,
            })
        }
    };
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| EnvelopeError::Malformed {
        what: "text form is not base64url without padding",
        offset: 4,
    })?;
    // The prefix names the version: a v2 body behind `lv1.` (or the reverse) is not valid.
    match bytes.first() {
        Some(v) if *v != version && (*v == VERSION_1 || *v == VERSION_2) => Err(EnvelopeError::Malformed {
            what: "the text prefix does not match the format version",
            offset: 0,
        }),
        _ => Ok(bytes),
    }
}

/// Header information of a ciphertext, for `larder inspect`. Contains no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderInfo {
    /// Format version.
    pub version: u8,
    /// Algorithm id.
    pub algorithm: u8,
    /// A readable name of the algorithm.
    pub algorithm_name: &'static str,
    /// Keyring kind that can open the data key.
    pub keyring: KeyringKind,
    /// Master key id (local key id or KMS key ARN).
    pub key_id: String,
    /// Size of the encrypted data key in bytes.
    pub edk_len: usize,
    /// Size of the whole ciphertext in bytes.
    pub total_len: usize,
    /// Size of the encrypted plaintext in bytes.
    pub plaintext_len: usize,
    /// Bytes added to the plaintext (header, nonce, tag).
    pub overhead: usize,
    /// Every EDK (one in v1): keyring kind, master key id, EDK size.
    pub edks: Vec<EdkInfo>,
}

/// One encrypted data key of a ciphertext, for `larder inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdkInfo {
    /// Keyring kind that can open it.
    pub keyring: KeyringKind,
    /// Master key id.
    pub key_id: String,
    /// Size of the EDK in bytes.
    pub edk_len: usize,
}

pub(crate) fn inspect(bytes: &[u8]) -> Result<HeaderInfo, EnvelopeError> {
    let p = parse(bytes)?;
    let plaintext_len = p.body.len().saturating_sub(TAG_LEN);
    let edks = p
        .edks()?
        .into_iter()
        .map(|e| EdkInfo { keyring: e.kind, key_id: e.key_id, edk_len: e.ciphertext.len() })
        .collect();
    Ok(HeaderInfo {
        version: p.version,
        algorithm: ALG_AES256GCM_HMACSHA256_COMMIT,
        algorithm_name: "AES-256-GCM, HMAC-SHA-256 key commitment, 96-bit random nonce",
        keyring: p.kind,
        key_id: p.key_id.to_owned(),
        edk_len: p.edk.len(),
        total_len: bytes.len(),
        plaintext_len,
        overhead: bytes.len().saturating_sub(plaintext_len),
        edks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_panics_on_short_input() {
        for len in 0..80 {
            let bytes = vec![1u8; len];
            let _ = parse(&bytes);
        }
        assert!(matches!(parse(&[]), Err(EnvelopeError::Malformed { offset: 0, .. })));
        assert_eq!(parse(&[3]).unwrap_err(), EnvelopeError::UnsupportedVersion(3));
        assert_eq!(parse(&[1, 9]).unwrap_err(), EnvelopeError::UnsupportedAlgorithm(9));
        assert_eq!(parse(&[1, 1, 7]).unwrap_err(), EnvelopeError::UnsupportedKeyring(7));
        assert_eq!(
            parse(&[1, 1, 1, 0]).unwrap_err(),
            EnvelopeError::Malformed { what: "empty key id", offset: 3 }
        );
        assert_eq!(
            parse(&[1, 1, 1, 3, b'a']).unwrap_err(),
            EnvelopeError::Malformed { what: "key id", offset: 4 }
        );
    }

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let t = to_text(&[1, 2, 3, 255]);
        assert!(t.starts_with("lv1."));
        assert_eq!(from_text(&t).unwrap(), vec![1, 2, 3, 255]);
        assert!(from_text("lv2.AQID").is_err(), "a v1 body behind lv2.");
        assert!(from_text("lv3.AgID").is_err());
        assert!(from_text("lv1.AQ=D").is_err());
        assert!(from_text("").is_err());
    }
}
