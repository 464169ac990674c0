//! The value frame: what a shared tier stores for one entry (see `docs/cache-value-format.md`).
//!
//! ```text
//! offset  size  field
//!  0      2     magic "LC" (0x4c 0x43)
//!  2      1     version (1)
//!  3      1     flags: 0x02 = CBOR payload (else postcard); 0x04 = tagged (the body starts
//!               with a tag block); 0x08 = a tag record (alone); other bits reserved, must be 0
//!  4      8     write time, unix milliseconds, u64 little-endian
//! 12      8     TTL in milliseconds, u64 LE (expiry = write time + TTL)
//! 20      4     compute time δ in milliseconds, u32 LE (for XFetch)
//! 24      4     payload length n, u32 LE
//! 28      n     body: [tag block when flag 0x04] payload (postcard, or CBOR when flag 0x02)
//! 28+n   32     MAC: keyed BLAKE3 over bytes 0..28, then u16 LE key-text length, the key text,
//!               then the body
//! ```
//!
//! Tag block (flag 0x04): u8 count k (1..=32), then k times: u16 LE length L (1..=256), L
//! bytes of UTF-8 tag, 16 bytes of that tag's generation token (see `crate::tags`).
//!
//! Parsing never panics and never trusts a length it has not checked against the input.

use std::fmt;

/// The two magic bytes that open every frame.
pub const MAGIC: [u8; 2] = *b"LC";
/// The frame version this build writes and accepts.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 28;
/// Length of the MAC.
pub const MAC_LEN: usize = 32;
/// Flag bit: the payload is CBOR (RFC 8949), the language-neutral codec, instead of postcard.
pub const FLAG_CBOR: u8 = 0x02;
/// Every flag bit this build understands; a frame with any other bit set is refused.
pub const KNOWN_FLAGS: u8 = FLAG_CBOR | FLAG_TAGS | FLAG_TAG_RECORD;
/// Flag bit: the body opens with a tag block (the entry's tags and their generation tokens).
pub const FLAG_TAGS: u8 = 0x04;
/// Flag bit: the frame is a tag record (its payload is the tag's 16-byte generation token).
/// Never combined with another flag.
pub const FLAG_TAG_RECORD: u8 = 0x08;
/// Most tags one entry may carry.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 256;
/// Length of a tag's generation token.
pub const TOKEN_LEN: usize = 16;
/// The BLAKE3 `derive_key` context for the MAC key (applied through `KeySecret::derive`).
pub const MAC_KEY_CONTEXT: &str = "larder cache value mac v1";

/// Why a stored frame was refused. Every one of them is treated as a miss and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than a header plus a MAC, or the payload length disagrees with the size.
    Truncated,
    /// The first two bytes are not `LC`.
    BadMagic,
    /// A frame version this build does not read.
    UnsupportedVersion(u8),
    /// Reserved flag bits are set.
    BadFlags(u8),
    /// The MAC does not verify: corrupt, forged, written under another key or another secret.
    BadMac,
    /// The key text is longer than 65,535 bytes (cannot be bound into the MAC).
    KeyTooLong,
    /// The payload is longer than 4 GiB − 1.
    PayloadTooLong,
    /// The tag block is malformed (count, a length, UTF-8), or tags were given that cannot be
    /// framed (none, more than [`MAX_TAGS`], an empty or over-long tag).
    BadTags,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("cache frame is truncated"),
            FrameError::BadMagic => f.write_str("cache frame has a bad magic number"),
            FrameError::UnsupportedVersion(v) => write!(f, "cache frame version {v} is not supported"),
            FrameError::BadFlags(b) => write!(f, "cache frame has reserved flags set ({b:#04x})"),
            FrameError::BadMac => f.write_str("cache frame MAC does not verify"),
            FrameError::KeyTooLong => f.write_str("cache key text is too long to frame"),
            FrameError::PayloadTooLong => f.write_str("cache payload is too long to frame"),
            FrameError::BadTags => f.write_str("cache frame has a malformed tag block"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The key that authenticates frames. Zeroed on drop; no `Debug` of its bytes.
pub struct MacKey([u8; 32]);

impl MacKey {
    /// Derives the MAC key from a deployment secret.
    pub fn from_secret(secret: &larder_key::KeySecret) -> Self {
        MacKey(secret.derive(MAC_KEY_CONTEXT))
    }

    fn mac(&self, header: &[u8], key: &str, payload: &[u8]) -> Result<[u8; MAC_LEN], FrameError> {
        let key_len = u16::try_from(key.len()).map_err(|_| FrameError::KeyTooLong)?;
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(header);
        h.update(&key_len.to_le_bytes());
        h.update(key.as_bytes());
        h.update(payload);
        Ok(*h.finalize().as_bytes())
    }
}

impl Drop for MacKey {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// The metadata of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// When the value was written, unix milliseconds.
    pub written_ms: u64,
    /// Its time to live, milliseconds.
    pub ttl_ms: u64,
    /// How long computing it took, milliseconds (XFetch's δ).
    pub delta_ms: u32,
}

impl FrameMeta {
    /// Unix milliseconds at which the entry expires (saturating).
    pub fn expires_ms(&self) -> u64 {
        self.written_ms.saturating_add(self.ttl_ms)
    }
}

/// A verified frame: its metadata and a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Write time, TTL and compute time.
    pub meta: FrameMeta,
    /// The serialized value.
    pub payload: &'a [u8],
    /// The flags byte ([`FLAG_CBOR`] says how the payload is serialized).
    pub flags: u8,
    /// The entry's tags and their tokens (empty unless [`FLAG_TAGS`] is set).
    pub tags: FrameTags<'a>,
}

/// A frame's verified tag block: `(tag, generation token)` pairs, in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameTags<'a>(&'a [u8]);

impl<'a> FrameTags<'a> {
    /// No tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags with their tokens.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, [u8; TOKEN_LEN])> + 'a {
        let b = self.0;
        let k = b.first().map_or(0, |&k| usize::from(k));
        let mut at = 1;
        (0..k).filter_map(move |_| {
            let (tag, token, next) = tag_at(b, at)?;
            at = next;
            Some((tag, token))
        })
    }

    /// Splits a tagged body into its checked tag block and the payload after it.
    fn split(body: &'a [u8]) -> Result<(FrameTags<'a>, &'a [u8]), FrameError> {
        let k = usize::from(*body.first().ok_or(FrameError::BadTags)?);
        if k == 0 || k > MAX_TAGS {
            return Err(FrameError::BadTags);
        }
        let mut at = 1;
        for _ in 0..k {
            let (_, _, next) = tag_at(body, at).ok_or(FrameError::BadTags)?;
            at = next;
        }
        Ok((FrameTags(&body[..at]), &body[at..]))
    }
}

/// The tag starting at `at`: its text, its token and where the next one starts; `None` if
/// the bytes do not hold a well-formed one.
fn tag_at(b: &[u8], at: usize) -> Option<(&str, [u8; TOKEN_LEN], usize)> {
    let len_bytes = b.get(at..at.checked_add(2)?)?;
    let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    if len == 0 || len > MAX_TAG_LEN {
        return None;
    }
    let start = at + 2;
    let tag = std::str::from_utf8(b.get(start..start.checked_add(len)?)?).ok()?;
    let tok = b.get(start + len..start + len + TOKEN_LEN)?;
    let mut token = [0u8; TOKEN_LEN];
    token.copy_from_slice(tok);
    Some((tag, token, start + len + TOKEN_LEN))
}

/// Encodes a tag block (checked: 1..=[`MAX_TAGS`] tags of 1..=[`MAX_TAG_LEN`] bytes).
fn tag_block(tags: &[(&str, [u8; TOKEN_LEN])]) -> Result<Vec<u8>, FrameError> {
    if tags.is_empty() || tags.len() > MAX_TAGS {
        return Err(FrameError::BadTags);
    }
    let mut out = Vec::with_capacity(1 + tags.iter().map(|(t, _)| 2 + t.len() + TOKEN_LEN).sum::<usize>());
    out.push(u8::try_from(tags.len()).map_err(|_| FrameError::BadTags)?);
    for (tag, token) in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(FrameError::BadTags);
        }
        out.extend_from_slice(&u16::try_from(tag.len()).map_err(|_| FrameError::BadTags)?.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(token);
    }
    Ok(out)
}

/// Writes a tagged frame: `flags` ([`FLAG_CBOR`] or 0) plus [`FLAG_TAGS`], the tag block
/// built from `tags`, then `payload`.
pub fn seal_tagged(
    mac_key: &MacKey,
    key: &str,
    meta: FrameMeta,
    flags: u8,
    tags: &[(&str, [u8; TOKEN_LEN])],
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    if flags & !FLAG_CBOR != 0 {
        return Err(FrameError::BadFlags(flags));
    }
    let mut body = tag_block(tags)?;
    body.extend_from_slice(payload);
    seal_with_flags(mac_key, key, meta, flags | FLAG_TAGS, &body)
}

/// Writes a frame for a postcard `payload` stored under `key`.
pub fn seal(mac_key: &MacKey, key: &str, meta: FrameMeta, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    seal_with_flags(mac_key, key, meta, 0, payload)
}

/// Writes a frame with the given flags byte (e.g. [`FLAG_CBOR`]); unknown bits are refused.
/// With [`FLAG_TAGS`], `payload` is the whole body (tag block included, unchecked here: use
/// [`seal_tagged`]).
pub fn seal_with_flags(
    mac_key: &MacKey,
    key: &str,
    meta: FrameMeta,
    flags: u8,
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    if flags & !KNOWN_FLAGS != 0 {
        return Err(FrameError::BadFlags(flags));
    }
    let n = u32::try_from(payload.len()).map_err(|_| FrameError::PayloadTooLong)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + MAC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&meta.written_ms.to_le_bytes());
    out.extend_from_slice(&meta.ttl_ms.to_le_bytes());
    out.extend_from_slice(&meta.delta_ms.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    let mac = mac_key.mac(&out, key, payload)?;
    out.extend_from_slice(payload);
    out.extend_from_slice(&mac);
    Ok(out)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Parses and verifies a frame read from under `key`.
pub fn open<'a>(mac_key: &MacKey, key: &str, bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let (header, rest) = bytes.split_at_checked(HEADER_LEN).ok_or(FrameError::Truncated)?;
    if header[0..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if header[2] != VERSION {
        return Err(FrameError::UnsupportedVersion(header[2]));
    }
    let flags = header[3];
    if flags & !KNOWN_FLAGS != 0 || (flags & FLAG_TAG_RECORD != 0 && flags != FLAG_TAG_RECORD) {
        return Err(FrameError::BadFlags(flags));
    }
    let meta = FrameMeta {
        written_ms: le_u64(&header[4..12]),
        ttl_ms: le_u64(&header[12..20]),
        delta_ms: le_u32(&header[20..24]),
    };
    let n = usize::try_from(le_u32(&header[24..28])).map_err(|_| FrameError::Truncated)?;
    if rest.len() != n.checked_add(MAC_LEN).ok_or(FrameError::Truncated)? {
        return Err(FrameError::Truncated);
    }
    let (payload, mac) = rest.split_at(n);
    let expected = mac_key.mac(header, key, payload)?;
    // Constant-time comparison (blake3::Hash's PartialEq is constant time).
    if blake3::Hash::from(expected) != blake3::Hash::from_slice(mac).map_err(|_| FrameError::Truncated)? {
        return Err(FrameError::BadMac);
    }
    let (tags, payload) =
        if flags & FLAG_TAGS != 0 { FrameTags::split(payload)? } else { (FrameTags::default(), payload) };
    Ok(Frame { meta, payload, flags, tags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use larder_key::KeySecret;

    fn key() -> MacKey {
        MacKey::from_secret(&KeySecret::from_hex(&"11".repeat(32)).unwrap())
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let meta = FrameMeta { written_ms: 1_700_000_000_000, ttl_ms: 600_000, delta_ms: 100 };
        let f = seal(&k, "loan_calc:v1:abc", meta, b"payload").unwrap();
        let opened = open(&k, "loan_calc:v1:abc", &f).unwrap();
        assert_eq!(opened.meta, meta);
        assert_eq!(opened.payload, b"payload");
        // Copied to another key: refused.
        assert_eq!(open(&k, "loan_calc:v1:abd", &f), Err(FrameError::BadMac));
        // Another secret: refused.
        let other = MacKey::from_secret(&KeySecret::from_hex(&"22".repeat(32)).unwrap());
        assert_eq!(open(&other, "loan_calc:v1:abc", &f), Err(FrameError::BadMac));
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let k = key();
        let meta = FrameMeta { written_ms: 5, ttl_ms: 6, delta_ms: 7 };
        let f = seal(&k, "t:v1:x", meta, b"hello world").unwrap();
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(open(&k, "t:v1:x", &g).is_err(), "flip at byte {i} bit {bit} accepted");
            }
        }
        for len in 0..f.len() {
            assert!(open(&k, "t:v1:x", &f[..len]).is_err());
        }
        let mut longer = f.clone();
        longer.push(0);
        assert_eq!(open(&k, "t:v1:x", &longer), Err(FrameError::Truncated));
    }

    #[test]
    fn garbage_never_panics() {
        let k = key();
        let mut state = 0x9e3779b97f4a7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert!(open(&k, "t:v1:x", &bytes).is_err());
        }
        // A header claiming a huge payload.
        let mut h = seal(&k, "t:v1:x", FrameMeta { written_ms: 0, ttl_ms: 0, delta_ms: 0 }, b"").unwrap();
        h[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(open(&k, "t:v1:x", &h), Err(FrameError::Truncated));
        let mut v = seal(&k, "t:v1:x", FrameMeta { written_ms: 0, ttl_ms: 0, delta_ms: 0 }, b"").unwrap();
        v[2] = 0;
        assert_eq!(open(&k, "t:v1:x", &v), Err(FrameError::UnsupportedVersion(0)));
    }
}
