//! Checked-in vectors of ciphertext format v2 (docs/ciphertext-v2-vectors.json): they decrypt
//! with the envelope (through whichever listed keyring it has), re-encrypt byte for byte from
//! the same inputs, and decode with an independent reading of docs/ciphertext-format.md
//! ("Format v2") using plain aes-gcm + hmac. Negative vectors fail with the documented errors.
//!
//! Regenerate (only when the format changes): `LARDER_WRITE_VECTORS=1 cargo test -p
//! larder-envelope --test vectors_v2`.

use std::collections::BTreeMap;

use crate::common::{context_of, docs_file, hex, hmac, unhex};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use larder_envelope::{
    dangerous_encrypt_v2_with_fixed_key_and_nonce, DataKey, EncryptedDataKey, EncryptionContext, Envelope,
    EnvelopeError, KeyringKind, LocalKeyring,
};
use serde_json::{json, Value};

const MASTER_A: [u8; 32] = [0x0A; 32];
const MASTER_B: [u8; 32] = [0x0B; 32];
const KMS_ARN: &str = "arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

#[derive(Clone, Copy)]
enum Edk {
    /// A local EDK under key id `a1` (MASTER_A) or `b1` (MASTER_B), with this wrap nonce.
    LocalA([u8; 12]),
    LocalB([u8; 12]),
    /// An opaque AWS KMS EDK (bytes no local keyring opens; a KMS-less reader skips it).
    Kms,
}

struct Case {
    name: &'static str,
    context: &'static [(&'static str, &'static str)],
    plaintext: &'static str,
    data_key: [u8; 32],
    edks: &'static [Edk],
    nonce: [u8; 12],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "one local EDK (v1 + 1 byte)",
            context: &[("table", "inquiries"), ("column", "phone")],
            plaintext: "010-1234-5678",
            data_key: [0x51; 32],
            edks: &[Edk::LocalA([0xC1; 12])],
            nonce: [0xD1; 12],
        },
        Case {
            name: "two local EDKs (a1, b1)",
            context: &[("table", "inquiries"), ("column", "phone")],
            plaintext: "010-1234-5678",
            data_key: [0x52; 32],
            edks: &[Edk::LocalA([0xC2; 12]), Edk::LocalB([0xE2; 12])],
            nonce: [0xD2; 12],
        },
        Case {
            name: "KMS EDK first, local b1 second",
            context: &[("column", "email")],
            plaintext: "hong.gildong@example.com",
            data_key: [0x53; 32],
            edks: &[Edk::Kms, Edk::LocalB([0xE3; 12])],
            nonce: [0xD3; 12],
        },
        Case {
            name: "empty plaintext, empty context, three EDKs",
            context: &[],
            plaintext: "",
            data_key: [0x54; 32],
            edks: &[Edk::LocalB([0xE4; 12]), Edk::Kms, Edk::LocalA([0xC4; 12])],
            nonce: [0xD4; 12],
        },
    ]
}

fn encrypt_case(c: &Case) -> Vec<u8> {
    let ctx = context_of(c.context);
    let a = LocalKeyring::from_key_bytes("a1", MASTER_A).unwrap();
    let b = LocalKeyring::from_key_bytes("b1", MASTER_B).unwrap();
    let edks: Vec<EncryptedDataKey> = c
        .edks
        .iter()
        .map(|e| match e {
            Edk::LocalA(n) => a.dangerous_wrap_fixed(c.data_key, *n, &ctx).unwrap().edk,
            Edk::LocalB(n) => b.dangerous_wrap_fixed(c.data_key, *n, &ctx).unwrap().edk,
            Edk::Kms => EncryptedDataKey {
                kind: KeyringKind::AwsKms,
                key_id: KMS_ARN.into(),
                ciphertext: (0..184u16).map(|i| (i * 7 + 1) as u8).collect(),
            },
        })
        .collect();
    dangerous_encrypt_v2_with_fixed_key_and_nonce(
        &DataKey::from_array(c.data_key),
        &edks,
        c.nonce,
        c.plaintext.as_bytes(),
        &ctx,
    )
    .unwrap()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Malformed or altered inputs and the error every reader reports (the first vector's bytes,
/// changed as described; contexts as in that vector).
fn negatives(first: &[u8]) -> Vec<(&'static str, Vec<u8>, EnvelopeError)> {
    let mut zero_count = first.to_vec();
    zero_count[2] = 0;
    let mut count_too_big = first.to_vec();
    count_too_big[2] = 2;
    let mut v3 = first.to_vec();
    v3[0] = 3;
    let mut flipped_commitment = first.to_vec();
    let commit_at = 3 + 1 + 1 + 2 + 2 + 60;
    flipped_commitment[commit_at] ^= 1;
    let mut flipped_tag = first.to_vec();
    *flipped_tag.last_mut().unwrap() ^= 0x80;
    vec![
        ("EDK count 0", zero_count, EnvelopeError::Malformed { what: "EDK count is 0", offset: 2 }),
        (
            "EDK count larger than the entries",
            count_too_big,
            // The second "entry" starts at the commitment, whose first byte (0x12) is no keyring kind.
            EnvelopeError::UnsupportedKeyring(0x12),
        ),
        ("unknown version 3", v3, EnvelopeError::UnsupportedVersion(3)),
        ("commitment altered", flipped_commitment, EnvelopeError::KeyCommitmentMismatch),
        ("tag altered", flipped_tag, EnvelopeError::AuthenticationFailed),
        (
            "cut inside the first EDK",
            first[..20].to_vec(),
            EnvelopeError::Malformed { what: "EDK bytes", offset: 9 },
        ),
    ]
}

#[test]
fn v2_vectors_decrypt_reencrypt_and_decode_independently() {
    let p = docs_file("ciphertext-v2-vectors.json");
    let all = cases();
    if std::env::var_os("LARDER_WRITE_VECTORS").is_some() {
        let vectors: Vec<Value> = all
            .iter()
            .map(|c| {
                let ct = encrypt_case(c);
                let ctx: BTreeMap<&str, &str> = c.context.iter().copied().collect();
                json!({
                    "name": c.name,
                    "context": ctx,
                    "context_canonical_hex": hex(&context_of(c.context).canonical_bytes().unwrap()),
                    "plaintext_utf8": c.plaintext,
                    "data_key_hex": hex(&c.data_key),
                    "nonce_hex": hex(&c.nonce),
                    "ciphertext_len": ct.len(),
                    "ciphertext_hex": hex(&ct),
                    "ciphertext_text": format!("lv2.{}", b64(&ct)),
                })
            })
            .collect();
        let first = encrypt_case(&all[0]);
        let negative: Vec<Value> = negatives(&first)
            .into_iter()
            .map(|(name, bytes, err)| json!({"name": name, "ciphertext_hex": hex(&bytes), "error": format!("{err:?}")}))
            .collect();
        let doc = json!({
            "description": "larder-envelope ciphertext format v2 test vectors (docs/ciphertext-format.md, \"Format v2\"). \
                Local keyrings a1 and b1 with fixed master keys, fixed data keys and nonces, and an opaque \
                AWS KMS EDK: NEVER use fixed nonces for real data. Negative vectors use the first vector's context.",
            "format_version": 2,
            "algorithm_id": 1,
            "local_keys": {"a1": hex(&MASTER_A), "b1": hex(&MASTER_B)},
            "vectors": vectors,
            "negative": negative,
        });
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with LARDER_WRITE_VECTORS=1)", p.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), all.len());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let only_a = Envelope::builder(LocalKeyring::from_key_bytes("a1", MASTER_A).unwrap()).build();
    let only_b = Envelope::builder(LocalKeyring::from_key_bytes("b1", MASTER_B).unwrap()).build();
    for (v, c) in vectors.iter().zip(&all) {
        assert_eq!(v["name"].as_str().unwrap(), c.name);
        let ct = unhex(v["ciphertext_hex"].as_str().unwrap());
        let ctx = context_of(c.context);
        assert_eq!(encrypt_case(c), ct, "{}: re-encryption differs from the checked-in vector", c.name);
        for (env, holds) in [
            (&only_a, c.edks.iter().any(|e| matches!(e, Edk::LocalA(_)))),
            (&only_b, c.edks.iter().any(|e| matches!(e, Edk::LocalB(_)))),
        ] {
            let got = rt.block_on(env.decrypt(&ct, &ctx));
            if holds {
                assert_eq!(&*got.unwrap(), c.plaintext.as_bytes(), "{}", c.name);
                let t = v["ciphertext_text"].as_str().unwrap();
                assert_eq!(rt.block_on(env.decrypt_text(t, &ctx)).unwrap(), c.plaintext);
            } else {
                assert!(got.is_err(), "{}", c.name);
            }
        }
        assert_eq!(independent_decrypt(&ct, &ctx), c.plaintext.as_bytes(), "{}", c.name);
    }
    let first = unhex(vectors[0]["ciphertext_hex"].as_str().unwrap());
    let ctx = context_of(all[0].context);
    let negative = doc["negative"].as_array().unwrap();
    let expected = negatives(&first);
    assert_eq!(negative.len(), expected.len());
    for (v, (name, bytes, err)) in negative.iter().zip(expected) {
        assert_eq!(v["name"].as_str().unwrap(), name);
        assert_eq!(unhex(v["ciphertext_hex"].as_str().unwrap()), bytes, "{name}");
        assert_eq!(v["error"].as_str().unwrap(), format!("{err:?}"), "{name}");
        assert_eq!(rt.block_on(only_a.decrypt(&bytes, &ctx)).unwrap_err(), err, "{name}");
    }
}

/// Decodes a v2 ciphertext with whichever local key it lists, using only the format documents.
fn independent_decrypt(ct: &[u8], ctx: &EncryptionContext) -> Vec<u8> {
    assert_eq!((ct[0], ct[1]), (2, 1), "version 2, algorithm 1");
    let count = ct[2] as usize;
    let mut at = 3;
    let mut data_key = None;
    for _ in 0..count {
        let kind = ct[at];
        let id_len = ct[at + 1] as usize;
        let id = std::str::from_utf8(&ct[at + 2..at + 2 + id_len]).unwrap();
        let edk_len = u16::from_be_bytes([ct[at + 2 + id_len], ct[at + 3 + id_len]]) as usize;
        let edk = &ct[at + 4 + id_len..at + 4 + id_len + edk_len];
        let master = match (kind, id) {
            (1, "a1") => Some(MASTER_A),
            (1, "b1") => Some(MASTER_B),
            (2, _) => None,
            other => panic!("unexpected EDK {other:?}"),
        };
        if let (Some(master), None) = (master, &data_key) {
            let mut wrap_aad = b"larder-envelope local wrap v1".to_vec();
            wrap_aad.push(id_len as u8);
            wrap_aad.extend_from_slice(id.as_bytes());
            wrap_aad.extend_from_slice(&ctx.canonical_bytes().unwrap());
            let k = Aes256Gcm::new(&master.into())
                .decrypt(edk[..12].try_into().unwrap(), Payload { msg: &edk[12..], aad: &wrap_aad })
                .expect("independent unwrap");
            data_key = Some(k);
        }
        at += 4 + id_len + edk_len;
    }
    let data_key = data_key.expect("a local EDK");
    assert_eq!(&ct[at..at + 32], &hmac(&data_key, b"larder-envelope v1 key commitment"));
    let header = &ct[..at + 32];
    let nonce = &ct[at + 32..at + 44];
    let enc_key = hmac(&data_key, b"larder-envelope v1 message encryption key");
    let mut aad = header.to_vec();
    aad.extend_from_slice(&ctx.canonical_bytes().unwrap());
    Aes256Gcm::new(&enc_key.into())
        .decrypt(nonce.try_into().unwrap(), Payload { msg: &ct[at + 44..], aad: &aad })
        .expect("independent decryption")
}
