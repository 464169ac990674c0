//! The value frame's checked-in test vectors (`docs/cache-value-vectors.json`): every build
//! must seal the same bytes and refuse the same forgeries. `LARDER_BLESS=1` rewrites the file
//! (only when the format deliberately changes, with a new frame version).

use larder_cache::frame::{self, FrameError, FrameMeta, MacKey};
use larder_cache::KeySecret;
use serde_json::{json, Value};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

struct Case {
    name: &'static str,
    secret_hex: String,
    key: &'static str,
    meta: FrameMeta,
    payload: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let quote = postcard::to_allocvec(&(225_000u64, "KRW")).unwrap();
    vec![
        Case {
            name: "empty payload, default-like secret",
            secret_hex: "00".repeat(16),
            key: "t:v1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            meta: FrameMeta { written_ms: 0, ttl_ms: 0, delta_ms: 0 },
            payload: vec![],
        },
        Case {
            name: "loan quote (postcard of (u64, &str))",
            secret_hex: "5a".repeat(32),
            key: "loan_calc:v1:mzxw6ytboi2gs4tfmvzxg5dpnzsxe3dt",
            meta: FrameMeta { written_ms: 1_795_000_000_000, ttl_ms: 600_000, delta_ms: 104 },
            payload: quote,
        },
        Case {
            name: "large fields",
            secret_hex: "0123456789abcdef".repeat(4),
            key: "n:v4294967295:77777777777777777777777777777777",
            meta: FrameMeta { written_ms: u64::MAX, ttl_ms: u64::MAX, delta_ms: u32::MAX },
            payload: (0..=255u8).collect(),
        },
    ]
}

fn error_name(e: FrameError) -> &'static str {
    match e {
        FrameError::Truncated => "truncated",
        FrameError::BadMagic => "bad_magic",
        FrameError::UnsupportedVersion(_) => "unsupported_version",
        FrameError::BadFlags(_) => "bad_flags",
        FrameError::BadMac => "bad_mac",
        FrameError::KeyTooLong => "key_too_long",
        FrameError::PayloadTooLong => "payload_too_long",
        _ => "other",
    }
}

fn build() -> Value {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for c in cases() {
        let mac = MacKey::from_secret(&KeySecret::from_hex(&c.secret_hex).unwrap());
        let f = frame::seal(&mac, c.key, c.meta, &c.payload).unwrap();
        good.push(json!({
            "name": c.name,
            "secret_hex": c.secret_hex,
            "key": c.key,
            "written_ms": c.meta.written_ms,
            "ttl_ms": c.meta.ttl_ms,
            "delta_ms": c.meta.delta_ms,
            "payload_hex": hex(&c.payload),
            "frame_hex": hex(&f),
        }));
        if c.name.starts_with("loan") {
            let mut push = |name: &str, key: &str, bytes: Vec<u8>| {
                let err = frame::open(&mac, key, &bytes).unwrap_err();
                bad.push(json!({
                    "name": name, "secret_hex": c.secret_hex, "key": key,
                    "frame_hex": hex(&bytes), "error": error_name(err),
                }));
            };
            let mut m = f.clone();
            m[0] = b'X';
            push("bad magic", c.key, m);
            let mut v = f.clone();
            v[2] = 0;
            push("old version 0", c.key, v);
            let mut fl = f.clone();
            fl[3] = 1;
            push("reserved flag set", c.key, fl);
            let mut t = f.clone();
            t[4] ^= 1;
            push("write time altered", c.key, t);
            let mut p = f.clone();
            p[frame::HEADER_LEN] ^= 0x80;
            push("payload altered", c.key, p);
            push("copied to another key", "loan_calc:v1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", f.clone());
            push("truncated by one byte", c.key, f[..f.len() - 1].to_vec());
            let forger = MacKey::from_secret(&KeySecret::from_hex(&"66".repeat(32)).unwrap());
            let forged = frame::seal(&forger, c.key, c.meta, &c.payload).unwrap();
            push("sealed with another secret", c.key, forged);
        }
    }
    json!({
        "format": "larder cache value frame v1 (docs/cache-value-format.md)",
        "mac_key": "KeySecret::from_hex(secret_hex).derive(\"larder cache value mac v1\")",
        "valid": good,
        "invalid": bad,
    })
}

#[test]
fn frames_match_the_checked_in_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cache-value-vectors.json");
    let built = build();
    if std::env::var("LARDER_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let text =
        std::fs::read_to_string(&path).expect("docs/cache-value-vectors.json (LARDER_BLESS=1 writes it)");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, built, "frame encoding changed: that needs a new frame version");
    // Independently of how they were built: every valid vector opens to its fields, every
    // invalid one is refused with its error.
    for v in stored["valid"].as_array().unwrap() {
        let mac = MacKey::from_secret(&KeySecret::from_hex(v["secret_hex"].as_str().unwrap()).unwrap());
        let bytes = unhex(v["frame_hex"].as_str().unwrap());
        let f = frame::open(&mac, v["key"].as_str().unwrap(), &bytes).unwrap();
        assert_eq!(f.meta.written_ms, v["written_ms"].as_u64().unwrap());
        assert_eq!(f.meta.ttl_ms, v["ttl_ms"].as_u64().unwrap());
        assert_eq!(u64::from(f.meta.delta_ms), v["delta_ms"].as_u64().unwrap());
        assert_eq!(hex(f.payload), v["payload_hex"].as_str().unwrap());
    }
    let invalid = stored["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 8);
    for v in invalid {
        let mac = MacKey::from_secret(&KeySecret::from_hex(v["secret_hex"].as_str().unwrap()).unwrap());
        let bytes = unhex(v["frame_hex"].as_str().unwrap());
        let err = frame::open(&mac, v["key"].as_str().unwrap(), &bytes).unwrap_err();
        assert_eq!(error_name(err), v["error"].as_str().unwrap(), "{}", v["name"]);
    }
}
