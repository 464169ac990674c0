//! The canonical encoder: the byte stream every [`StableKey`](crate::StableKey) writes into.
//!
//! The format is specified byte by byte in `docs/key-format.md`; the tag values below are part
//! of that contract and never change meaning. A new kind of value gets a new tag.

/// Type tags written before every value. Part of the stable format: never renumber.
pub mod tag {
    /// `bool`: one byte, 0 or 1.
    pub const BOOL: u8 = 0x01;
    /// `u8`.
    pub const U8: u8 = 0x02;
    /// `u16`, little-endian.
    pub const U16: u8 = 0x03;
    /// `u32`, little-endian.
    pub const U32: u8 = 0x04;
    /// `u64` and `usize`, little-endian.
    pub const U64: u8 = 0x05;
    /// `u128`, little-endian.
    pub const U128: u8 = 0x06;
    /// `i8`.
    pub const I8: u8 = 0x07;
    /// `i16`, little-endian two's complement.
    pub const I16: u8 = 0x08;
    /// `i32`, little-endian two's complement.
    pub const I32: u8 = 0x09;
    /// `i64` and `isize`, little-endian two's complement.
    pub const I64: u8 = 0x0A;
    /// `i128`, little-endian two's complement.
    pub const I128: u8 = 0x0B;
    /// `f32`: IEEE 754 bits, little-endian; `-0.0` written as `0.0`; NaN refused.
    pub const F32: u8 = 0x0C;
    /// `f64`: IEEE 754 bits, little-endian; `-0.0` written as `0.0`; NaN refused.
    pub const F64: u8 = 0x0D;
    /// `char`: its scalar value as `u32` little-endian.
    pub const CHAR: u8 = 0x0E;
    /// `str`/`String`: `u32` LE byte length, then UTF-8 bytes.
    pub const STR: u8 = 0x10;
    /// Byte strings (`[u8]`, `Vec<u8>`, `[u8; N]`): `u32` LE length, then the bytes.
    pub const BYTES: u8 = 0x11;
    /// A JSON number kept as its text (only with serde_json's `arbitrary_precision` feature,
    /// for numbers that are not integers fitting 64 bits nor exactly an `f64`): `u32` LE
    /// length, then the text as serde_json prints it.
    pub const NUMBER_TEXT: u8 = 0x12;
    /// `Option::None`.
    pub const NONE: u8 = 0x20;
    /// `Option::Some`, followed by the value.
    pub const SOME: u8 = 0x21;
    /// `Result::Ok`, followed by the value.
    pub const OK: u8 = 0x22;
    /// `Result::Err`, followed by the value.
    pub const ERR: u8 = 0x23;
    /// `()` and JSON `null`.
    pub const UNIT: u8 = 0x24;
    /// Tuples: one byte arity, then the elements.
    pub const TUPLE: u8 = 0x30;
    /// Sequences (`Vec<T>`, slices, arrays, `VecDeque`): `u32` LE count, then the elements.
    pub const SEQ: u8 = 0x31;
    /// Sets: `u32` LE count, then the elements' encodings sorted bytewise.
    pub const SET: u8 = 0x32;
    /// Maps: `u32` LE count, then (key, value) pairs sorted bytewise by the key's encoding.
    pub const MAP: u8 = 0x33;
    /// A struct with named fields (derive): 16-byte schema id (over name, version, field
    /// names), then the values in declaration order. See [`crate::schema`].
    pub const STRUCT: u8 = 0x40;
    /// A tuple struct (derive): 16-byte schema id (over name, version, count), then the values.
    pub const TUPLE_STRUCT: u8 = 0x41;
    /// A unit struct (derive): 16-byte schema id (over name, version).
    pub const UNIT_STRUCT: u8 = 0x42;
    /// An enum variant (derive): 16-byte schema id (over type name, version, variant name,
    /// shape, field names), then the values.
    pub const ENUM: u8 = 0x43;
    /// `std::time::Duration`: `u64` LE seconds, `u32` LE nanoseconds.
    pub const DURATION: u8 = 0x50;
    /// `Ipv4Addr`: 4 bytes in network order.
    pub const IPV4: u8 = 0x51;
    /// `Ipv6Addr`: 16 bytes in network order.
    pub const IPV6: u8 = 0x52;
    /// `uuid::Uuid`: 16 bytes.
    pub const UUID: u8 = 0x60;
    /// An instant in time (chrono `DateTime<Tz>`, time `OffsetDateTime`): `i64` LE seconds
    /// since the Unix epoch (UTC), `u32` LE nanoseconds.
    pub const INSTANT: u8 = 0x61;
    /// A calendar date (chrono `NaiveDate`, time `Date`): year `i32` LE, month `u8`, day `u8`.
    pub const DATE: u8 = 0x62;
    /// `rust_decimal::Decimal`, normalized: `i128` LE mantissa, `u32` LE scale.
    pub const DECIMAL: u8 = 0x63;
    /// A naive date-time (chrono `NaiveDateTime`, time `PrimitiveDateTime`): like
    /// [`INSTANT`] but with no time zone attached.
    pub const NAIVE_DATETIME: u8 = 0x64;
}

/// Shape byte after the variant name in an enum variant's schema bytes ([`crate::schema`]).
pub mod shape {
    /// A unit variant: nothing follows.
    pub const UNIT: u8 = 0;
    /// A tuple variant: `u32` LE count follows.
    pub const TUPLE: u8 = 1;
    /// A variant with named fields: `u32` LE count, then the field names.
    pub const NAMED: u8 = 2;
}

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
    pub fn header(&mut self, header: &crate::schema::Header) {
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
