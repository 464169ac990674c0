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
    /// Flags besides the tag bit (0, or `FLAG_TAG_RECORD` for a tag record).
    flags: u8,
    /// Tags and tokens of a tagged entry (flag 0x04); empty: untagged.
    tags: Vec<(&'static str, [u8; 16])>,
}

fn seal(mac: &MacKey, c: &Case) -> Vec<u8> {
    if c.tags.is_empty() {
        frame::seal_with_flags(mac, c.key, c.meta, c.flags, &c.payload).unwrap()
    } else {
        frame::seal_tagged(mac, c.key, c.meta, c.flags, &c.tags, &c.payload).unwrap()
    }
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
            flags: 0,
            tags: vec![],
        },
        Case {
            name: "loan quote (postcard of (u64, &str))",
            secret_hex: "5a".repeat(32),
            key: "loan_calc:v1:mzxw6ytboi2gs4tfmvzxg5dpnzsxe3dt",
            meta: FrameMeta { written_ms: 1_795_000_000_000, ttl_ms: 600_000, delta_ms: 104 },
            payload: quote.clone(),
            flags: 0,
            tags: vec![],
        },
        Case {
            name: "large fields",
            secret_hex: "0123456789abcdef".repeat(4),
            key: "n:v4294967295:77777777777777777777777777777777",
            meta: FrameMeta { written_ms: u64::MAX, ttl_ms: u64::MAX, delta_ms: u32::MAX },
            payload: (0..=255u8).collect(),
            flags: 0,
            tags: vec![],
        },
        // Flag 0x04: the loan quote stored under two tags (docs/cache-value-format.md, "Tags").
        Case {
            name: "tagged loan quote (user:7, team:1)",
            secret_hex: "5a".repeat(32),
            key: "loan_calc:v1:mzxw6ytboi2gs4tfmvzxg5dpnzsxe3dt",
            meta: FrameMeta { written_ms: 1_795_000_000_000, ttl_ms: 600_000, delta_ms: 104 },
            payload: quote,
            flags: 0,
            tags: vec![("team:1", [0x11; 16]), ("user:7", *b"0123456789abcdef")],
        },
        // Flag 0x08: the tag record of `user:7` (key text: tags::record_key("user:7")).
        Case {
            name: "tag record of user:7",
            secret_hex: "5a".repeat(32),
            key: Box::leak(larder_cache::tags::record_key("user:7").into_boxed_str()),
            meta: FrameMeta { written_ms: 1_795_000_000_000, ttl_ms: 2_592_000_000, delta_ms: 0 },
            payload: b"0123456789abcdef".to_vec(),
            flags: frame::FLAG_TAG_RECORD,
            tags: vec![],
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
        FrameError::BadTags => "bad_tags",
        _ => "other",
    }
}

fn build() -> Value {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for c in cases() {
        let mac = MacKey::from_secret(&KeySecret::from_hex(&c.secret_hex).unwrap());
        let f = seal(&mac, &c);
        let mut v = json!({
            "name": c.name,
            "secret_hex": c.secret_hex,
            "key": c.key,
            "written_ms": c.meta.written_ms,
            "ttl_ms": c.meta.ttl_ms,
            "delta_ms": c.meta.delta_ms,
            "payload_hex": hex(&c.payload),
            "frame_hex": hex(&f),
        });
        if !c.tags.is_empty() {
            v["tags"] = c.tags.iter().map(|(t, k)| json!({ "tag": t, "token_hex": hex(k) })).collect();
        }
        good.push(v);
        if c.name.starts_with("tagged") {
            let mut push = |name: &str, bytes: Vec<u8>, err: FrameError| {
                assert_eq!(frame::open(&mac, c.key, &bytes).unwrap_err(), err, "{name}");
                bad.push(json!({
                    "name": name, "secret_hex": c.secret_hex, "key": c.key,
                    "frame_hex": hex(&bytes), "error": error_name(err),
                }));
            };
            // A token changed after sealing: the MAC covers the tag block.
            let mut t = f.clone();
            let at = f.len() - frame::MAC_LEN - c.payload.len() - 1;
            t[at] ^= 1;
            push("tag token altered", t, FrameError::BadMac);
            // Well sealed, but the block claims 0 tags / a tag longer than the body.
            let zero = frame::seal_with_flags(&mac, c.key, c.meta, frame::FLAG_TAGS, &[0]).unwrap();
            push("tag block with no tags", zero, FrameError::BadTags);
            let long = frame::seal_with_flags(&mac, c.key, c.meta, frame::FLAG_TAGS, &[1, 0xff, 0x00, b'x'])
                .unwrap();
            push("tag length past the body", long, FrameError::BadTags);
            // The tag-record bit with another bit.
            let mut fl = f.clone();
            fl[3] = frame::FLAG_TAGS | frame::FLAG_TAG_RECORD;
            push("tag record bit with the tag bit", fl, FrameError::BadFlags(0x0c));
        }
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
        "format": "larder cache value frame v1, flags 0x02 CBOR, 0x04 tagged, 0x08 tag record (docs/cache-value-format.md)",
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
        let tags: Vec<Value> =
            f.tags.iter().map(|(t, k)| json!({ "tag": t, "token_hex": hex(&k) })).collect();
        assert_eq!(tags, v["tags"].as_array().cloned().unwrap_or_default(), "{}", v["name"]);
        assert_eq!(f.meta.written_ms, v["written_ms"].as_u64().unwrap());
        assert_eq!(f.meta.ttl_ms, v["ttl_ms"].as_u64().unwrap());
        assert_eq!(u64::from(f.meta.delta_ms), v["delta_ms"].as_u64().unwrap());
        assert_eq!(hex(f.payload), v["payload_hex"].as_str().unwrap());
    }
    let invalid = stored["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 12);
    for v in invalid {
        let mac = MacKey::from_secret(&KeySecret::from_hex(v["secret_hex"].as_str().unwrap()).unwrap());
        let bytes = unhex(v["frame_hex"].as_str().unwrap());
        let err = frame::open(&mac, v["key"].as_str().unwrap(), &bytes).unwrap_err();
        assert_eq!(error_name(err), v["error"].as_str().unwrap(), "{}", v["name"]);
    }
}
