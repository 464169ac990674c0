//! The CBOR value codec (feature `cbor`, frame flag 0x02): its checked-in vectors
//! (`docs/cache-value-cbor-vectors.json`, also read by the Python tests), and mixed fleets —
//! a CBOR writer read by a postcard-default reader and the reverse, through one SQLite file.

use std::time::Duration;

use larder_cache::frame::{self, FrameMeta, MacKey, FLAG_CBOR};
use larder_cache::{Cache, KeySecret, KeySpace, StableKey, ValueCodec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Quote {
    monthly_won: u64,
    currency: String,
    rates: Vec<f64>,
    note: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    ValueCodec::Cbor.encode(v).unwrap()
}

fn build() -> Value {
    let secret = "5a".repeat(32);
    let mac = MacKey::from_secret(&KeySecret::from_hex(&secret).unwrap());
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let key =
        space.key(&LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 }).unwrap();
    let meta = FrameMeta { written_ms: 1_795_000_000_000, ttl_ms: 600_000, delta_ms: 104 };
    let quote = Quote { monthly_won: 152_425, currency: "KRW".into(), rates: vec![4.5, 0.25], note: None };
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "a Rust struct (a map of its field names)",
            cbor(&quote),
            json!({"monthly_won": 152425, "currency": "KRW", "rates": [4.5, 0.25], "note": null}),
        ),
        ("an integer", cbor(&225_000u64), json!(225000)),
        ("a negative integer", cbor(&-3i64), json!(-3)),
        ("a string", cbor(&"010-****-5678"), json!("010-****-5678")),
        (
            "a list of (u64, str) tuples (arrays)",
            cbor(&vec![(1u64, "a"), (2, "b")]),
            json!([[1, "a"], [2, "b"]]),
        ),
        ("None / null", cbor(&Option::<u64>::None), json!(null)),
        ("a bool", cbor(&true), json!(true)),
        ("a float", cbor(&1.5f64), json!(1.5)),
    ];
    let mut valid = Vec::new();
    for (name, payload, value) in cases {
        let f = frame::seal_with_flags(&mac, key.as_str(), meta, FLAG_CBOR, &payload).unwrap();
        valid.push(json!({
            "name": name,
            "secret_hex": secret,
            "key": key.as_str(),
            "written_ms": meta.written_ms,
            "ttl_ms": meta.ttl_ms,
            "delta_ms": meta.delta_ms,
            "flags": FLAG_CBOR,
            "payload_hex": hex(&payload),
            "value": value,
            "frame_hex": hex(&f),
        }));
    }
    json!({
        "format": "larder cache value frame v1 with CBOR payloads, flag 0x02 (docs/cache-value-format.md)",
        "key_of": "KeySpace(\"loan_calc\", 1) of LoanQuote { user_id: 7, amount_won: 5000000, rate_bp: 450, term_months: 36 }",
        "value_is": "the payload decoded, as JSON (bytes do not occur)",
        "valid": valid,
    })
}

#[test]
fn cbor_frames_match_the_checked_in_vectors() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cache-value-cbor-vectors.json");
    let built = build();
    if std::env::var("LARDER_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .expect("docs/cache-value-cbor-vectors.json (LARDER_BLESS=1 writes it)");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, built, "CBOR frame encoding changed");
    // Every vector's payload decodes (self-describing) to its JSON value.
    for v in stored["valid"].as_array().unwrap() {
        let payload: Vec<u8> = (0..v["payload_hex"].as_str().unwrap().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v["payload_hex"].as_str().unwrap()[i..i + 2], 16).unwrap())
            .collect();
        let decoded: Value = larder_cache::codec::decode(FLAG_CBOR, &payload).unwrap();
        assert_eq!(decoded, v["value"], "{}", v["name"]);
    }
}

#[test]
fn unknown_flags_stay_refused() {
    let mac = MacKey::from_secret(&KeySecret::from_hex(&"11".repeat(32)).unwrap());
    let meta = FrameMeta { written_ms: 1, ttl_ms: 2, delta_ms: 3 };
    // 0x04 and 0x08 are known since tags (tag block, tag record): not in this list.
    for bad in [0x01u8, 0x10, 0x80, 0x03] {
        assert!(frame::seal_with_flags(&mac, "t:v1:x", meta, bad, b"x").is_err());
        let mut f = frame::seal_with_flags(&mac, "t:v1:x", meta, FLAG_CBOR, b"\x01").unwrap();
        f[3] = bad;
        assert!(frame::open(&mac, "t:v1:x", &f).is_err());
    }
    let f = frame::seal_with_flags(&mac, "t:v1:x", meta, FLAG_CBOR, b"\x01").unwrap();
    assert_eq!(frame::open(&mac, "t:v1:x", &f).unwrap().flags, FLAG_CBOR);
    // A CBOR payload with trailing bytes is refused.
    assert!(larder_cache::codec::decode::<u64>(FLAG_CBOR, &[0x01, 0x02]).is_err());
}

fn sqlite_cache(path: &std::path::Path, codec: ValueCodec) -> Cache {
    larder_cache::config::parse(&format!("sqlite:{}", path.display()))
        .unwrap()
        .value_codec(codec)
        .build()
        .unwrap()
}

#[test]
fn mixed_codecs_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.db");
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let q = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let ttl = Duration::from_secs(60);
    let value =
        Quote { monthly_won: 152_425, currency: "KRW".into(), rates: vec![4.5], note: Some("x".into()) };

    // A CBOR writer; a postcard-default reader decodes by the frame's flag.
    let cbor_writer = sqlite_cache(&path, ValueCodec::Cbor);
    cbor_writer.set_blocking(&space, &q, value.clone(), ttl);
    let postcard_reader = sqlite_cache(&path, ValueCodec::Postcard);
    assert_eq!(postcard_reader.get_blocking::<_, Quote>(&space, &q), Some(value.clone()));

    // And the reverse: a postcard frame read by a CBOR-configured cache.
    let q2 = LoanQuote { user_id: 8, ..q };
    postcard_reader.set_blocking(&space, &q2, value.clone(), ttl);
    let cbor_reader = sqlite_cache(&path, ValueCodec::Cbor);
    assert_eq!(cbor_reader.get_blocking::<_, Quote>(&space, &q2), Some(value));
    assert_eq!(cbor_reader.stats().corrupt_entries, 0);
    assert_eq!(postcard_reader.stats().corrupt_entries, 0);
}
