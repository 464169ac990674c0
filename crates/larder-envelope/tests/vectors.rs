//! Checked-in test vectors (docs/ciphertext-vectors.json): they must still decrypt, re-encrypt
//! byte for byte from the same inputs, and decode with an independent reading of
//! docs/ciphertext-format.md (plain aes-gcm + hmac, no larder code).
//!
//! Regenerate (only when the format version changes): `LARDER_WRITE_VECTORS=1 cargo test -p
//! larder-envelope --test vectors`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hmac::{Hmac, Mac};
use larder_envelope::{
    dangerous_encrypt_with_fixed_key_and_nonce, EncryptionContext, Envelope, LocalKeyring,
};
use serde_json::{json, Value};
use sha2::Sha256;

const MASTER_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};
const KEY_ID: &str = "test-k1";

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/ciphertext-vectors.json")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

struct Case {
    name: &'static str,
    context: &'static [(&'static str, &'static str)],
    plaintext: &'static str,
    data_key: [u8; 32],
    wrap_nonce: [u8; 12],
    nonce: [u8; 12],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "phone number",
            context: &[("table", "inquiries"), ("column", "phone")],
            plaintext: "010-1234-5678",
            data_key: [0x41; 32],
            wrap_nonce: [0xA1; 12],
            nonce: [0xB1; 12],
        },
        Case {
            name: "empty plaintext, empty context",
            context: &[],
            plaintext: "",
            data_key: [0x42; 32],
            wrap_nonce: [0xA2; 12],
            nonce: [0xB2; 12],
        },
        Case {
            name: "Hangul name",
            context: &[("table", "customers"), ("column", "name"), ("tenant", "kurly")],
            plaintext: "홍길동",
            data_key: [0x43; 32],
            wrap_nonce: [0xA3; 12],
            nonce: [0xB3; 12],
        },
        Case {
            name: "e-mail address",
            context: &[("column", "email")],
            plaintext: "hong.gildong@example.com",
            data_key: [0x44; 32],
            wrap_nonce: [0xA4; 12],
            nonce: [0xB4; 12],
        },
    ]
}

fn context_of(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

fn encrypt_case(c: &Case) -> Vec<u8> {
    let keyring = LocalKeyring::from_key_bytes(KEY_ID, MASTER_KEY).unwrap();
    let ctx = context_of(c.context);
    let generated = keyring.dangerous_wrap_fixed(c.data_key, c.wrap_nonce, &ctx).unwrap();
    dangerous_encrypt_with_fixed_key_and_nonce(generated, c.nonce, c.plaintext.as_bytes(), &ctx).unwrap()
}

#[test]
fn vectors_decrypt_and_reencrypt_identically() {
    let p = path();
    if std::env::var_os("LARDER_WRITE_VECTORS").is_some() {
        let vectors: Vec<Value> = cases()
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
                    "wrap_nonce_hex": hex(&c.wrap_nonce),
                    "nonce_hex": hex(&c.nonce),
                    "ciphertext_len": ct.len(),
                    "ciphertext_hex": hex(&ct),
                    "ciphertext_text": format!("lv1.{}", base64_url(&ct)),
                })
            })
            .collect();
        let doc = json!({
            "description": "larder-envelope ciphertext format v1 test vectors (docs/ciphertext-format.md). \
                Local keyring, fixed master key, fixed data keys and nonces: NEVER use fixed nonces for real data.",
            "format_version": 1,
            "algorithm_id": 1,
            "master_key_hex": hex(&MASTER_KEY),
            "key_id": KEY_ID,
            "vectors": vectors,
        });
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with LARDER_WRITE_VECTORS=1)", p.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["master_key_hex"].as_str().unwrap(), hex(&MASTER_KEY));
    assert_eq!(doc["key_id"].as_str().unwrap(), KEY_ID);
    let vectors = doc["vectors"].as_array().unwrap();
    let all = cases();
    assert_eq!(vectors.len(), all.len());
    let envelope = Envelope::builder(LocalKeyring::from_key_bytes(KEY_ID, MASTER_KEY).unwrap()).build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (v, c) in vectors.iter().zip(&all) {
        assert_eq!(v["name"].as_str().unwrap(), c.name);
        let ct = unhex(v["ciphertext_hex"].as_str().unwrap());
        let ctx = context_of(c.context);
        // 1. It still decrypts, in both forms.
        let plain = rt.block_on(envelope.decrypt(&ct, &ctx)).unwrap();
        assert_eq!(&*plain, c.plaintext.as_bytes(), "{}", c.name);
        let text = v["ciphertext_text"].as_str().unwrap();
        assert_eq!(rt.block_on(envelope.decrypt_text(text, &ctx)).unwrap(), c.plaintext);
        // 2. The same inputs give the same bytes.
        assert_eq!(encrypt_case(c), ct, "{}: re-encryption differs from the checked-in vector", c.name);
        // 3. An independent decoder following docs/ciphertext-format.md.
        assert_eq!(independent_decrypt(&ct, &ctx, &c.data_key), c.plaintext.as_bytes());
        // 4. Another context fails.
        assert!(rt.block_on(envelope.decrypt(&ct, &ctx.clone().with("x", "y"))).is_err());
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hmac(key: &[u8], label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    m.update(label);
    m.finalize().into_bytes().into()
}

/// Decodes a v1 ciphertext with the data key, using only the format document.
fn independent_decrypt(ct: &[u8], ctx: &EncryptionContext, data_key: &[u8; 32]) -> Vec<u8> {
    assert_eq!(ct[0], 1, "version");
    assert_eq!(ct[1], 1, "algorithm");
    assert_eq!(ct[2], 1, "local keyring");
    let id_len = ct[3] as usize;
    assert_eq!(&ct[4..4 + id_len], KEY_ID.as_bytes());
    let edk_len = u16::from_be_bytes([ct[4 + id_len], ct[5 + id_len]]) as usize;
    assert_eq!(edk_len, 60, "local EDK: 12-byte nonce + 32-byte key + 16-byte tag");
    // The local keyring's EDK: wrap nonce || AES-256-GCM(master key, data key), AAD = label ||
    // key id length || key id || canonical context (docs/keyring-format.md).
    let edk = &ct[6 + id_len..6 + id_len + edk_len];
    let mut wrap_aad = b"larder-envelope local wrap v1".to_vec();
    wrap_aad.push(id_len as u8);
    wrap_aad.extend_from_slice(KEY_ID.as_bytes());
    wrap_aad.extend_from_slice(&ctx.canonical_bytes().unwrap());
    let unwrapped = Aes256Gcm::new(&MASTER_KEY.into())
        .decrypt(edk[..12].try_into().unwrap(), Payload { msg: &edk[12..], aad: &wrap_aad })
        .expect("independent unwrap of the local EDK");
    assert_eq!(&unwrapped[..], data_key);
    let commit_at = 6 + id_len + edk_len;
    let header = &ct[..commit_at + 32];
    assert_eq!(&ct[commit_at..commit_at + 32], &hmac(data_key, b"larder-envelope v1 key commitment"));
    let nonce = &ct[commit_at + 32..commit_at + 44];
    let body = &ct[commit_at + 44..];
    let enc_key = hmac(data_key, b"larder-envelope v1 message encryption key");
    let mut aad = header.to_vec();
    aad.extend_from_slice(&ctx.canonical_bytes().unwrap());
    Aes256Gcm::new(&enc_key.into())
        .decrypt(nonce.try_into().unwrap(), Payload { msg: body, aad: &aad })
        .expect("independent AES-256-GCM open")
}
