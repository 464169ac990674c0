//! `serde_json::Value` → cache key (what `larder key` and `#[memoize]` over JSON arguments do).
//!
//! Input: one JSON document, or two separated by a 0xFF byte (never valid inside UTF-8 JSON).
//! Oracles, beyond "no panic":
//! * determinism: encoding the same value twice, and after a print/parse round trip, gives
//!   the same bytes and the same key;
//! * injectivity: two documents give equal encodings exactly when the values are equal
//!   (`serde_json::Value`'s equality: object member order ignored, `1` ≠ `1.0`, `0.0` = `-0.0`).
#![no_main]

use larder_key::KeySpace;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn encode(space: &KeySpace, v: &Value) -> Option<Vec<u8>> {
    match space.encode(v) {
        Ok(bytes) => {
            let again = space.encode(v).expect("second encoding of one value failed");
            assert_eq!(bytes, again, "encoding is not deterministic");
            let key = space.key(v).expect("key failed where encoding succeeded");
            assert_eq!(key, space.key_from_encoding(&bytes), "key differs from key of encoding");
            // Print and parse again: the same value must give the same bytes.
            let text = serde_json::to_vec(v).expect("serializing a parsed Value failed");
            let back: Value = serde_json::from_slice(&text).expect("re-parsing printed JSON failed");
            assert_eq!(&back, v, "serde_json round trip changed the value");
            assert_eq!(
                space.encode(&back).expect("re-encoding failed"),
                bytes,
                "round trip changed the encoding"
            );
            Some(bytes)
        }
        // A typed refusal (too large, ...) is a fine answer; it must be a stable one.
        Err(e) => {
            assert_eq!(space.encode(v).err(), Some(e), "refusal is not deterministic");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let space = KeySpace::new("fuzz", 1).expect("static namespace").with_max_encoded_len(1 << 16);
    let mut parts = data.splitn(2, |&b| b == 0xFF);
    let first = parts.next().unwrap_or_default();
    let Ok(a) = serde_json::from_slice::<Value>(first) else { return };
    let ea = encode(&space, &a);
    if let Some(second) = parts.next() {
        let Ok(b) = serde_json::from_slice::<Value>(second) else { return };
        let eb = encode(&space, &b);
        if let (Some(ea), Some(eb)) = (ea, eb) {
            assert_eq!(
                a == b,
                ea == eb,
                "injectivity: values equal={} but encodings equal={}",
                a == b,
                ea == eb
            );
        }
    }
});
