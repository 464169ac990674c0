//! The stable-key format's fixed parts, in one place: type tags, enum-variant shapes, schema
//! bytes and schema ids of derived types, and the namespace rule.
//!
//! Two crates need them: `larder-key` (the run-time encoder and [`KeySpace`]) and
//! `larder-macros` (`#[derive(StableKey)]` computes schema ids at compile time, `#[memoize]`
//! checks namespaces at compile time). `larder-key` re-exports the derive, so the macro crate
//! cannot depend on it; both depend on this leaf crate instead, and a schema id or a namespace
//! check cannot differ between compile time and run time.
//!
//! The byte layout is specified in `docs/key-format.md`; the values here are part of that
//! contract and never change meaning.
//!
//! # What it does not do
//!
//! It encodes no values and computes no keys (that is `larder-key`), and it has no
//! dependency but BLAKE3. Use it through `larder_key` (which re-exports [`tag`], [`shape`],
//! [`schema`] and [`namespace`]) unless you are writing a proc macro.
//!
//! # Example
//!
//! ```
//! use larder_key_format::{namespace, schema, tag};
//!
//! let header = schema::struct_header("LoanQuote", 1, &["user_id", "amount_won"]);
//! assert_eq!(header[0], tag::STRUCT);
//! assert_eq!(header.len(), 1 + schema::SCHEMA_ID_LEN);
//! assert!(namespace::check("loan_calc").is_ok());
//! assert_eq!(namespace::check("Loan"), Err(namespace::Problem::Character));
//! ```
//!
//! [`KeySpace`]: https://docs.rs/larder-key/latest/larder_key/struct.KeySpace.html
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod namespace;
pub mod schema;

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
