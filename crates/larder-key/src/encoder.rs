//! The canonical encoder: the byte stream every [`StableKey`](crate::StableKey) writes into.
//!
//! The format is specified byte by byte in `docs/key-format.md`; the tag values below are part
//! of that contract and never change meaning. A new kind of value gets a new tag.

pub use larder_key_format::{shape, tag};

/// Why an encoding could not be produced. Sticky: once set, further writes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncodeFault {
    /// The encoding grew past the configured limit.
    TooLarge,
    /// A floating-point NaN was written.
    NaN,
    /// A single length did not fit the 32-bit length field.
    LengthOverflow,
}

/// Collects the canonical encoding of a value.
///
/// Writes never fail at the call site; a fault (NaN, a value over the size limit) is recorded
/// and reported once the whole value has been written, by [`KeySpace::key`](crate::KeySpace::key)
/// or [`encode`](crate::encode). Past the size limit nothing more is stored, so a huge value
/// costs no more memory than the limit.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
    limit: usize,
    fault: Option<EncodeFault>,
}

impl Encoder {
    /// A new encoder that refuses encodings longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Encoder { buf: Vec::with_capacity(limit.min(128)), limit, fault: None }
    }

    /// An encoder with no buffer yet (a `const` for the per-thread scratch encoder).
    pub(crate) const fn empty() -> Self {
        Encoder { buf: Vec::new(), limit: 0, fault: None }
    }

    pub(crate) fn reset(&mut self, limit: usize) {
        self.buf.clear();
        self.limit = limit;
        self.fault = None;
    }

    pub(crate) fn fault(&self) -> Option<EncodeFault> {
        self.fault
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn set_fault(&mut self, f: EncodeFault) {
        if self.fault.is_none() {
            self.fault = Some(f);
        }
    }

    /// Appends raw bytes, respecting the limit. Everything goes through here.
    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) {
        if self.fault.is_some() {
            return;
        }
        if bytes.len() > self.limit.saturating_sub(self.buf.len()) {
            self.set_fault(EncodeFault::TooLarge);
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Writes one tag byte.
    #[inline]
    pub fn tag(&mut self, t: u8) {
        self.raw(&[t]);
    }

    /// Writes a `u32` little-endian length or count. Lengths beyond `u32::MAX` are refused.
    #[inline]
    pub fn len(&mut self, n: usize) {
        match u32::try_from(n) {
            Ok(n) => self.raw(&n.to_le_bytes()),
            Err(_) => self.set_fault(EncodeFault::LengthOverflow),
        }
    }

    /// Writes a `u32` LE length and the UTF-8 bytes, without a tag: only after a tag of your
    /// own that says a string follows; on its own it carries no type and could encode like
    /// another kind of value.
    #[inline]
    pub fn name(&mut self, s: &str) {
        self.len(s.len());
        self.raw(s.as_bytes());
    }

    /// Writes a tagged string.
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.tag(tag::STR);
        self.name(s);
    }

    /// Writes a tagged byte string.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.tag(tag::BYTES);
        self.len(b.len());
        self.raw(b);
    }

    /// Writes a tagged `f64`, normalizing `-0.0` to `0.0` and refusing NaN.
    #[inline]
    pub fn f64(&mut self, v: f64) {
        if v.is_nan() {
            self.set_fault(EncodeFault::NaN);
            return;
        }
        let v = if v == 0.0 { 0.0f64 } else { v };
        self.tag(tag::F64);
        self.raw(&v.to_bits().to_le_bytes());
    }

    /// Writes a tagged `f32`, normalizing `-0.0` to `0.0` and refusing NaN.
    #[inline]
    pub fn f32(&mut self, v: f32) {
        if v.is_nan() {
            self.set_fault(EncodeFault::NaN);
            return;
        }
        let v = if v == 0.0 { 0.0f32 } else { v };
        self.tag(tag::F32);
        self.raw(&v.to_bits().to_le_bytes());
    }

    /// Writes a derived type's header (kind tag and schema id, see [`crate::schema`]); the
    /// field values follow. Used by `#[derive(StableKey)]`.
    #[inline]
    pub fn header(&mut self, header: &larder_key_format::schema::Header) {
        self.raw(header);
    }

    /// Writes `items` as a set: each element encoded on its own, then sorted bytewise, so the
    /// iteration order of the collection never reaches the key.
    pub fn set<'a, T, I>(&mut self, items: I)
    where
        T: crate::StableKey + ?Sized + 'a,
        I: ExactSizeIterator<Item = &'a T>,
    {
        self.tag(tag::SET);
        self.len(items.len());
        let Some(mut parts) = self.encode_parts(items.map(|item| (item, None::<&'a T>))) else {
            return;
        };
        parts.sort_unstable();
        for p in &parts {
            self.raw(p);
        }
    }

    /// Writes (key, value) pairs as a map, sorted bytewise by the key's encoding.
    ///
    /// Two distinct keys can share an encoding only through a user's normalization
    /// (`#[stable_key(with)]`, `#[stable_key(skip)]`); such ties are broken by the value's
    /// encoding, so the result never depends on iteration order. Since every encoding is
    /// self-delimiting (no encoding is a proper prefix of another of the same type), sorting
    /// whole `key ‖ value` entries is the same as sorting by key, then by value.
    pub fn map<'a, K, V, I>(&mut self, entries: I)
    where
        K: crate::StableKey + ?Sized + 'a,
        V: crate::StableKey + ?Sized + 'a,
        I: ExactSizeIterator<Item = (&'a K, &'a V)>,
    {
        self.tag(tag::MAP);
        self.len(entries.len());
        let Some(mut parts) = self.encode_parts(entries.map(|(k, v)| (k, Some(v)))) else {
            return;
        };
        parts.sort_unstable();
        for p in &parts {
            self.raw(p);
        }
    }

    /// Encodes each `(a, b)` (b optional) into its own buffer, within the space left under
    /// the limit, all parts together. `None` when a fault was recorded.
    fn encode_parts<'a, A, B, I>(&mut self, items: I) -> Option<Vec<Vec<u8>>>
    where
        A: crate::StableKey + ?Sized + 'a,
        B: crate::StableKey + ?Sized + 'a,
        I: ExactSizeIterator<Item = (&'a A, Option<&'a B>)>,
    {
        if self.fault.is_some() {
            return None;
        }
        let mut left = self.remaining();
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(items.len().min(left));
        for (a, b) in items {
            let mut sub = Encoder::with_limit(left);
            a.encode(&mut sub);
            if let Some(b) = b {
                b.encode(&mut sub);
            }
            if let Some(f) = sub.fault {
                self.set_fault(f);
                return None;
            }
            left -= sub.buf.len();
            parts.push(sub.buf);
        }
        Some(parts)
    }

    /// True once a fault (NaN, too large, length overflow) has been recorded; further writes
    /// are ignored. Hand-written impls looping over many elements may stop early on it.
    #[inline]
    pub fn is_faulted(&self) -> bool {
        self.fault.is_some()
    }

    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}
