//! How a value becomes a frame's payload: postcard (the Rust default) or CBOR (feature
//! `cbor`, the language-neutral option for fleets that mix Rust and Python).
//!
//! The writer's codec is a [`CacheBuilder::value_codec`](crate::CacheBuilder::value_codec)
//! setting; the reader decodes by the frame's flag, so a cache configured for either codec
//! reads frames written with the other (when the value's type can be read from it).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::frame;

/// The serialization of cached values inside frames (`docs/cache-value-format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ValueCodec {
    /// postcard 1.x: compact, Rust-only (not self-describing). The default.
    #[default]
    Postcard,
    /// CBOR (RFC 8949) through ciborium: self-describing, read by any language (the Python
    /// package writes it). Frames carry flag [`frame::FLAG_CBOR`].
    #[cfg(feature = "cbor")]
    Cbor,
}

impl ValueCodec {
    /// The frame flags byte of this codec.
    pub fn flags(self) -> u8 {
        match self {
            ValueCodec::Postcard => 0,
            #[cfg(feature = "cbor")]
            ValueCodec::Cbor => frame::FLAG_CBOR,
        }
    }

    /// Serializes `v`.
    pub fn encode<V: Serialize + ?Sized>(self, v: &V) -> Result<Vec<u8>, String> {
        match self {
            ValueCodec::Postcard => postcard::to_allocvec(v).map_err(|e| e.to_string()),
            #[cfg(feature = "cbor")]
            ValueCodec::Cbor => {
                let mut out = Vec::new();
                ciborium::into_writer(v, &mut out).map_err(|e| e.to_string())?;
                Ok(out)
            }
        }
    }
}

/// Deserializes a verified frame's payload according to its flags.
pub fn decode<V: DeserializeOwned>(flags: u8, payload: &[u8]) -> Result<V, String> {
    if flags & frame::FLAG_TAG_RECORD != 0 {
        return Err("a tag record, not a value".into());
    }
    if flags & frame::FLAG_CBOR != 0 {
        #[cfg(feature = "cbor")]
        {
            // A payload must be exactly one CBOR item: trailing bytes are refused.
            let mut rest = payload;
            let v: V = ciborium::from_reader(&mut rest).map_err(|e| e.to_string())?;
            if !rest.is_empty() {
                return Err("trailing bytes after the CBOR value".into());
            }
            return Ok(v);
        }
        #[cfg(not(feature = "cbor"))]
        return Err("CBOR payload, but larder-cache was built without the `cbor` feature".into());
    }
    postcard::from_bytes::<V>(payload).map_err(|e| e.to_string())
}
