//! Stable, injective cache keys.
//!
//! A cache shared by several worker processes only works if every process computes the same
//! key for the same arguments. Python's `hash()` is seeded per process, and so are Rust's
//! `DefaultHasher` and `RandomState`; `#[derive(Hash)]` output is not even specified across
//! Rust releases or word sizes. Keys built from them miss in every worker but the one that
//! wrote the entry. This crate builds keys that cannot have that bug:
//!
//! * [`StableKey`] writes a **canonical, injective encoding** of a value: every value carries a
//!   type tag and every variable-length part a length prefix, so `("ab", "c")` and
//!   `("a", "bc")`, `Some(0)` and `0`, `1u32` and `1u64` never encode alike. Integers are
//!   little-endian and fixed-width (`usize` as 64 bits), hash maps and sets are sorted by
//!   their encoded bytes, so nothing about the process, platform or iteration order leaks in.
//! * [`KeySpace`] names a family of keys (`namespace` + `version`) and turns an encoding into
//!   a [`CacheKey`]: `{namespace}:v{version}:{digest}`, where the digest is 160 bits of
//!   **keyed BLAKE3**, written in lowercase base32. With a deployment secret
//!   ([`KeySecret`]) key names reveal nothing about the inputs (a phone number in an argument
//!   cannot be recovered by hashing guesses), and callers who control inputs cannot craft
//!   collisions.
//! * `#[derive(StableKey)]` (feature `derive`, on by default) covers your own structs and enums;
//!   the type's name, a schema version and the field names are part of the encoding, as a
//!   16-byte schema id computed at compile time ([`schema`]), so a four-field struct fits one
//!   BLAKE3 block. Attributes: `#[stable_key(name = "..", version = N)]` on the type (a Rust
//!   rename keeps keys, a version bump changes them all), `#[stable_key(name = "..")]` on a
//!   variant, `#[stable_key(skip)]` and `#[stable_key(with = path)]` (normalize first, e.g.
//!   trim and lowercase an e-mail) on fields. The derive finds this crate by itself whether
//!   you depend on `larder-key` or only on the `larder` facade; `#[stable_key(crate = "..")]`
//!   overrides the path.
//!
//! The format is specified byte by byte in `docs/key-format.md`, with test vectors in
//! `docs/key-vectors.json`, so another language can compute the same keys.
//!
//! # Roles
//!
//! value —[`StableKey`]→ [`Encoder`] (canonical bytes, size-limited) —[`KeySpace`]→ keyed
//! BLAKE3 ([`KeySecret`]) → [`CacheKey`] text. The cache crates only ever see the text.
//!
//! # Example
//!
//! ```
//! use larder_key::{KeySpace, StableKey};
//!
//! #[derive(StableKey)]
//! struct LoanQuote { user_id: u64, amount_won: u64, rate_bp: u32, term_months: u32 }
//!
//! let space = KeySpace::new("loan_calc", 1)?;
//! let key = space.key(&LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 })?;
//! assert!(key.as_str().starts_with("loan_calc:v1:"));
//! // The same value gives the same key in every process, on every host, after every restart.
//! let again = space.key(&LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 })?;
//! assert_eq!(key, again);
//! # Ok::<(), larder_key::KeyError>(())
//! ```
//!
//! # What this crate does not do
//!
//! * It does not implement `StableKey` for types that only implement `std::hash::Hash`: such
//!   an implementation would inherit exactly the instability this crate exists to remove.
//! * It does not normalize your data's meaning (e-mail case, money rounding): say so with
//!   `#[stable_key(with = path)]` on the field.
//! * NaN is refused ([`KeyError::NaN`]) rather than silently mapped: a NaN argument is almost
//!   always a bug, and NaN is not equal to itself, so no key could honestly stand for it.
//!   `-0.0` is written as `0.0`, since the two compare equal.
//! * It is not a password hash or a MAC for untrusted data; it names cache entries.
//! * It never decodes: the encoding is one-way input to the digest, not a serialization format.
//! * Keys are only as stable as your types' meaning: if the same Rust value starts to mean
//!   something else, bump the type's `version` or the key space's version.
// Length: the crate's documentation, [`StableKey`], [`KeySpace`], [`KeySecret`] and
// the key text; it passes 700 lines only with its unit tests (from `mod tests`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Lets `#[derive(StableKey)]` refer to this crate as `::larder_key` from inside it, too.
extern crate self as larder_key;

mod encoder;
mod impls;
mod impls_ext;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

pub use encoder::{shape, tag, Encoder};
// The format's fixed parts live in `larder-key-format`, shared with the derive macro (which
// cannot depend on this crate, since this crate re-exports it).
pub use larder_key_format::{namespace, schema};

#[cfg(feature = "derive")]
pub use larder_macros::StableKey;

/// A value with a canonical, injective, platform-independent encoding.
///
/// Implement it with `#[derive(StableKey)]`; write it by hand only for types with a
/// normalization of their own, and then only through the [`Encoder`] methods, so the result
/// stays injective.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `StableKey`",
    label = "not `StableKey`",
    note = "add `#[derive(StableKey)]` to the type, or key on fields that are `StableKey`",
    note = "`std::hash::Hash` is not enough: its output is seeded per process and not stable across Rust releases"
)]
pub trait StableKey {
    /// Writes this value's canonical encoding.
    fn encode(&self, enc: &mut Encoder);

    /// Writes a sequence of values given as consecutive slices. The default writes a
    /// [`tag::SEQ`] with every element; `u8` overrides it to write one byte string.
    #[doc(hidden)]
    fn encode_slices(parts: &[&[Self]], enc: &mut Encoder)
    where
        Self: Sized,
    {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        enc.tag(tag::SEQ);
        enc.len(n);
        for p in parts {
            for item in *p {
                // Stop early once faulted: a `Vec<()>` can be billions of elements long
                // without using memory, and every further write would be ignored anyway.
                if enc.is_faulted() {
                    return;
                }
                item.encode(enc);
            }
        }
    }
}

/// The largest canonical encoding a [`KeySpace`] hashes unless told otherwise: 64 KiB.
pub const DEFAULT_MAX_ENCODED_LEN: usize = 64 * 1024;

/// Length of the digest inside a key, in bytes (160 bits).
pub const DIGEST_LEN: usize = 20;

/// The BLAKE3 `derive_key` context that turns a secret into the digest key.
pub const DIGEST_KEY_CONTEXT: &str = "larder 2026-11 cache key digest v1";

/// Why a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The namespace is empty, longer than 64 bytes, or has a character outside `[a-z0-9_.-]`.
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The canonical encoding is longer than the space's limit; it was not hashed.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A floating-point argument was NaN.
    NaN,
    /// One length inside the value does not fit the format's 32-bit length field.
    LengthOverflow,
    /// A configured secret is malformed (for example, not 64 hex digits).
    InvalidSecret(&'static str),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::InvalidNamespace { namespace, reason } => {
                write!(f, "invalid key namespace {namespace:?}: {reason}")
            }
            KeyError::TooLarge { limit } => write!(
                f,
                "value too large for a cache key: its encoding exceeds {limit} bytes (raise the limit with KeySpace::with_max_encoded_len, or key on fewer fields)"
            ),
            KeyError::NaN => write!(f, "a floating-point key argument is NaN, which cannot be a cache key"),
            KeyError::LengthOverflow => write!(f, "a string or collection in the key is longer than 2^32-1"),
            KeyError::InvalidSecret(why) => write!(f, "invalid key secret: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<encoder::EncodeFault> for KeyError {
    fn from(f: encoder::EncodeFault) -> Self {
        match f {
            encoder::EncodeFault::NaN => KeyError::NaN,
            encoder::EncodeFault::LengthOverflow => KeyError::LengthOverflow,
            // The limit is filled in by the caller, which knows it.
            encoder::EncodeFault::TooLarge => KeyError::TooLarge { limit: 0 },
        }
    }
}

/// Encodes `value` canonically, refusing encodings over `limit` bytes.
pub fn encode_with_limit<T: StableKey + ?Sized>(value: &T, limit: usize) -> Result<Vec<u8>, KeyError> {
    let mut enc = Encoder::with_limit(limit);
    value.encode(&mut enc);
    match enc.fault() {
        None => Ok(enc.into_bytes()),
        Some(encoder::EncodeFault::TooLarge) => Err(KeyError::TooLarge { limit }),
        Some(f) => Err(f.into()),
    }
}

/// Encodes `value` canonically with the default limit ([`DEFAULT_MAX_ENCODED_LEN`]).
pub fn encode<T: StableKey + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    encode_with_limit(value, DEFAULT_MAX_ENCODED_LEN)
}

thread_local! {
    /// A per-thread scratch encoder, borrowed while in use (a re-entrant call finds it
    /// borrowed and uses a fresh one) and emptied afterwards if it grew large. Borrowed in
    /// place rather than moved in and out: moving it was a store-forwarding stall per key.
    static SCRATCH: RefCell<Encoder> = const { RefCell::new(Encoder::empty()) };
}

/// Scratch buffers larger than this are dropped after use rather than kept for the thread's
/// lifetime.
const SCRATCH_KEEP: usize = 4096;

/// Runs `f` on the canonical encoding of `value` without allocating, using a per-thread
/// scratch buffer.
#[inline]
pub fn with_encoding<T: StableKey + ?Sized, R>(
    value: &T,
    limit: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, KeyError> {
    let mut f = Some(f);
    with_scratch(|enc| {
        encode_into(enc, value, limit)?;
        // `with_scratch` runs this once, so `f` is always there.
        f.take().map(|f| f(enc.as_bytes())).ok_or(KeyError::TooLarge { limit })
    })
}

/// Runs `g` once with the thread's scratch encoder, or with a fresh one when that is in use
/// (a `StableKey` impl that makes a key while being encoded) or gone (a key made from a
/// thread-local's `Drop` during thread exit).
#[inline]
fn with_scratch<R>(mut g: impl FnMut(&mut Encoder) -> R) -> R {
    let done = SCRATCH.try_with(|cell| {
        let mut enc = cell.try_borrow_mut().ok()?;
        let out = g(&mut enc);
        if enc.capacity() > SCRATCH_KEEP {
            *enc = Encoder::empty();
        }
        Some(out)
    });
    match done {
        Ok(Some(out)) => out,
        _ => g(&mut Encoder::empty()),
    }
}

/// Writes the canonical encoding of `value` into `enc` (emptied first), or reports why not.
#[inline]
fn encode_into<T: StableKey + ?Sized>(enc: &mut Encoder, value: &T, limit: usize) -> Result<(), KeyError> {
    enc.reset(limit);
    value.encode(enc);
    match enc.fault() {
        None => Ok(()),
        Some(encoder::EncodeFault::TooLarge) => Err(KeyError::TooLarge { limit }),
        Some(fault) => Err(fault.into()),
    }
}

/// The secret that keys the digest inside every cache key of a deployment.
///
/// All processes that share a cache must use the same secret. Without one, the fixed default
/// (BLAKE3 `derive_key(DIGEST_KEY_CONTEXT, "")`) is used: keys are still stable and
/// injective, but anyone can recompute them from guessed inputs.
#[derive(Clone)]
pub struct KeySecret {
    key: Box<[u8; 32]>,
}

impl KeySecret {
    /// Derives the digest key from secret bytes of any length (at least 16).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError::InvalidSecret("a key secret must be at least 16 bytes"));
        }
        Ok(KeySecret { key: Box::new(blake3::derive_key(DIGEST_KEY_CONTEXT, secret)) })
    }

    /// Parses a secret written as hex digits (at least 32 of them).
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let hex = hex.trim();
        if hex.len() & 1 == 1 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::InvalidSecret("expected an even number of hex digits"));
        }
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
        let out = Self::from_bytes(&bytes);
        drop(zeroize_vec(bytes));
        out
    }

    /// The process's deployment secret: `LARDER_KEY_SECRET` (hex) read **once per process**
    /// (the first call decides; later changes to the environment are not seen), `None` when
    /// unset. [`KeySpace::new`] and `#[memoize]` both key their digests with it, so a key
    /// space built by hand names the same entries as the memoized function it stands for.
    pub fn from_process_env() -> Result<Option<Self>, KeyError> {
        static PROCESS: std::sync::OnceLock<Result<Option<KeySecret>, KeyError>> = std::sync::OnceLock::new();
        PROCESS.get_or_init(Self::from_env).clone()
    }

    /// Reads the secret from the `LARDER_KEY_SECRET` environment variable (hex), if set, now
    /// (see [`from_process_env`](Self::from_process_env) for the once-per-process value).
    pub fn from_env() -> Result<Option<Self>, KeyError> {
        match std::env::var("LARDER_KEY_SECRET") {
            Ok(v) if !v.trim().is_empty() => Self::from_hex(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// The fixed, documented default digest key.
    pub fn default_key() -> Self {
        KeySecret { key: Box::new(blake3::derive_key(DIGEST_KEY_CONTEXT, b"")) }
    }

    /// The derived 32-byte BLAKE3 key. Other larder crates derive their own keys from it
    /// (for example the cache's value MAC key) with a distinct context.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(&self.key[..]);
        *h.finalize().as_bytes()
    }

    fn digest(&self, encoding: &[u8]) -> [u8; DIGEST_LEN] {
        let full = blake3::keyed_hash(&self.key, encoding);
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(&full.as_bytes()[..DIGEST_LEN]);
        out
    }
}

fn zeroize_vec(mut v: Vec<u8>) -> Vec<u8> {
    for b in v.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(&v);
    v
}

impl Drop for KeySecret {
    fn drop(&mut self) {
        for b in self.key.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.key);
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(..)")
    }
}

struct SpaceInner {
    namespace: String,
    version: u32,
    prefix: String,
    secret: KeySecret,
    max_len: usize,
}

/// A family of cache keys: a namespace, a version, the digest key and a size limit.
///
/// Cheap to clone (an `Arc` inside). Bump the version when the meaning of the cached values
/// changes: every old key is then unreachable at once.
#[derive(Clone)]
pub struct KeySpace {
    inner: Arc<SpaceInner>,
}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpace")
            .field("namespace", &self.inner.namespace)
            .field("version", &self.inner.version)
            .field("max_encoded_len", &self.inner.max_len)
            .finish_non_exhaustive()
    }
}

/// Checks a namespace: 1 to 64 bytes of `[a-z0-9_.-]` (the rule is [`namespace::check`]).
pub fn validate_namespace(namespace: &str) -> Result<(), KeyError> {
    namespace::check(namespace)
        .map_err(|p| KeyError::InvalidNamespace { namespace: namespace.to_owned(), reason: p.reason() })
}

impl KeySpace {
    /// A key space keyed with the deployment secret: `LARDER_KEY_SECRET` when it is set (read
    /// once per process, [`KeySecret::from_process_env`]), else the fixed default key. This is
    /// the key space `#[memoize(namespace = …, version = …)]` uses, so a space built here for
    /// `invalidate` or `set` names exactly the entries the memoized function reads.
    ///
    /// A malformed `LARDER_KEY_SECRET` is an error ([`KeyError::InvalidSecret`]), never a
    /// silent fallback to the default key. Use [`new_with_secret`](Self::new_with_secret) to
    /// choose the secret explicitly (test vectors, tools that must not read the environment).
    pub fn new(namespace: &str, version: u32) -> Result<Self, KeyError> {
        validate_namespace(namespace)?;
        let secret = KeySecret::from_process_env()?.unwrap_or_else(KeySecret::default_key);
        Ok(Self::build(namespace, version, secret))
    }

    /// A key space keyed with `secret`, whatever the environment says.
    /// `KeySpace::new_with_secret(ns, v, &KeySecret::default_key())` is the unkeyed space of
    /// the documented vectors.
    pub fn new_with_secret(namespace: &str, version: u32, secret: &KeySecret) -> Result<Self, KeyError> {
        validate_namespace(namespace)?;
        Ok(Self::build(namespace, version, secret.clone()))
    }

    fn build(namespace: &str, version: u32, secret: KeySecret) -> Self {
        KeySpace {
            inner: Arc::new(SpaceInner {
                namespace: namespace.to_owned(),
                version,
                prefix: format!("{namespace}:v{version}:"),
                secret,
                max_len: DEFAULT_MAX_ENCODED_LEN,
            }),
        }
    }

    fn rebuild(&self, secret: KeySecret, max_len: usize) -> Self {
        KeySpace {
            inner: Arc::new(SpaceInner {
                namespace: self.inner.namespace.clone(),
                version: self.inner.version,
                prefix: self.inner.prefix.clone(),
                secret,
                max_len,
            }),
        }
    }

    /// The same space with a deployment secret keying the digest.
    #[must_use]
    pub fn with_secret(&self, secret: &KeySecret) -> Self {
        self.rebuild(secret.clone(), self.inner.max_len)
    }

    /// The same space with another limit on the encoding's size.
    #[must_use]
    pub fn with_max_encoded_len(&self, max: usize) -> Self {
        self.rebuild(self.inner.secret.clone(), max)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The limit on an encoding's size, in bytes.
    pub fn max_encoded_len(&self) -> usize {
        self.inner.max_len
    }

    /// `{namespace}:v{version}:`, the prefix of every key text in this space.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The canonical encoding of `value`, checked against the size limit.
    pub fn encode<T: StableKey + ?Sized>(&self, value: &T) -> Result<Vec<u8>, KeyError> {
        encode_with_limit(value, self.inner.max_len)
    }

    /// The cache key of `value`.
    pub fn key<T: StableKey + ?Sized>(&self, value: &T) -> Result<CacheKey, KeyError> {
        // The digest leaves the scratch encoder's scope through a reference rather than
        // inside the closure's nested `Result`s, which were copied through several layers
        // right after the hash wrote them (perf showed those copies stalling).
        let mut digest = [0u8; DIGEST_LEN];
        with_scratch(|enc| {
            encode_into(enc, value, self.inner.max_len)?;
            digest = self.inner.secret.digest(enc.as_bytes());
            Ok::<(), KeyError>(())
        })?;
        Ok(self.key_from_digest(digest))
    }

    /// The cache key of an encoding produced earlier by [`encode`](Self::encode).
    pub fn key_from_encoding(&self, encoding: &[u8]) -> CacheKey {
        self.key_from_digest(self.inner.secret.digest(encoding))
    }

    #[inline]
    fn key_from_digest(&self, digest: [u8; DIGEST_LEN]) -> CacheKey {
        let chars = base32_digest(&digest);
        let mut text = String::with_capacity(self.inner.prefix.len() + DIGEST_TEXT_LEN);
        text.push_str(&self.inner.prefix);
        // The base32 alphabet is ASCII, so this never fails.
        text.push_str(std::str::from_utf8(&chars.0).unwrap_or_default());
        CacheKey { text, digest, prefix_len: self.inner.prefix.len() }
    }
}

/// The RFC 4648 base32 alphabet, lowercase (what [`base32_digest`] computes arithmetically).
#[cfg(test)]
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Base32 text of a digest: 20 bytes give exactly 32 characters, no padding.
const DIGEST_TEXT_LEN: usize = 32;

/// The 32 base32 characters of a digest, 8-byte aligned so the word-sized reads that follow
/// (UTF-8 check, copy into the key) line up with the stores that wrote them.
#[repr(C, align(8))]
struct DigestText([u8; DIGEST_TEXT_LEN]);

/// RFC 4648 base32, lowercase, no padding, of a 160-bit digest: four groups of 40 bits give
/// 8 characters each.
///
/// The digest is read as one `u128` and one `u32` (not byte by byte or in 5-byte pieces):
/// it was just written by the hash, and a read that straddles two recent stores waits for
/// them to reach the cache instead of being forwarded (a store-forwarding stall).
#[inline]
fn base32_digest(digest: &[u8; DIGEST_LEN]) -> DigestText {
    let mut head = [0u8; 16];
    head.copy_from_slice(&digest[..16]);
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&digest[16..]);
    let head = u128::from_be_bytes(head);
    let tail = u128::from(u32::from_be_bytes(tail));
    const MASK40: u128 = (1 << 40) - 1;
    let groups = [head >> 88, (head >> 48) & MASK40, (head >> 8) & MASK40, ((head & 0xff) << 32) | tail];
    let mut out = DigestText([0u8; DIGEST_TEXT_LEN]);
    let mut g = 0;
    while g < 4 {
        let t = groups[g] as u64;
        // The eight 5-bit digits, most significant first, one per byte (little-endian, so
        // byte 0 is the first character), by halving: 20-bit halves into 32-bit lanes,
        // 10-bit quarters into 16-bit lanes, digits into bytes (d0 lands in the low lane).
        let a = ((t >> 20) & 0xF_FFFF) | ((t & 0xF_FFFF) << 32);
        const M10: u64 = 0x0000_03FF_0000_03FF;
        let b = ((a >> 10) & M10) | ((a & M10) << 16);
        const M5: u64 = 0x001F_001F_001F_001F;
        let x = ((b >> 5) & M5) | ((b & M5) << 8);
        // All eight bytes at once (SWAR): digit d becomes 'a' + d, and for d >= 26 (whose
        // byte + 0x66 reaches 0x80) '2' + (d - 26) = 'a' + d - 0x49 (0x49 = 64 + 8 + 1). No
        // byte carries into the next: d + 0x61 <= 0x80 and d + 0x66 <= 0x85.
        const ONES: u64 = 0x0101_0101_0101_0101;
        let high = ((x + 0x66 * ONES) >> 7) & ONES;
        let chars = x + 0x61 * ONES - ((high << 6) | (high << 3) | high);
        let mut i = 0;
        let bytes = chars.to_le_bytes();
        while i < 8 {
            out.0[8 * g + i] = bytes[i];
            i += 1;
        }
        g += 1;
    }
    out
}

/// RFC 4648 base32, lowercase, no padding, of any byte string (used for test vectors).
#[cfg(test)]
fn base32_lower(bytes: &[u8], out: &mut String) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
}

/// A cache key: `{namespace}:v{version}:{digest}`, at most 109 bytes of ASCII.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    text: String,
    digest: [u8; DIGEST_LEN],
    prefix_len: usize,
}

impl CacheKey {
    /// The key text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The raw 160-bit digest.
    #[inline]
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// `{namespace}:v{version}:`.
    pub fn prefix(&self) -> &str {
        &self.text[..self.prefix_len]
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.text)
    }
}

impl From<CacheKey> for String {
    /// The key text, without copying it.
    fn from(key: CacheKey) -> String {
        key.text
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The derive inside this crate: through `extern crate self as larder_key` by default,
    // and with an explicit path override.
    #[derive(crate::StableKey)]
    struct ByDefaultPath {
        a: u8,
    }

    #[derive(crate::StableKey)]
    #[stable_key(crate = "crate", name = "ByDefaultPath")]
    struct ByCratePath {
        a: u8,
    }

    #[test]
    fn derive_inside_the_crate() {
        let a = encode(&ByDefaultPath { a: 3 }).unwrap();
        let b = encode(&ByCratePath { a: 3 }).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], tag::STRUCT);
    }

    #[test]
    fn base32_of_20_bytes_is_32_chars() {
        let mut s = String::new();
        base32_lower(&[0xff; 20], &mut s);
        assert_eq!(s, "7".repeat(32));
        let mut s = String::new();
        base32_lower(b"foobar", &mut s);
        assert_eq!(s, "mzxw6ytboi"); // RFC 4648 test vector, lowercased, unpadded
                                     // The fixed-size digest path agrees with the general one.
        for seed in 0u8..=255 {
            let d: [u8; DIGEST_LEN] =
                std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(77)));
            let mut s = String::new();
            base32_lower(&d, &mut s);
            assert_eq!(std::str::from_utf8(&base32_digest(&d).0).unwrap(), s);
        }
        assert_eq!(&base32_digest(&[0xff; 20]).0, b"77777777777777777777777777777777");
    }

    #[test]
    fn namespace_rules() {
        assert!(KeySpace::new("loan_calc", 1).is_ok());
        assert!(KeySpace::new("a.b-c_9", 1).is_ok());
        for bad in ["", "Loan", "a b", "a:b", "ü", &"x".repeat(65)] {
            let err = KeySpace::new(bad, 1).unwrap_err();
            assert!(matches!(err, KeyError::InvalidNamespace { .. }), "{bad:?} -> {err}");
        }
        assert!(KeySpace::new(&"x".repeat(64), 1).is_ok());
    }

    #[test]
    fn too_large_is_refused() {
        let space = KeySpace::new("t", 1).unwrap().with_max_encoded_len(100);
        let err = space.key(&"x".repeat(200)).unwrap_err();
        assert_eq!(err, KeyError::TooLarge { limit: 100 });
        assert!(err.to_string().contains("100 bytes"));
        assert!(space.key(&"x".repeat(50)).is_ok());
    }

    #[test]
    fn nan_is_refused_and_negative_zero_normalized() {
        let space = KeySpace::new("t", 1).unwrap();
        assert_eq!(space.key(&f64::NAN).unwrap_err(), KeyError::NaN);
        assert_eq!(space.key(&(1u8, f32::NAN)).unwrap_err(), KeyError::NaN);
        assert_eq!(space.key(&-0.0f64).unwrap(), space.key(&0.0f64).unwrap());
    }

    #[test]
    fn secret_changes_digest_but_not_prefix() {
        let space = KeySpace::new("t", 3).unwrap();
        let secret = KeySecret::from_hex(&"ab".repeat(32)).unwrap();
        let a = space.key(&42u64).unwrap();
        let b = space.with_secret(&secret).key(&42u64).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.prefix(), "t:v3:");
        assert_eq!(b.prefix(), "t:v3:");
        assert_eq!(a.as_str().len(), "t:v3:".len() + 32);
        assert!(KeySecret::from_hex("abc").is_err());
        assert!(KeySecret::from_bytes(b"short").is_err());
        assert_eq!(format!("{secret:?}"), "KeySecret(..)");
    }
}
