//! Blind indexes: the checked-in vectors (docs/blind-index-vectors.json) computed by the library
//! and, independently, by plain HMAC-SHA-256 following docs/blind-index.md alone; and the index
//! key's life in the local keyring file (added once, kept by rotation, never an encryption key).
//! The Python binding is checked against the same file (tests/python/test_blind_index.py).
//!
//! Regenerate the vectors (only when the derivation changes, which is a new version):
//! `LARDER_WRITE_VECTORS=1 cargo test -p larder-envelope --test blind_index`.

use crate::common::{context_of, docs_file, hex, unhex};
use hmac::{Hmac, KeyInit, Mac};
use larder_envelope::blind::{BlindIndexer, Field, IndexSpec, Normalizer, Part};
use larder_envelope::{EncryptionContext, EnvelopeError, KeyringFileError, LocalKeyring};
use serde_json::{json, Value};
use sha2::Sha256;

const INDEX_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = 0x80 + i as u8;
        i += 1;
    }
    k
};

struct Case {
    name: &'static str,
    index: &'static str,
    fields: &'static [(&'static str, &'static str)],
    bits: u16,
    context: &'static [(&'static str, &'static str)],
    values: &'static [&'static str],
    normalized: &'static [&'static str],
}

const PHONE_CTX: &[(&str, &str)] = &[("table", "inquiries"), ("column", "phone")];

fn cases() -> Vec<Case> {
    let phone = |name, value, bits| Case {
        name,
        index: "inquiries_phone",
        fields: &[("phone", "full")],
        bits,
        context: PHONE_CTX,
        values: value,
        normalized: &["01012345678"],
    };
    vec![
        phone("phone, hyphenated, 16 bits", &["010-1234-5678"], 16),
        phone("phone, digits only: same index", &["01012345678"], 16),
        phone("phone, +82: same index", &["+82 10-1234-5678"], 16),
        phone("phone, 12 bits (not a prefix of the 16-bit index)", &["010-1234-5678"], 12),
        phone("phone, 64 bits", &["010-1234-5678"], 64),
        Case {
            name: "phone, last 4 digits",
            index: "inquiries_phone_last4",
            fields: &[("phone", "last4")],
            bits: 8,
            context: PHONE_CTX,
            values: &["(010) 1234.5678"],
            normalized: &["5678"],
        },
        Case {
            name: "e-mail, case-folded",
            index: "users_email",
            fields: &[("email", "full")],
            bits: 20,
            context: &[("table", "users"), ("column", "email")],
            values: &["  Hong.GilDong@Example.COM "],
            normalized: &["hong.gildong@example.com"],
        },
        Case {
            name: "e-mail domain",
            index: "users_email_domain",
            fields: &[("email", "domain")],
            bits: 4,
            context: &[("table", "users"), ("column", "email")],
            values: &["Hong.GilDong@Example.COM"],
            normalized: &["example.com"],
        },
        Case {
            name: "name, Hangul, empty context",
            index: "name",
            fields: &[("name", "full")],
            bits: 256,
            context: &[],
            values: &["홍길동"],
            normalized: &["홍길동"],
        },
        Case {
            name: "compound: last 4 phone digits + name",
            index: "last4_name",
            fields: &[("phone", "last4"), ("name", "full")],
            bits: 24,
            context: &[("table", "inquiries")],
            values: &["010-1234-5678", " John   SMITH"],
            normalized: &["5678", "john smith"],
        },
    ]
}

fn spec_of(index: &str, fields: &[(&str, &str)], bits: u16) -> IndexSpec {
    let fields: Vec<Field> = fields
        .iter()
        .map(|(n, p)| Field { normalizer: Normalizer::from_name(n).unwrap(), part: Part::parse(p).unwrap() })
        .collect();
    IndexSpec::compound(index, fields, bits).unwrap()
}

/// docs/blind-index.md, read on its own: no larder code but the context's canonical bytes
/// (specified in docs/key-format.md and checked by the ciphertext vectors).
fn independent(
    key: &[u8],
    index: &str,
    descriptor: &str,
    bits: u16,
    ctx: &[u8],
    normalized: &[&str],
) -> Vec<u8> {
    let lp = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    let mut info = b"larder blind index v1".to_vec();
    lp(&mut info, index.as_bytes());
    lp(&mut info, descriptor.as_bytes());
    info.extend_from_slice(&bits.to_be_bytes());
    lp(&mut info, ctx);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&info);
    let k = mac.finalize().into_bytes();
    let mut msg = Vec::new();
    for v in normalized {
        lp(&mut msg, v.as_bytes());
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&k).unwrap();
    mac.update(&msg);
    let d = mac.finalize().into_bytes();
    let n = usize::from(bits).div_ceil(8);
    let mut out = d[..n].to_vec();
    let spare = n * 8 - usize::from(bits);
    *out.last_mut().unwrap() &= 0xffu8 << spare;
    out
}

#[test]
fn vectors_match_the_library_and_an_independent_reading() {
    let indexer = BlindIndexer::from_key_bytes("i1", INDEX_KEY);
    let mut out = Vec::new();
    for c in cases() {
        let spec = spec_of(c.index, c.fields, c.bits);
        let ctx = context_of(c.context);
        let v = indexer.compound_index(&spec, c.values, &ctx).unwrap();
        for (f, (value, norm)) in spec.fields().iter().zip(c.values.iter().zip(c.normalized)) {
            // The part is taken from the normalized value.
            assert!(f.normalizer.normalize(value).unwrap().contains(norm), "{}", c.name);
        }
        let ind = independent(
            &INDEX_KEY,
            c.index,
            &spec.descriptor(),
            c.bits,
            &ctx.canonical_bytes().unwrap(),
            c.normalized,
        );
        assert_eq!(v.as_bytes(), ind.as_slice(), "{}: library vs independent reading", c.name);
        out.push(json!({
            "name": c.name,
            "index": c.index,
            "descriptor": spec.descriptor(),
            "bits": c.bits,
            "context": c.context.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "context_canonical_hex": hex(&ctx.canonical_bytes().unwrap()),
            "values": c.values,
            "normalized": c.normalized,
            "index_hex": v.to_hex(),
            "index_int": v.to_i64(),
        }));
    }
    let doc = json!({
        "description": "larder blind index v1 vectors (docs/blind-index.md). index_int is the index as an unsigned integer when bits <= 63.",
        "index_key_hex": hex(&INDEX_KEY),
        "vectors": out,
    });
    let p = docs_file("blind-index-vectors.json");
    if std::env::var_os("LARDER_WRITE_VECTORS").is_some() {
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with LARDER_WRITE_VECTORS=1)", p.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, doc, "docs/blind-index-vectors.json differs from what this build computes");

    // The stored file, read on its own terms: every vector recomputes from its JSON fields.
    let key = unhex(stored["index_key_hex"].as_str().unwrap());
    let vectors = stored["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 10);
    for v in vectors {
        let normalized: Vec<&str> =
            v["normalized"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        let got = independent(
            &key,
            v["index"].as_str().unwrap(),
            v["descriptor"].as_str().unwrap(),
            v["bits"].as_u64().unwrap() as u16,
            &unhex(v["context_canonical_hex"].as_str().unwrap()),
            &normalized,
        );
        assert_eq!(hex(&got), v["index_hex"].as_str().unwrap(), "{}", v["name"]);
    }
    // The three spellings of one phone number share one index value.
    let first: Vec<&str> = vectors[..3].iter().map(|v| v["index_hex"].as_str().unwrap()).collect();
    assert!(first.iter().all(|h| *h == first[0]), "{first:?}");
}

#[test]
fn the_index_key_lives_in_the_keyring_file_and_survives_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    assert!(LocalKeyring::load(&path).unwrap().blind_indexer().is_none());

    assert_eq!(LocalKeyring::add_index_key(&path).unwrap(), "i1");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("index i1 ")).count(), 1, "{text}");
    let ctx = EncryptionContext::new().with("column", "phone");
    let spec = IndexSpec::new("phone", Normalizer::Phone, 32).unwrap();
    let before = LocalKeyring::load(&path).unwrap().blind_indexer().unwrap();
    assert_eq!(before.id(), "i1");
    let v1 = before.blind_index(&spec, "010-1234-5678", &ctx).unwrap();

    // A second index key would silently change every index: refused, file unchanged.
    let err = LocalKeyring::add_index_key(&path).unwrap_err();
    assert!(matches!(&err, EnvelopeError::Keyring(m) if m.contains("already has the index key")), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // Rotation keeps the index key (and so every stored index value).
    LocalKeyring::rotate(&path).unwrap();
    let ring = LocalKeyring::load(&path).unwrap();
    assert_eq!(ring.key_infos().len(), 2, "the index key is not a master key");
    let after = ring.blind_indexer().unwrap().blind_index(&spec, "01012345678", &ctx).unwrap();
    assert_eq!(after, v1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn bad_index_records_are_typed_errors() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let head = format!("larder-keyring 1\nkey k1 10 primary {k}\n");
    let cases: Vec<(String, EnvelopeError)> = vec![
        (
            format!("{head}index i1 10 {k}\nindex i2 11 {k}\n"),
            EnvelopeError::KeyringFile(KeyringFileError::BadLine {
                line: 4,
                problem: "a keyring holds at most one `index` record",
            }),
        ),
        (
            format!("{head}index k1 10 {k}\n"),
            EnvelopeError::KeyringFile(KeyringFileError::DuplicateKeyId("k1".into())),
        ),
        (
            format!("{head}index i1 10 primary {k}\n"),
            EnvelopeError::KeyringFile(KeyringFileError::BadLine {
                line: 3,
                problem: "expected `index <id> <created-unix-seconds> <base64url key>`",
            }),
        ),
        (
            format!("{head}index i1 10 AAAA\n"),
            EnvelopeError::KeyringFile(KeyringFileError::BadLine { line: 3, problem: "key is not 32 bytes" }),
        ),
        (
            format!("larder-keyring 1\nindex i1 10 {k}\n"),
            EnvelopeError::KeyringFile(KeyringFileError::NoPrimary),
        ),
    ];
    for (i, (text, want)) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("k{i}"));
        std::fs::write(&p, &text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(LocalKeyring::load(&p).err(), Some(want), "{text}");
    }
}
