//! Blind indexes: keyed, truncated digests of normalized values, so an encrypted column can be
//! searched for exact matches without decrypting it (see `docs/blind-index.md`).
//!
//! A blind index of a phone number is stored next to its ciphertext, in a column with an
//! ordinary database index. To find a customer's rows, compute the blind index of the phone
//! number searched for, select the rows with that index value, and decrypt only those rows: the
//! index is truncated on purpose, so some rows are *false positives* (another number with the
//! same truncated digest) and are removed by comparing the decrypted, normalized values.
//!
//! Keys: every index is keyed by a 32-byte **index key** that is not an encryption key (the
//! `index` record of the local keyring file, [`LocalKeyring::blind_indexer`]
//! (crate::LocalKeyring::blind_indexer), or [`BlindIndexer::from_key_bytes`] for a key kept
//! elsewhere). Each index (name, normalizer, part, bits, encryption context) gets its own key
//! derived from it with HMAC-SHA-256, so two indexes over the same column are unrelated and a
//! 16-bit index is not a prefix of a 32-bit one.
//!
//! ```
//! use larder_envelope::blind::{BlindIndexer, IndexSpec, Normalizer, Part};
//! use larder_envelope::EncryptionContext;
//!
//! let indexer = BlindIndexer::from_key_bytes("i1", [7u8; 32]);
//! let ctx = EncryptionContext::new().with("table", "inquiries").with("column", "phone");
//! let spec = IndexSpec::new("phone", Normalizer::Phone, 16)?;
//! let a = indexer.blind_index(&spec, "010-1234-5678", &ctx)?;
//! let b = indexer.blind_index(&spec, "01012345678", &ctx)?;
//! assert_eq!(a, b);
//! assert_eq!(a.to_hex().len(), 4);
//! // A partial index: the last 4 digits only.
//! let last4 = IndexSpec::new("phone_last4", Normalizer::Phone, 8)?.part(Part::Last(4))?;
//! assert_eq!(
//!     indexer.blind_index(&last4, "010-9999-5678", &ctx)?,
//!     indexer.blind_index(&last4, "02-123-5678", &ctx)?,
//! );
//! # Ok::<(), larder_envelope::blind::BlindIndexError>(())
//! ```

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::EncryptionContext;

type HmacSha256 = Hmac<Sha256>;

/// The label that starts the derivation input of every index key.
const INDEX_LABEL: &[u8] = b"larder blind index v1";
/// The default size of an index when none is given (CLI): 65,536 buckets.
pub const DEFAULT_BITS: u16 = 16;
/// The largest index size (a whole HMAC-SHA-256 output).
pub const MAX_BITS: u16 = 256;
/// The longest value accepted (characters, after trimming).
const MAX_VALUE_CHARS: usize = 1024;

/// Why a blind index could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlindIndexError {
    /// The value is not a valid input of the normalizer (`kind` is `phone`, `email`, ...).
    InvalidValue {
        /// The normalizer's name.
        kind: &'static str,
        /// What is wrong (never the value itself: it is personal data).
        reason: &'static str,
    },
    /// The index specification is not valid.
    BadSpec(String),
    /// A compound index got a different number of values than it has fields.
    ValueCount {
        /// Fields of the index.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The encryption context cannot be encoded (larger than the format's 32-bit length).
    ContextTooLarge,
}

impl fmt::Display for BlindIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlindIndexError::InvalidValue { kind, reason } => write!(f, "not a valid {kind}: {reason}"),
            BlindIndexError::BadSpec(s) => write!(f, "bad blind index specification: {s}"),
            BlindIndexError::ValueCount { expected, got } => {
                write!(f, "the index has {expected} field(s) but {got} value(s) were given")
            }
            BlindIndexError::ContextTooLarge => f.write_str("the encryption context is too large to encode"),
        }
    }
}

impl std::error::Error for BlindIndexError {}

fn invalid(kind: &'static str, reason: &'static str) -> BlindIndexError {
    BlindIndexError::InvalidValue { kind, reason }
}

/// How a value is brought to one canonical form before it is indexed, so that spellings of the
/// same value give the same index. Every normalizer first trims surrounding white space and
/// applies Unicode NFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Normalizer {
    /// Phone numbers: digits only (`010-1234-5678`, `010 1234 5678`, `(010) 1234.5678` and
    /// `01012345678` are one value); `+82` becomes the Korean trunk `0` (`+82 10-1234-5678` →
    /// `01012345678`); another country code keeps a leading `+`. 4 to 15 digits.
    Phone,
    /// E-mail addresses: lowercase (Unicode); exactly one `@` with text on both sides; no
    /// white space or control characters.
    Email,
    /// Names: white space runs become one space; lowercase (Unicode).
    Name,
    /// No change beyond trimming and NFC.
    Text,
}

impl Normalizer {
    /// The normalizer's name (`phone`, `email`, `name`, `text`), used in the key derivation.
    pub fn name(self) -> &'static str {
        match self {
            Normalizer::Phone => "phone",
            Normalizer::Email => "email",
            Normalizer::Name => "name",
            Normalizer::Text => "text",
        }
    }

    /// Parses a name given by [`Normalizer::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "phone" => Some(Normalizer::Phone),
            "email" => Some(Normalizer::Email),
            "name" => Some(Normalizer::Name),
            "text" => Some(Normalizer::Text),
            _ => None,
        }
    }

    /// The canonical form of `value`. Personal data: zeroized on drop.
    pub fn normalize(self, value: &str) -> Result<Zeroizing<String>, BlindIndexError> {
        let kind = self.name();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(invalid(kind, "empty"));
        }
        if trimmed.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(kind, "longer than 1024 characters"));
        }
        let nfc: Zeroizing<String> = Zeroizing::new(trimmed.nfc().collect());
        match self {
            Normalizer::Phone => phone(&nfc),
            Normalizer::Email => {
                if nfc.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(kind, "contains white space or control characters"));
                }
                let lower = Zeroizing::new(nfc.to_lowercase());
                match lower.split_once('@') {
                    Some((local, domain))
                        if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
                    {
                        Ok(lower)
                    }
                    _ => Err(invalid(kind, "expected exactly one @ with text on both sides")),
                }
            }
            Normalizer::Name => {
                if nfc.chars().any(|c| c.is_control() && !c.is_whitespace()) {
                    return Err(invalid(kind, "contains control characters"));
                }
                let mut out = Zeroizing::new(String::with_capacity(nfc.len()));
                for (i, word) in nfc.split_whitespace().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
                Ok(Zeroizing::new(out.to_lowercase()))
            }
            Normalizer::Text => Ok(nfc),
        }
    }
}

fn phone(s: &str) -> Result<Zeroizing<String>, BlindIndexError> {
    let (plus, rest) = match s.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut digits = Zeroizing::new(String::with_capacity(16));
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(invalid("phone", "only digits, spaces, - . ( ) and a leading + are allowed")),
        }
    }
    let out = if plus {
        match digits.strip_prefix("82") {
            // +82 10-…: the Korean national form has the trunk 0 instead of the country code
            // (and someone writing +82 010-… already typed it).
            Some(national) if national.starts_with('0') => Zeroizing::new(national.to_owned()),
            Some(national) => Zeroizing::new(format!("0{national}")),
            None => Zeroizing::new(format!("+{}", digits.as_str())),
        }
    } else {
        digits
    };
    let n = out.bytes().filter(u8::is_ascii_digit).count();
    if !(4..=15).contains(&n) {
        return Err(invalid("phone", "expected 4 to 15 digits"));
    }
    Ok(out)
}

/// Which part of the normalized value is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// The whole normalized value.
    Full,
    /// The last `n` characters (for a phone number: the last `n` digits). A shorter value is an
    /// error.
    Last(u8),
    /// The first `n` characters. A shorter value is an error.
    First(u8),
    /// The domain of an e-mail address (after the `@`). Only with [`Normalizer::Email`].
    Domain,
}

impl Part {
    fn descriptor(self) -> String {
        match self {
            Part::Full => String::new(),
            Part::Last(n) => format!(":last{n}"),
            Part::First(n) => format!(":first{n}"),
            Part::Domain => ":domain".into(),
        }
    }

    /// Parses `full`, `last<N>`, `first<N>` or `domain`.
    pub fn parse(s: &str) -> Option<Self> {
        let n = |rest: &str| rest.parse::<u8>().ok().filter(|n| *n > 0);
        match s {
            "full" => Some(Part::Full),
            "domain" => Some(Part::Domain),
            _ => {
                if let Some(r) = s.strip_prefix("last") {
                    n(r).map(Part::Last)
                } else if let Some(r) = s.strip_prefix("first") {
                    n(r).map(Part::First)
                } else {
                    None
                }
            }
        }
    }

    fn apply(self, kind: &'static str, value: &str) -> Result<Zeroizing<String>, BlindIndexError> {
        match self {
            Part::Full => Ok(Zeroizing::new(value.to_owned())),
            Part::Last(n) | Part::First(n) => {
                // Phone numbers: digits only (a leading `+` is not a digit).
                let chars: Vec<char> = if kind == "phone" {
                    value.chars().filter(char::is_ascii_digit).collect()
                } else {
                    value.chars().collect()
                };
                let chars = Zeroizing::new(chars);
                let n = usize::from(n);
                if chars.len() < n {
                    return Err(invalid(kind, "shorter than the partial index"));
                }
                let picked = match self {
                    Part::Last(_) => chars.get(chars.len() - n..),
                    _ => chars.get(..n),
                };
                Ok(Zeroizing::new(picked.unwrap_or(&[]).iter().collect()))
            }
            Part::Domain => value
                .rsplit_once('@')
                .map(|(_, d)| Zeroizing::new(d.to_owned()))
                .ok_or(invalid(kind, "no domain")),
        }
    }
}

/// One field of an index: how it is normalized and which part is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// The normalizer.
    pub normalizer: Normalizer,
    /// The part indexed.
    pub part: Part,
}

impl Field {
    fn descriptor(self) -> String {
        format!("{}{}", self.normalizer.name(), self.part.descriptor())
    }

    /// The text this field indexes: `value` normalized, then its part taken (`5678` for
    /// `010-1234-5678` under `phone:last4`). Compare decrypted values by it to remove an
    /// index's false positives. Personal data: zeroized on drop.
    pub fn canonical(self, value: &str) -> Result<Zeroizing<String>, BlindIndexError> {
        let normalized = self.normalizer.normalize(value)?;
        self.part.apply(self.normalizer.name(), &normalized)
    }
}

/// What an index is: its name, its fields (one, or several for a compound index) and its size
/// in bits. Changing any of these (or the encryption context) gives unrelated index values, so
/// a stored column must be recomputed after such a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexSpec {
    name: String,
    fields: Vec<Field>,
    bits: u16,
}

fn check_name(name: &str) -> Result<(), BlindIndexError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BlindIndexError::BadSpec("the index name must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into()))
    }
}

fn check_bits(bits: u16) -> Result<(), BlindIndexError> {
    if (1..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(BlindIndexError::BadSpec(format!("bits must be 1 to {MAX_BITS}, got {bits}")))
    }
}

impl IndexSpec {
    /// A single-field index of the whole normalized value, `bits` long (1 to 256). The name
    /// (1 to 64 characters of `A-Z a-z 0-9 . _ -`) tells indexes over one column apart.
    pub fn new(name: &str, normalizer: Normalizer, bits: u16) -> Result<Self, BlindIndexError> {
        check_name(name)?;
        check_bits(bits)?;
        Ok(IndexSpec { name: name.to_owned(), fields: vec![Field { normalizer, part: Part::Full }], bits })
    }

    /// A compound index over several fields (for example the last 4 digits of a phone number
    /// and a name), computed from one value per field, in this order.
    pub fn compound(name: &str, fields: Vec<Field>, bits: u16) -> Result<Self, BlindIndexError> {
        check_name(name)?;
        check_bits(bits)?;
        if fields.is_empty() || fields.len() > 16 {
            return Err(BlindIndexError::BadSpec("a compound index has 1 to 16 fields".into()));
        }
        for f in &fields {
            if f.part == Part::Domain && f.normalizer != Normalizer::Email {
                return Err(BlindIndexError::BadSpec("part `domain` only applies to email".into()));
            }
        }
        Ok(IndexSpec { name: name.to_owned(), fields, bits })
    }

    /// The same single-field index over a part of the value (for example [`Part::Last`]`(4)`).
    pub fn part(mut self, part: Part) -> Result<Self, BlindIndexError> {
        let [field] = self.fields.as_mut_slice() else {
            return Err(BlindIndexError::BadSpec("part() applies to a single-field index".into()));
        };
        if part == Part::Domain && field.normalizer != Normalizer::Email {
            return Err(BlindIndexError::BadSpec("part `domain` only applies to email".into()));
        }
        field.part = part;
        Ok(self)
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fields.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The size of an index value in bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The field descriptors joined by `,` (`phone`, `phone:last4,name`), as in the key
    /// derivation.
    pub fn descriptor(&self) -> String {
        self.fields.iter().map(|f| f.descriptor()).collect::<Vec<_>>().join(",")
    }
}

/// A blind index value: the first `bits` bits of an HMAC-SHA-256, in `ceil(bits / 8)` bytes
/// whose unused low bits are zero.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BlindIndex {
    bytes: Vec<u8>,
    bits: u16,
}

impl BlindIndex {
    /// The bytes (big-endian bit order; unused trailing bits are zero).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The size in bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// Lowercase hexadecimal of the bytes.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `bits` bits as an unsigned integer, for indexes of at most 63 bits: fits a signed
    /// 64-bit column (PostgreSQL `bigint`, SQLite `INTEGER`) without going negative.
    pub fn to_i64(&self) -> Option<i64> {
        if self.bits > 63 {
            return None;
        }
        let mut buf = [0u8; 8];
        buf.get_mut(..self.bytes.len())?.copy_from_slice(&self.bytes);
        let v = u64::from_be_bytes(buf) >> (64 - u32::from(self.bits));
        i64::try_from(v).ok()
    }
}

impl fmt::Display for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Computes blind indexes under one index key. Holds the key (zeroized on drop); neither
/// `Clone` nor printable beyond its id.
pub struct BlindIndexer {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndexer").field("id", &self.id).finish_non_exhaustive()
    }
}

fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are bounded (names 64, descriptors < 1 KiB, values 4 KiB, contexts by the caller);
    // a context over 4 GiB cannot exist in memory next to this buffer.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An index whose key is derived: compute many values with [`PreparedIndex::compute`] without
/// deriving the key again (a table load, a rewrap).
pub struct PreparedIndex {
    mac: HmacSha256,
    spec: IndexSpec,
}

impl fmt::Debug for PreparedIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedIndex").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl PreparedIndex {
    /// The index of one value per field (one value for a single-field index).
    pub fn compute(&self, values: &[&str]) -> Result<BlindIndex, BlindIndexError> {
        let fields = &self.spec.fields;
        if values.len() != fields.len() {
            return Err(BlindIndexError::ValueCount { expected: fields.len(), got: values.len() });
        }
        let mut msg = Zeroizing::new(Vec::with_capacity(64));
        for (field, value) in fields.iter().zip(values) {
            let normalized = field.normalizer.normalize(value)?;
            let part = field.part.apply(field.normalizer.name(), &normalized)?;
            push_lp(&mut msg, part.as_bytes());
        }
        let mut mac = self.mac.clone();
        mac.update(&msg);
        let digest = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let bits = self.spec.bits;
        let n = usize::from(bits).div_ceil(8);
        let mut bytes = digest.get(..n).unwrap_or(&[]).to_vec();
        let spare = (n * 8) as u32 - u32::from(bits);
        if let Some(last) = bytes.last_mut() {
            *last &= 0xffu8.checked_shl(spare).unwrap_or(0);
        }
        Ok(BlindIndex { bytes, bits })
    }

    /// The specification.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }
}

impl BlindIndexer {
    /// An indexer over a 32-byte index key kept by the caller (a secret manager, a KMS-encrypted
    /// blob). `id` names the key (it is not part of the derivation).
    pub fn from_key_bytes(id: &str, key: [u8; 32]) -> Self {
        BlindIndexer { id: id.to_owned(), key: Zeroizing::new(key) }
    }

    /// The index key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Derives the key of one index: `HMAC-SHA-256(index_key, "larder blind index v1" ‖
    /// lp(name) ‖ lp(descriptor) ‖ u16(bits) ‖ lp(canonical context))`, where `lp(x)` is `x`'s
    /// length as a big-endian u32 followed by `x` (docs/blind-index.md).
    pub fn prepare(
        &self,
        spec: &IndexSpec,
        context: &EncryptionContext,
    ) -> Result<PreparedIndex, BlindIndexError> {
        let mut info = Vec::with_capacity(128);
        info.extend_from_slice(INDEX_LABEL);
        push_lp(&mut info, spec.name.as_bytes());
        push_lp(&mut info, spec.descriptor().as_bytes());
        info.extend_from_slice(&spec.bits.to_be_bytes());
        push_lp(&mut info, context.canonical().map_err(|_| BlindIndexError::ContextTooLarge)?);
        let index_key = Zeroizing::new(hmac(&self.key, &info));
        Ok(PreparedIndex { mac: hmac_with(&index_key), spec: spec.clone() })
    }

    /// The blind index of one value under a single-field index.
    pub fn blind_index(
        &self,
        spec: &IndexSpec,
        value: &str,
        context: &EncryptionContext,
    ) -> Result<BlindIndex, BlindIndexError> {
        self.prepare(spec, context)?.compute(&[value])
    }

    /// The blind index of one value per field (compound indexes).
    pub fn compound_index(
        &self,
        spec: &IndexSpec,
        values: &[&str],
        context: &EncryptionContext,
    ) -> Result<BlindIndex, BlindIndexError> {
        self.prepare(spec, context)?.compute(values)
    }
}

fn hmac_with(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail for 32 bytes; the fallback (an all-zero
    // key) is unreachable and keeps library code free of unwrap.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = hmac_with(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_spellings_normalize_alike() {
        for s in [
            "010-1234-5678",
            "01012345678",
            " 010 1234 5678 ",
            "(010) 1234.5678",
            "+82 10-1234-5678",
            "+82 010 1234 5678",
        ] {
            assert_eq!(Normalizer::Phone.normalize(s).unwrap().as_str(), "01012345678", "{s}");
        }
        assert_eq!(Normalizer::Phone.normalize("+1 (415) 555-0100").unwrap().as_str(), "+14155550100");
        for bad in ["", "  ", "010-1234-567x", "12", "0101234567890123", "010+1234"] {
            assert!(Normalizer::Phone.normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn email_and_name_fold_case() {
        assert_eq!(
            Normalizer::Email.normalize("  Hong.GilDong@Example.COM ").unwrap().as_str(),
            "hong.gildong@example.com"
        );
        for bad in ["no-at", "a@", "@b", "a@b@c", "a b@c"] {
            assert!(Normalizer::Email.normalize(bad).is_err(), "{bad}");
        }
        assert_eq!(Normalizer::Name.normalize(" John   SMITH ").unwrap().as_str(), "john smith");
        // NFD 홍 (jamo) and NFC 홍 are one name.
        let nfd: String = "홍길동".nfd().collect();
        assert_eq!(Normalizer::Name.normalize(&nfd).unwrap().as_str(), "홍길동");
    }

    #[test]
    fn truncation_zeroes_spare_bits_and_fits_i64() {
        let ix = BlindIndexer::from_key_bytes("i1", [1; 32]);
        let ctx = EncryptionContext::new();
        for bits in [1u16, 7, 8, 12, 16, 63, 64, 200, 256] {
            let spec = IndexSpec::new("p", Normalizer::Phone, bits).unwrap();
            let v = ix.blind_index(&spec, "010-1234-5678", &ctx).unwrap();
            assert_eq!(v.as_bytes().len(), usize::from(bits).div_ceil(8));
            let spare = v.as_bytes().len() * 8 - usize::from(bits);
            assert_eq!(v.as_bytes().last().unwrap() & ((1u16 << spare) - 1) as u8, 0);
            match v.to_i64() {
                Some(n) => assert!(bits <= 63 && n >= 0 && (n as u64) < (1u64 << bits)),
                None => assert!(bits > 63),
            }
        }
        assert!(IndexSpec::new("p", Normalizer::Phone, 0).is_err());
        assert!(IndexSpec::new("p", Normalizer::Phone, 257).is_err());
        assert!(IndexSpec::new("bad name", Normalizer::Phone, 8).is_err());
    }

    #[test]
    fn indexes_are_separated_by_spec_and_context() {
        let ix = BlindIndexer::from_key_bytes("i1", [1; 32]);
        let ctx = EncryptionContext::new().with("column", "phone");
        let v = "010-1234-5678";
        let a = ix.blind_index(&IndexSpec::new("a", Normalizer::Phone, 64).unwrap(), v, &ctx).unwrap();
        let b = ix.blind_index(&IndexSpec::new("b", Normalizer::Phone, 64).unwrap(), v, &ctx).unwrap();
        let t = ix.blind_index(&IndexSpec::new("a", Normalizer::Text, 64).unwrap(), v, &ctx).unwrap();
        let c = ix
            .blind_index(&IndexSpec::new("a", Normalizer::Phone, 64).unwrap(), v, &EncryptionContext::new())
            .unwrap();
        let short = ix.blind_index(&IndexSpec::new("a", Normalizer::Phone, 32).unwrap(), v, &ctx).unwrap();
        let other_key = BlindIndexer::from_key_bytes("i1", [2; 32])
            .blind_index(&IndexSpec::new("a", Normalizer::Phone, 64).unwrap(), v, &ctx)
            .unwrap();
        let all = [&a, &b, &t, &c, &other_key];
        for (i, x) in all.iter().enumerate() {
            for y in all.iter().skip(i + 1) {
                assert_ne!(x, y);
            }
        }
        assert_ne!(&a.as_bytes()[..4], short.as_bytes(), "a 32-bit index is not a prefix of the 64-bit one");
    }

    #[test]
    fn compound_and_partial() {
        let ix = BlindIndexer::from_key_bytes("i1", [3; 32]);
        let ctx = EncryptionContext::new();
        let spec = IndexSpec::compound(
            "last4_name",
            vec![
                Field { normalizer: Normalizer::Phone, part: Part::Last(4) },
                Field { normalizer: Normalizer::Name, part: Part::Full },
            ],
            32,
        )
        .unwrap();
        assert_eq!(spec.descriptor(), "phone:last4,name");
        let a = ix.compound_index(&spec, &["010-1111-5678", "Hong Gildong"], &ctx).unwrap();
        let b = ix.compound_index(&spec, &["+82 10-2222-5678", "hong  gildong"], &ctx).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, ix.compound_index(&spec, &["010-1111-5679", "Hong Gildong"], &ctx).unwrap());
        assert_eq!(
            ix.compound_index(&spec, &["010-1111-5678"], &ctx),
            Err(BlindIndexError::ValueCount { expected: 2, got: 1 })
        );
        // Field boundaries are length-prefixed: ("ab","c") and ("a","bc") differ.
        let two =
            IndexSpec::compound("t", vec![Field { normalizer: Normalizer::Text, part: Part::Full }; 2], 64)
                .unwrap();
        assert_ne!(
            ix.compound_index(&two, &["ab", "c"], &ctx).unwrap(),
            ix.compound_index(&two, &["a", "bc"], &ctx).unwrap()
        );
        let dom = IndexSpec::new("d", Normalizer::Email, 16).unwrap().part(Part::Domain).unwrap();
        assert_eq!(
            ix.blind_index(&dom, "a@Example.com", &ctx).unwrap(),
            ix.blind_index(&dom, "B@example.COM", &ctx).unwrap()
        );
        assert!(IndexSpec::new("d", Normalizer::Phone, 16).unwrap().part(Part::Domain).is_err());
        let last4 = IndexSpec::new("l", Normalizer::Phone, 16).unwrap().part(Part::Last(4)).unwrap();
        assert!(ix.blind_index(&last4, "+1 23", &ctx).is_err());
        assert_eq!(Part::parse("last4"), Some(Part::Last(4)));
        assert_eq!(Part::parse("last0"), None);
        assert_eq!(Part::parse("domain"), Some(Part::Domain));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let ix = BlindIndexer::from_key_bytes("i1", [0xAB; 32]);
        let d = format!("{ix:?}");
        assert!(d.contains("i1") && !d.contains("171") && !d.to_lowercase().contains("ab, "));
    }
}
