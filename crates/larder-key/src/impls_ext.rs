//! `StableKey` for types of optional crates (`uuid`, `chrono`, `time`, `rust_decimal`,
//! `serde_json`), each behind the feature of the same name.

#[allow(unused_imports)]
use crate::encoder::{tag, Encoder};
#[allow(unused_imports)]
use crate::StableKey;

/// A JSON value encodes like the Rust value it would deserialize to most directly: `null`
/// as `()`, booleans as `bool`, numbers as `u64` when non-negative integers, `i64` when
/// negative integers, `f64` otherwise (with serde_json's `arbitrary_precision`, a number no
/// `f64` holds exactly keeps its text under [`tag::NUMBER_TEXT`]); strings as `str`, arrays as sequences and objects as
/// maps sorted by key (so member order in the JSON text never changes the key).
#[cfg(feature = "serde_json")]
impl StableKey for serde_json::Value {
    fn encode(&self, enc: &mut Encoder) {
        use serde_json::Value;
        match self {
            Value::Null => enc.tag(tag::UNIT),
            Value::Bool(b) => b.encode(enc),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    u.encode(enc)
                } else if let Some(i) = n.as_i64() {
                    i.encode(enc)
                } else {
                    match n.as_f64() {
                        // Without serde_json's `arbitrary_precision` feature every other
                        // number is an `f64` and takes this branch. With it, a number is its
                        // text, and two texts can round to one `f64`: only a number whose
                        // text is exactly the `f64`'s canonical form is written as that
                        // `f64`; any other keeps its text, under its own tag.
                        Some(f) if serde_json::Number::from_f64(f).as_ref() == Some(n) => enc.f64(f),
                        _ => {
                            enc.tag(tag::NUMBER_TEXT);
                            enc.name(&n.to_string());
                        }
                    }
                }
            }
            Value::String(s) => enc.str(s),
            Value::Array(a) => a.encode(enc),
            Value::Object(m) => enc.map(m.iter().map(|(k, v)| (k.as_str(), v))),
        }
    }
}

#[cfg(feature = "uuid")]
impl StableKey for uuid::Uuid {
    fn encode(&self, enc: &mut Encoder) {
        enc.tag(tag::UUID);
        enc.raw(self.as_bytes());
    }
}

#[cfg(any(feature = "chrono", feature = "time"))]
fn instant(enc: &mut Encoder, t: u8, secs: i64, nanos: u32) {
    let mut b = [0u8; 13];
    b[0] = t;
    b[1..9].copy_from_slice(&secs.to_le_bytes());
    b[9..].copy_from_slice(&nanos.to_le_bytes());
    enc.raw(&b);
}

#[cfg(any(feature = "chrono", feature = "time"))]
fn date(enc: &mut Encoder, year: i32, month: u8, day: u8) {
    let mut b = [0u8; 7];
    b[0] = tag::DATE;
    b[1..5].copy_from_slice(&year.to_le_bytes());
    b[5] = month;
    b[6] = day;
    enc.raw(&b);
}

/// A `DateTime` encodes as the instant it names (UTC seconds and nanoseconds): the same
/// instant written in two time zones gives the same key.
#[cfg(feature = "chrono")]
impl<Tz: chrono::TimeZone> StableKey for chrono::DateTime<Tz> {
    fn encode(&self, enc: &mut Encoder) {
        instant(enc, tag::INSTANT, self.timestamp(), self.timestamp_subsec_nanos());
    }
}

#[cfg(feature = "chrono")]
impl StableKey for chrono::NaiveDateTime {
    fn encode(&self, enc: &mut Encoder) {
        let utc = self.and_utc();
        instant(enc, tag::NAIVE_DATETIME, utc.timestamp(), utc.timestamp_subsec_nanos());
    }
}

#[cfg(feature = "chrono")]
impl StableKey for chrono::NaiveDate {
    fn encode(&self, enc: &mut Encoder) {
        use chrono::Datelike;
        date(enc, self.year(), self.month() as u8, self.day() as u8);
    }
}

/// An `OffsetDateTime` encodes as the instant it names, exactly like chrono's `DateTime`.
#[cfg(feature = "time")]
impl StableKey for time::OffsetDateTime {
    fn encode(&self, enc: &mut Encoder) {
        instant(enc, tag::INSTANT, self.unix_timestamp(), self.nanosecond());
    }
}

#[cfg(feature = "time")]
impl StableKey for time::PrimitiveDateTime {
    fn encode(&self, enc: &mut Encoder) {
        let utc = self.assume_utc();
        instant(enc, tag::NAIVE_DATETIME, utc.unix_timestamp(), utc.nanosecond());
    }
}

#[cfg(feature = "time")]
impl StableKey for time::Date {
    fn encode(&self, enc: &mut Encoder) {
        date(enc, self.year(), u8::from(self.month()), self.day());
    }
}

/// A `Decimal` is normalized first (trailing zeros removed), so `1.0` and `1.00`, which
/// compare equal, give the same key.
#[cfg(feature = "rust_decimal")]
impl StableKey for rust_decimal::Decimal {
    fn encode(&self, enc: &mut Encoder) {
        let n = self.normalize();
        let mut b = [0u8; 21];
        b[0] = tag::DECIMAL;
        b[1..17].copy_from_slice(&n.mantissa().to_le_bytes());
        b[17..].copy_from_slice(&n.scale().to_le_bytes());
        enc.raw(&b);
    }
}
