//! Checked-in test vectors (docs/ciphertext-vectors.json).
//!
//! * Positive vectors (local keyring) and a KMS-kind vector must still decrypt, re-encrypt byte
//!   for byte from the same inputs, and decode with an **independent decoder** written from
//!   docs/ciphertext-format.md and docs/keyring-format.md alone: plain `aes-gcm` + `hmac`, and
//!   the context's canonical encoding computed by [`doc_context_encoding`] below from the
//!   byte layout in docs/ciphertext-format.md ("Encryption context encoding") — not by larder's
//!   own encoder.
//! * Negative vectors (bit flips, truncations, wrong context, swapped EDK, bad header bytes,
//!   non-canonical base64 text) must fail in larder with the error kind the file names, and
//!   must fail in the independent decoder too.
//!
//! Regenerate (only when the format version changes; positives must stay byte-identical):
//! `LARDER_WRITE_VECTORS=1 cargo test -p larder-envelope --features test-vectors --test vectors`.

use std::collections::BTreeMap;

use crate::common::{context_of, docs_file, hex, hmac, unhex};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use larder_envelope::{
    dangerous_encrypt_with_fixed_key_and_nonce, BoxFuture, DataKey, EncryptedDataKey, EncryptionContext,
    Envelope, EnvelopeError, GeneratedKey, Keyring, KeyringKind, LocalKeyring,
};
use serde_json::{json, Value};

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
const KMS_KEY_ARN: &str = "arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

struct Case {
    name: &'static str,
    context: &'static [(&'static str, &'static str)],
    plaintext: &'static str,
    data_key: [u8; 32],
    wrap_nonce: [u8; 12],
    nonce: [u8; 12],
}

const PHONE_CONTEXT: &[(&str, &str)] = &[("table", "inquiries"), ("column", "phone")];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "phone number",
            context: PHONE_CONTEXT,
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
        // Same context as "phone number", another data key: the donor of the swapped-EDK
        // negative vector.
        Case {
            name: "phone number, second data key",
            context: PHONE_CONTEXT,
            plaintext: "010-9876-5432",
            data_key: [0x45; 32],
            wrap_nonce: [0xA5; 12],
            nonce: [0xB5; 12],
        },
    ]
}

/// The KMS-kind vector: keyring kind 2, the key ARN as key id, and an opaque EDK standing for
/// the `CiphertextBlob` AWS KMS returns from `GenerateDataKey` (a real blob is bound to one KMS
/// key's material, so a format vector uses a fixed one; the KMS keyring itself is tested
/// against moto in tests/kms_keyring.rs).
struct KmsCase {
    name: &'static str,
    context: &'static [(&'static str, &'static str)],
    plaintext: &'static str,
    data_key: [u8; 32],
    edk: Vec<u8>,
    nonce: [u8; 12],
}

fn kms_case() -> KmsCase {
    // 184 bytes, the size of a KMS CiphertextBlob for a 32-byte data key.
    let edk: Vec<u8> = (0..184u32).map(|i| (i.wrapping_mul(37).wrapping_add(11) % 251) as u8).collect();
    KmsCase {
        name: "phone number under AWS KMS",
        context: PHONE_CONTEXT,
        plaintext: "010-1234-5678",
        data_key: [0x51; 32],
        edk,
        nonce: [0xC1; 12],
    }
}

fn encrypt_case(c: &Case) -> Vec<u8> {
    let keyring = LocalKeyring::from_key_bytes(KEY_ID, MASTER_KEY).unwrap();
    let ctx = context_of(c.context);
    let generated = keyring.dangerous_wrap_fixed(c.data_key, c.wrap_nonce, &ctx).unwrap();
    dangerous_encrypt_with_fixed_key_and_nonce(generated, c.nonce, c.plaintext.as_bytes(), &ctx).unwrap()
}

fn encrypt_kms_case(c: &KmsCase) -> Vec<u8> {
    let generated = GeneratedKey {
        plaintext: DataKey::from_array(c.data_key),
        edk: EncryptedDataKey {
            kind: KeyringKind::AwsKms,
            key_id: KMS_KEY_ARN.into(),
            ciphertext: c.edk.clone(),
        },
    };
    dangerous_encrypt_with_fixed_key_and_nonce(
        generated,
        c.nonce,
        c.plaintext.as_bytes(),
        &context_of(c.context),
    )
    .unwrap()
}

/// Stands in for AWS KMS's `Decrypt` of the vector's fixed blob: opens exactly that blob under
/// exactly that key ARN and context (as KMS would), refuses anything else the way KMS does.
struct VectorKms {
    edk: Vec<u8>,
    data_key: [u8; 32],
    context: EncryptionContext,
}

impl Keyring for VectorKms {
    fn kind(&self) -> KeyringKind {
        KeyringKind::AwsKms
    }
    fn primary_key_id(&self) -> String {
        KMS_KEY_ARN.into()
    }
    fn generate_data_key<'a>(
        &'a self,
        _: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        Box::pin(async { Err(EnvelopeError::Keyring("the vector keyring only decrypts".into())) })
    }
    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        Box::pin(async move {
            if edk.key_id != KMS_KEY_ARN {
                return Err(EnvelopeError::UnknownKeyId(edk.key_id.clone()));
            }
            if edk.ciphertext != self.edk || *context != self.context {
                return Err(EnvelopeError::InvalidEncryptedDataKey("InvalidCiphertextException".into()));
            }
            Ok(DataKey::from_array(self.data_key))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Negative vectors: how each is made from the positives.

fn text_of(ct: &[u8]) -> String {
    format!("lv1.{}", base64_url(ct))
}

/// Offsets inside a local-keyring ciphertext with key id `test-k1` (L = 7, E = 60).
const L: usize = KEY_ID.len();
const EDK_AT: usize = 6 + L;
const COMMIT_AT: usize = 6 + L + 60;
const NONCE_AT: usize = COMMIT_AT + 32;
const BODY_AT: usize = NONCE_AT + 12;

fn flip(ct: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut v = ct.to_vec();
    v[at] ^= mask;
    v
}

fn negative_vectors(phone: &[u8], second: &[u8], kms: &[u8]) -> Vec<Value> {
    let ctx = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let phone_ctx = ctx(PHONE_CONTEXT);
    let bin = |name: &str,
               description: &str,
               base: &str,
               bytes: Vec<u8>,
               context: &BTreeMap<String, String>,
               error: &str| {
        json!({
            "name": name, "description": description, "base": base, "form": "binary",
            "ciphertext_hex": hex(&bytes), "context": context, "expected_error": error,
        })
    };
    let text = |name: &str, description: &str, t: String, error: &str| {
        json!({
            "name": name, "description": description, "base": "phone number", "form": "text",
            "ciphertext_text": t, "context": ctx(PHONE_CONTEXT), "expected_error": error,
        })
    };
    let last = phone.len() - 1;
    // Swapped EDK: the second ciphertext's EDK (same key id, same context, another data key)
    // in the first one's header. The keyring opens it (to the other data key), and the key
    // commitment then refuses it.
    let mut swapped = phone.to_vec();
    swapped[EDK_AT..COMMIT_AT].copy_from_slice(&second[EDK_AT..COMMIT_AT]);
    let mut kms_wrong_id = kms.to_vec();
    // The last character of the ARN's key id (…890ab → …890ac).
    let arn_last = 4 + KMS_KEY_ARN.len() - 1;
    kms_wrong_id[arn_last] = b'c';
    let good_text = text_of(phone);
    // Canonical base64url: the final character encodes 4 bits of the last byte plus 2 bits
    // that must be zero (146 bytes = 48 groups of 3 + 2 bytes → 3 characters, 18 bits for 16).
    let mut trailing = good_text.clone().into_bytes();
    let last_char = *trailing.last().unwrap();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = ALPHABET.iter().position(|c| *c == last_char).unwrap();
    let noncanonical = ALPHABET[idx | 1];
    assert_ne!(noncanonical, last_char, "the vector's last character must have zero trailing bits");
    *trailing.last_mut().unwrap() = noncanonical;
    let trailing = String::from_utf8(trailing).unwrap();
    let standard_alphabet = good_text.replace('-', "+").replace('_', "/");
    assert_ne!(standard_alphabet, good_text, "the vector's text must contain - or _");
    vec![
        bin("version byte", "version 0x01 → 0x03 (no such version; 0x02 is format v2)", "phone number", flip(phone, 0, 0x02), &phone_ctx, "UnsupportedVersion"),
        bin("algorithm byte", "algorithm id 0x01 → 0x02", "phone number", flip(phone, 1, 0x03), &phone_ctx, "UnsupportedAlgorithm"),
        bin("keyring kind", "keyring kind 1 → 3", "phone number", flip(phone, 2, 0x02), &phone_ctx, "UnsupportedKeyring"),
        bin("key id length zero", "key id length 7 → 0", "phone number", flip(phone, 3, 0x07), &phone_ctx, "Malformed"),
        bin("key id", "one bit of the key id flipped (test-k1 → test-k0): a key the keyring does not have", "phone number", flip(phone, 4 + L - 1, 0x01), &phone_ctx, "UnknownKeyId"),
        bin("EDK length", "EDK length 60 → 61: every later field shifts, and the body is then one byte short of where it was", "phone number", flip(phone, 5 + L, 0x01), &phone_ctx, "InvalidEncryptedDataKey"),
        bin("EDK bit flip", "one bit of the wrapped data key flipped: the keyring refuses to unwrap it", "phone number", flip(phone, EDK_AT + 20, 0x10), &phone_ctx, "InvalidEncryptedDataKey"),
        bin("commitment bit flip", "one bit of the key commitment flipped", "phone number", flip(phone, COMMIT_AT + 5, 0x01), &phone_ctx, "KeyCommitmentMismatch"),
        bin("nonce bit flip", "one bit of the nonce flipped", "phone number", flip(phone, NONCE_AT, 0x80), &phone_ctx, "AuthenticationFailed"),
        bin("ciphertext bit flip", "one bit of the encrypted plaintext flipped", "phone number", flip(phone, BODY_AT + 3, 0x04), &phone_ctx, "AuthenticationFailed"),
        bin("tag bit flip", "the last bit of the GCM tag flipped", "phone number", flip(phone, last, 0x01), &phone_ctx, "AuthenticationFailed"),
        bin("truncated by one byte", "the last byte (of the tag) removed", "phone number", phone[..last].to_vec(), &phone_ctx, "AuthenticationFailed"),
        bin("truncated inside the EDK", "cut 10 bytes into the EDK", "phone number", phone[..EDK_AT + 10].to_vec(), &phone_ctx, "Malformed"),
        bin("truncated before the tag", "cut 15 bytes after the nonce: shorter than a tag", "phone number", phone[..BODY_AT + 15].to_vec(), &phone_ctx, "Malformed"),
        bin("empty", "no bytes at all", "phone number", Vec::new(), &phone_ctx, "Malformed"),
        bin("wrong context", "the phone ciphertext presented with column = email: the local keyring's wrap AAD binds the context, so the EDK does not open", "phone number", phone.to_vec(), &ctx(&[("table", "inquiries"), ("column", "email")]), "InvalidEncryptedDataKey"),
        bin("extra context pair", "the phone ciphertext presented with one more context pair", "phone number", phone.to_vec(), &ctx(&[("table", "inquiries"), ("column", "phone"), ("tenant", "x")]), "InvalidEncryptedDataKey"),
        bin("swapped EDK", "the EDK of \"phone number, second data key\" (same key id and context) in the phone ciphertext: it opens to another data key, whose commitment differs", "phone number", swapped, &phone_ctx, "KeyCommitmentMismatch"),
        bin("KMS: wrong context", "the KMS vector presented with column = email: KMS refuses (its EncryptionContext differs)", "phone number under AWS KMS", kms.to_vec(), &ctx(&[("table", "inquiries"), ("column", "email")]), "InvalidEncryptedDataKey"),
        bin("KMS: ciphertext bit flip", "one bit of the KMS vector's encrypted plaintext flipped", "phone number under AWS KMS", flip(kms, kms.len() - 20, 0x02), &phone_ctx, "AuthenticationFailed"),
        bin("KMS: key ARN changed", "the key ARN's last character changed: not a key the keyring is configured for", "phone number under AWS KMS", kms_wrong_id, &phone_ctx, "UnknownKeyId"),
        text("text: wrong prefix", "lv2. instead of lv1.", good_text.replacen("lv1.", "lv2.", 1), "Malformed"),
        text("text: padded", "canonical base64url has no '=' padding", format!("{good_text}="), "Malformed"),
        text("text: non-zero trailing bits", "the last character changed so the 2 unused bits are not zero (decodes to the same bytes in a lenient decoder)", trailing, "Malformed"),
        text("text: standard alphabet", "'+' and '/' instead of '-' and '_'", standard_alphabet, "Malformed"),
        text("text: line break", "a newline inside the base64", format!("{}\n{}", &good_text[..40], &good_text[40..]), "Malformed"),
        text("text: truncated by one group", "the last 3 base64 characters (the final 2 bytes) removed: valid base64 of a truncated ciphertext", good_text[..good_text.len() - 3].to_owned(), "AuthenticationFailed"),
    ]
}

fn error_kind(e: &EnvelopeError) -> &'static str {
    match e {
        EnvelopeError::Malformed { .. } => "Malformed",
        EnvelopeError::UnsupportedVersion(_) => "UnsupportedVersion",
        EnvelopeError::UnsupportedAlgorithm(_) => "UnsupportedAlgorithm",
        EnvelopeError::UnsupportedKeyring(_) => "UnsupportedKeyring",
        EnvelopeError::UnknownKeyId(_) => "UnknownKeyId",
        EnvelopeError::InvalidEncryptedDataKey(_) => "InvalidEncryptedDataKey",
        EnvelopeError::KeyCommitmentMismatch => "KeyCommitmentMismatch",
        EnvelopeError::AuthenticationFailed => "AuthenticationFailed",
        _ => "other",
    }
}

fn write_vectors() {
    let all = cases();
    let positives: Vec<Value> = all
        .iter()
        .map(|c| {
            let ct = encrypt_case(c);
            let ctx: BTreeMap<&str, &str> = c.context.iter().copied().collect();
            json!({
                "name": c.name,
                "context": ctx,
                "context_canonical_hex": hex(&doc_context_encoding(c.context)),
                "plaintext_utf8": c.plaintext,
                "data_key_hex": hex(&c.data_key),
                "wrap_nonce_hex": hex(&c.wrap_nonce),
                "nonce_hex": hex(&c.nonce),
                "ciphertext_len": ct.len(),
                "ciphertext_hex": hex(&ct),
                "ciphertext_text": text_of(&ct),
            })
        })
        .collect();
    let k = kms_case();
    let kms_ct = encrypt_kms_case(&k);
    let kms: Vec<Value> = vec![json!({
        "name": k.name,
        "keyring_kind": 2,
        "key_id": KMS_KEY_ARN,
        "edk_hex": hex(&k.edk),
        "context": k.context.iter().copied().collect::<BTreeMap<&str, &str>>(),
        "context_canonical_hex": hex(&doc_context_encoding(k.context)),
        "plaintext_utf8": k.plaintext,
        "data_key_hex": hex(&k.data_key),
        "nonce_hex": hex(&k.nonce),
        "ciphertext_len": kms_ct.len(),
        "ciphertext_hex": hex(&kms_ct),
        "ciphertext_text": text_of(&kms_ct),
    })];
    let negatives = negative_vectors(&encrypt_case(&all[0]), &encrypt_case(&all[4]), &kms_ct);
    let doc = json!({
        "description": "larder-envelope ciphertext format v1 test vectors (docs/ciphertext-format.md). \
            Local keyring, fixed master key, fixed data keys and nonces: NEVER use fixed nonces for real data. \
            kms_vectors: keyring kind 2 with a fixed opaque EDK standing for a KMS CiphertextBlob (decrypt it with \
            its data_key_hex). negative_vectors: each must fail, with expected_error, when decrypted by the \
            local keyring of master_key_hex/key_id (or, for bases under AWS KMS, a KMS that opens exactly the \
            kms vector's EDK under its context).",
        "format_version": 1,
        "algorithm_id": 1,
        "master_key_hex": hex(&MASTER_KEY),
        "key_id": KEY_ID,
        "vectors": positives,
        "kms_vectors": kms,
        "negative_vectors": negatives,
    });
    std::fs::write(docs_file("ciphertext-vectors.json"), serde_json::to_string_pretty(&doc).unwrap() + "\n")
        .unwrap();
}

fn pairs_of(v: &Value) -> Vec<(String, String)> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect()
}

#[test]
fn vectors_decrypt_reencrypt_and_decode_independently() {
    if std::env::var_os("LARDER_WRITE_VECTORS").is_some() {
        write_vectors();
    }
    let p = docs_file("ciphertext-vectors.json");
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
        // 0. The context bytes in the file are the document's encoding of its pairs.
        let pairs = pairs_of(&v["context"]);
        let doc_ctx =
            doc_context_encoding(&pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>());
        assert_eq!(hex(&doc_ctx), v["context_canonical_hex"].as_str().unwrap(), "{}", c.name);
        // 1. It still decrypts, in both forms.
        let plain = rt.block_on(envelope.decrypt(&ct, &ctx)).unwrap();
        assert_eq!(&*plain, c.plaintext.as_bytes(), "{}", c.name);
        let text = v["ciphertext_text"].as_str().unwrap();
        assert_eq!(rt.block_on(envelope.decrypt_text(text, &ctx)).unwrap(), c.plaintext);
        // 2. The same inputs give the same bytes.
        assert_eq!(encrypt_case(c), ct, "{}: re-encryption differs from the checked-in vector", c.name);
        // 3. The independent decoder, from the documents alone.
        let data_key: [u8; 32] = unhex(v["data_key_hex"].as_str().unwrap()).try_into().unwrap();
        assert_eq!(independent_decrypt(&ct, &doc_ctx, Unwrap::Local).unwrap(), c.plaintext.as_bytes());
        assert_eq!(independent_open_with(&ct, &doc_ctx, &data_key).unwrap(), c.plaintext.as_bytes());
        // 4. Another context fails.
        assert!(rt.block_on(envelope.decrypt(&ct, &ctx.clone().with("x", "y"))).is_err());
    }

    // The KMS-kind vector.
    let kms_vectors = doc["kms_vectors"].as_array().unwrap();
    assert_eq!(kms_vectors.len(), 1);
    let k = kms_case();
    let v = &kms_vectors[0];
    let ct = unhex(v["ciphertext_hex"].as_str().unwrap());
    assert_eq!(ct[2], 2, "keyring kind byte of AWS KMS");
    assert_eq!(v["key_id"].as_str().unwrap(), KMS_KEY_ARN);
    assert_eq!(unhex(v["edk_hex"].as_str().unwrap()), k.edk);
    assert_eq!(encrypt_kms_case(&k), ct, "KMS vector: re-encryption differs");
    let doc_ctx = doc_context_encoding(k.context);
    assert_eq!(hex(&doc_ctx), v["context_canonical_hex"].as_str().unwrap());
    assert_eq!(independent_open_with(&ct, &doc_ctx, &k.data_key).unwrap(), k.plaintext.as_bytes());
    let kms_envelope = Envelope::builder(VectorKms {
        edk: k.edk.clone(),
        data_key: k.data_key,
        context: context_of(k.context),
    })
    .build();
    let plain = rt.block_on(kms_envelope.decrypt(&ct, &context_of(k.context))).unwrap();
    assert_eq!(&*plain, k.plaintext.as_bytes());
    assert_eq!(
        rt.block_on(
            kms_envelope.decrypt_text(v["ciphertext_text"].as_str().unwrap(), &context_of(k.context))
        )
        .unwrap(),
        k.plaintext
    );

    // Negative vectors: each fails in larder with the named error, and in the independent decoder.
    let negatives = doc["negative_vectors"].as_array().unwrap();
    let expected = negative_vectors(&encrypt_case(&all[0]), &encrypt_case(&all[4]), &ct);
    assert_eq!(negatives, &expected, "negative vectors differ from how the test derives them");
    let mut kinds = std::collections::BTreeSet::new();
    for n in negatives {
        let name = n["name"].as_str().unwrap();
        let want = n["expected_error"].as_str().unwrap();
        let pairs = pairs_of(&n["context"]);
        let ctx: EncryptionContext = pairs.iter().cloned().collect();
        let doc_ctx =
            doc_context_encoding(&pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>());
        let kms_base = n["base"].as_str().unwrap() == k.name;
        // Fresh envelopes, so no cached key or remembered refusal from an earlier vector helps.
        let local = Envelope::builder(LocalKeyring::from_key_bytes(KEY_ID, MASTER_KEY).unwrap()).build();
        let kms = Envelope::builder(VectorKms {
            edk: k.edk.clone(),
            data_key: k.data_key,
            context: context_of(k.context),
        })
        .build();
        let env = if kms_base { &kms } else { &local };
        let (larder, bytes) = match n["form"].as_str().unwrap() {
            "binary" => {
                let b = unhex(n["ciphertext_hex"].as_str().unwrap());
                (rt.block_on(env.decrypt(&b, &ctx)).map(|p| p.to_vec()), Some(b))
            }
            "text" => {
                let t = n["ciphertext_text"].as_str().unwrap();
                (
                    rt.block_on(env.decrypt_text(t, &ctx)).map(String::into_bytes),
                    independent_text_decode(t).ok(),
                )
            }
            other => panic!("{name}: unknown form {other}"),
        };
        match larder {
            Ok(_) => panic!("negative vector {name:?} decrypted"),
            Err(e) => assert_eq!(error_kind(&e), want, "{name}: larder said {e}"),
        }
        kinds.insert(want);
        // The independent decoder rejects it too (text that is not canonical base64url never
        // reaches the binary decoder).
        if let Some(b) = bytes {
            let unwrap = if kms_base { Unwrap::Kms(&k) } else { Unwrap::Local };
            assert!(
                independent_decrypt(&b, &doc_ctx, unwrap).is_err(),
                "{name}: the independent decoder accepted it"
            );
        }
    }
    assert!(negatives.len() >= 25, "{}", negatives.len());
    assert_eq!(kinds.len(), 8, "every error kind is exercised: {kinds:?}");
}

// ---------------------------------------------------------------------------------------
// The independent decoder: written from docs/ciphertext-format.md and docs/keyring-format.md.

/// The context's canonical encoding exactly as docs/ciphertext-format.md lays it out:
/// `0x33 ‖ u32le(pair count) ‖` the entries `0x10 ‖ u32le(len k) ‖ k ‖ 0x10 ‖ u32le(len v) ‖ v`,
/// sorted bytewise (as whole entries) in unsigned lexicographic order.
fn doc_context_encoding(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut entries: Vec<Vec<u8>> = pairs
        .iter()
        .map(|(k, v)| {
            let mut e = vec![0x10];
            e.extend_from_slice(&(k.len() as u32).to_le_bytes());
            e.extend_from_slice(k.as_bytes());
            e.push(0x10);
            e.extend_from_slice(&(v.len() as u32).to_le_bytes());
            e.extend_from_slice(v.as_bytes());
            e
        })
        .collect();
    entries.sort();
    let mut out = vec![0x33];
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e);
    }
    out
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The text form: `lv1.` then canonical base64url without padding — decoded by hand (no
/// library), rejecting padding, other alphabets, whitespace, a length of 1 mod 4 and non-zero
/// unused bits.
fn independent_text_decode(t: &str) -> Result<Vec<u8>, &'static str> {
    let body = t.strip_prefix("lv1.").ok_or("prefix")?.as_bytes();
    let val = |c: u8| -> Result<u32, &'static str> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err("not base64url"),
        } as u32)
    };
    if body.len() % 4 == 1 {
        return Err("impossible length");
    }
    let mut out = Vec::new();
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | val(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&acc.to_be_bytes()[1..]),
            3 => {
                if acc & 0b11 != 0 {
                    return Err("non-zero unused bits");
                }
                out.extend_from_slice(&((acc >> 2) as u16).to_be_bytes());
            }
            2 => {
                if acc & 0b1111 != 0 {
                    return Err("non-zero unused bits");
                }
                out.push((acc >> 4) as u8);
            }
            _ => return Err("impossible length"),
        }
    }
    Ok(out)
}

enum Unwrap<'a> {
    /// The local keyring of the vectors' master key and key id.
    Local,
    /// A KMS that opens exactly the KMS vector's EDK under its key ARN and context.
    Kms(&'a KmsCase),
}

struct Fields<'a> {
    kind: u8,
    key_id: &'a [u8],
    edk: &'a [u8],
    header: &'a [u8],
    commitment: &'a [u8],
    nonce: &'a [u8],
    body: &'a [u8],
}

fn independent_parse(ct: &[u8]) -> Result<Fields<'_>, &'static str> {
    let get = |from: usize, n: usize| from.checked_add(n).and_then(|end| ct.get(from..end)).ok_or("short");
    if *ct.first().ok_or("short")? != 1 {
        return Err("version");
    }
    if *ct.get(1).ok_or("short")? != 1 {
        return Err("algorithm");
    }
    let kind = *ct.get(2).ok_or("short")?;
    if kind != 1 && kind != 2 {
        return Err("keyring kind");
    }
    let id_len = *ct.get(3).ok_or("short")? as usize;
    if id_len == 0 {
        return Err("empty key id");
    }
    let key_id = get(4, id_len)?;
    let e = get(4 + id_len, 2)?;
    let edk_len = u16::from_be_bytes([e[0], e[1]]) as usize;
    if edk_len == 0 {
        return Err("empty EDK");
    }
    let edk = get(6 + id_len, edk_len)?;
    let commit_at = 6 + id_len + edk_len;
    let commitment = get(commit_at, 32)?;
    let nonce = get(commit_at + 32, 12)?;
    let body = ct.get(commit_at + 44..).ok_or("short")?;
    if body.len() < 16 {
        return Err("shorter than the tag");
    }
    Ok(Fields { kind, key_id, edk, header: &ct[..commit_at + 32], commitment, nonce, body })
}

/// Full decryption: parse, obtain the data key (local unwrap per docs/keyring-format.md, or
/// the KMS stand-in), check the commitment, open.
fn independent_decrypt(ct: &[u8], ctx: &[u8], unwrap: Unwrap<'_>) -> Result<Vec<u8>, &'static str> {
    let f = independent_parse(ct)?;
    let data_key: [u8; 32] = match unwrap {
        Unwrap::Local => {
            if f.kind != 1 {
                return Err("not a local EDK");
            }
            if f.key_id != KEY_ID.as_bytes() {
                return Err("unknown key id");
            }
            if f.edk.len() != 60 {
                return Err("local EDK length");
            }
            // EDK = wrap nonce ‖ AES-256-GCM(master key, data key), AAD = label ‖ u8 len(key id) ‖
            // key id ‖ canonical context.
            let mut wrap_aad = b"larder-envelope local wrap v1".to_vec();
            wrap_aad.push(f.key_id.len() as u8);
            wrap_aad.extend_from_slice(f.key_id);
            wrap_aad.extend_from_slice(ctx);
            let k = Aes256Gcm::new(&MASTER_KEY.into())
                .decrypt(f.edk[..12].try_into().unwrap(), Payload { msg: &f.edk[12..], aad: &wrap_aad })
                .map_err(|_| "EDK does not unwrap")?;
            k.as_slice().try_into().map_err(|_| "data key length")?
        }
        Unwrap::Kms(k) => {
            if f.kind != 2 || f.key_id != KMS_KEY_ARN.as_bytes() || f.edk != k.edk.as_slice() {
                return Err("KMS refuses");
            }
            if ctx != doc_context_encoding(k.context).as_slice() {
                return Err("KMS refuses: another encryption context");
            }
            k.data_key
        }
    };
    independent_open_with(ct, ctx, &data_key)
}

/// Commitment check and AES-256-GCM open with a known data key.
fn independent_open_with(ct: &[u8], ctx: &[u8], data_key: &[u8; 32]) -> Result<Vec<u8>, &'static str> {
    let f = independent_parse(ct)?;
    if f.commitment != hmac(data_key, b"larder-envelope v1 key commitment") {
        return Err("key commitment mismatch");
    }
    let enc_key = hmac(data_key, b"larder-envelope v1 message encryption key");
    let mut aad = f.header.to_vec();
    aad.extend_from_slice(ctx);
    Aes256Gcm::new(&enc_key.into())
        .decrypt(f.nonce.try_into().unwrap(), Payload { msg: f.body, aad: &aad })
        .map_err(|_| "authentication failed")
}
