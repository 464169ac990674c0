//! Schema ids: how a derived type's name, version, shape and field names enter its encoding.
//!
//! A derived value is written as a 17-byte header — its kind tag and a 16-byte **schema id** —
//! followed by its field values. The schema id is a BLAKE3 digest of the type's *schema
//! bytes* (everything about the type that is fixed at compile time: kind, name, version,
//! field count and field names, variant name and shape). `#[derive(StableKey)]` computes it
//! at compile time; the functions here compute the same bytes at run time, for hand-written
//! impls and for other-language implementations to check against (`docs/key-format.md`).
//!
//! Why a digest and not the names themselves: names are the bulk of a small struct's
//! encoding (`LoanQuote`'s four field names are 35 bytes, its values 28), and every 64 bytes
//! costs one more BLAKE3 compression. With a schema id a four-field struct fits one block.
//!
//! Injectivity: within one type the values follow a fixed header and are self-delimiting, so
//! the encoding is injective exactly as before. Two *different* schemas share an id only by a
//! BLAKE3 collision on 128 bits among schema texts written by the program's authors (not by
//! an attacker), which is far below the 160-bit digest's own collision bound on the key.

use crate::{shape, tag};

/// Length of a schema id in bytes.
pub const SCHEMA_ID_LEN: usize = 16;

/// The BLAKE3 `derive_key` context under which schema ids are computed.
pub const SCHEMA_ID_CONTEXT: &str = "larder 2026-11 stable_key schema id v1";

/// A derived type's header: its kind tag, then its 16-byte schema id.
pub type Header = [u8; 1 + SCHEMA_ID_LEN];

/// The shape of an enum variant, for [`variant_header`].
#[derive(Debug, Clone, Copy)]
pub enum VariantShape<'a> {
    /// `Variant`.
    Unit,
    /// `Variant(A, B)`: the number of encoded (not skipped) fields.
    Tuple(usize),
    /// `Variant { a, b }`: the encoded (not skipped) field names in declaration order.
    Named(&'a [&'a str]),
}

fn push_name(out: &mut Vec<u8>, s: &str) {
    // Names come from source code; a name of 4 GiB cannot occur, and clamping keeps this
    // function total instead of panicking.
    let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn header(schema: &[u8]) -> Header {
    let id = blake3::derive_key(SCHEMA_ID_CONTEXT, schema);
    let mut h = [0u8; 1 + SCHEMA_ID_LEN];
    // The first schema byte is always the kind tag.
    h[0] = schema.first().copied().unwrap_or(0);
    h[1..].copy_from_slice(&id[..SCHEMA_ID_LEN]);
    h
}

/// Schema bytes of a struct with named fields:
/// `0x40 ‖ name ‖ version:u32 ‖ count:u32 ‖ field name…` (names as `u32` LE length + UTF-8).
pub fn struct_schema(name: &str, version: u32, fields: &[&str]) -> Vec<u8> {
    let mut s = vec![tag::STRUCT];
    push_name(&mut s, name);
    s.extend_from_slice(&version.to_le_bytes());
    push_count(&mut s, fields.len());
    for f in fields {
        push_name(&mut s, f);
    }
    s
}

/// Schema bytes of a tuple struct: `0x41 ‖ name ‖ version:u32 ‖ count:u32`.
pub fn tuple_struct_schema(name: &str, version: u32, fields: usize) -> Vec<u8> {
    let mut s = vec![tag::TUPLE_STRUCT];
    push_name(&mut s, name);
    s.extend_from_slice(&version.to_le_bytes());
    push_count(&mut s, fields);
    s
}

/// Schema bytes of a unit struct: `0x42 ‖ name ‖ version:u32`.
pub fn unit_struct_schema(name: &str, version: u32) -> Vec<u8> {
    let mut s = vec![tag::UNIT_STRUCT];
    push_name(&mut s, name);
    s.extend_from_slice(&version.to_le_bytes());
    s
}

/// Schema bytes of one enum variant:
/// `0x43 ‖ type name ‖ version:u32 ‖ variant name ‖ shape:u8`, then for a tuple variant
/// `count:u32`, for a named variant `count:u32 ‖ field name…`.
pub fn variant_schema(name: &str, version: u32, variant: &str, fields: VariantShape<'_>) -> Vec<u8> {
    let mut s = vec![tag::ENUM];
    push_name(&mut s, name);
    s.extend_from_slice(&version.to_le_bytes());
    push_name(&mut s, variant);
    match fields {
        VariantShape::Unit => s.push(shape::UNIT),
        VariantShape::Tuple(n) => {
            s.push(shape::TUPLE);
            push_count(&mut s, n);
        }
        VariantShape::Named(names) => {
            s.push(shape::NAMED);
            push_count(&mut s, names.len());
            for f in names {
                push_name(&mut s, f);
            }
        }
    }
    s
}

/// The header of a struct with named fields (see [`struct_schema`]).
///
/// This hashes on every call: a hand-written impl should compute it once (a
/// `std::sync::OnceLock`), as the derive does at compile time.
pub fn struct_header(name: &str, version: u32, fields: &[&str]) -> Header {
    header(&struct_schema(name, version, fields))
}

/// The header of a tuple struct (see [`tuple_struct_schema`]).
pub fn tuple_struct_header(name: &str, version: u32, fields: usize) -> Header {
    header(&tuple_struct_schema(name, version, fields))
}

/// The header of a unit struct (see [`unit_struct_schema`]).
pub fn unit_struct_header(name: &str, version: u32) -> Header {
    header(&unit_struct_schema(name, version))
}

/// The header of an enum variant (see [`variant_schema`]).
pub fn variant_header(name: &str, version: u32, variant: &str, fields: VariantShape<'_>) -> Header {
    header(&variant_schema(name, version, variant, fields))
}
