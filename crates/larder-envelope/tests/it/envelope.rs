//! Ciphertext integrity, context binding, key commitment, API shape and sizes.

use crate::common;

use common::{counting_test_key, ctx};
use larder_envelope::{
    BlockingEnvelope, EncryptionContext, Envelope, EnvelopeError, KeyringKind, LocalKeyring,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn envelope() -> Envelope {
    Envelope::builder(LocalKeyring::from_key_bytes("k1", [7; 32]).unwrap()).build()
}

#[test]
fn envelope_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Envelope>();
    check::<BlockingEnvelope>();
    fn send_future<F: std::future::Future + Send>(_: F) {}
    let e = envelope();
    let c = ctx();
    send_future(e.encrypt(b"x", &c));
    send_future(e.decrypt(b"x", &c));
}

#[test]
fn round_trip_binary_and_text_and_sizes() {
    let e = envelope();
    let c = ctx();
    rt().block_on(async {
        let ct = e.encrypt(b"010-1234-5678", &c).await.unwrap();
        assert_eq!(&*e.decrypt(&ct, &c).await.unwrap(), b"010-1234-5678");
        let info = Envelope::inspect(&ct).unwrap();
        assert_eq!((info.version, info.algorithm, info.keyring), (1, 1, KeyringKind::Local));
        assert_eq!(info.key_id, "k1");
        assert_eq!(info.edk_len, 60);
        assert_eq!(info.plaintext_len, 13);
        // EDK fields: kind 1 + id length 1 + "k1" 2 + EDK length 2 + EDK 60 = 66 bytes.
        let edk_fields = 1 + 1 + 2 + 2 + info.edk_len;
        assert_eq!(info.overhead, edk_fields + 62, "fixed overhead outside the EDK fields is 62 bytes");
        assert!(info.overhead <= edk_fields + 64);
        assert_eq!(ct.len(), 141);
        let text = e.encrypt_text("010-1234-5678", &c).await.unwrap();
        assert!(text.starts_with("lv1."));
        assert_eq!(text.len(), 4 + (141usize * 4).div_ceil(3));
        assert_eq!(e.decrypt_text(&text, &c).await.unwrap(), "010-1234-5678");
        assert_eq!(Envelope::inspect_text(&text).unwrap().total_len, 141);
        // Empty plaintext is allowed and round-trips.
        let empty = e.encrypt(b"", &c).await.unwrap();
        assert!(e.decrypt(&empty, &c).await.unwrap().is_empty());
        // Random nonces: the same plaintext encrypts differently.
        assert_ne!(e.encrypt(b"a", &c).await.unwrap(), e.encrypt(b"a", &c).await.unwrap());
        eprintln!(
            "ciphertext of 010-1234-5678 with the local keyring: {} bytes binary, {} text",
            ct.len(),
            text.len()
        );
    });
}

#[test]
fn every_bit_flip_and_truncation_fails() {
    let e = envelope();
    let c = ctx();
    rt().block_on(async {
        let ct = e.encrypt(b"010-1234-5678", &c).await.unwrap();
        for i in 0..ct.len() * 8 {
            let mut bad = ct.clone();
            bad[i / 8] ^= 1 << (i % 8);
            match e.decrypt(&bad, &c).await {
                Err(_) => {}
                Ok(p) => panic!("bit {i} flipped and decrypt returned {:?}", &*p),
            }
        }
        for n in 0..ct.len() {
            assert!(e.decrypt(&ct[..n], &c).await.is_err(), "truncated to {n} bytes");
        }
        let mut longer = ct.clone();
        longer.push(0);
        assert!(e.decrypt(&longer, &c).await.is_err());
        // Text form: every character changed to another base64url character fails too.
        let text = e.encrypt_text("010-1234-5678", &c).await.unwrap();
        for i in 0..text.len() {
            let mut chars: Vec<char> = text.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let bad: String = chars.into_iter().collect();
            if bad != text {
                assert!(e.decrypt_text(&bad, &c).await.is_err(), "char {i}");
            }
        }
    });
}

#[test]
fn garbage_never_panics() {
    let e = envelope();
    let c = ctx();
    rt().block_on(async {
        // Deterministic pseudo-random inputs of every length up to 300 bytes, with valid-looking
        // prefixes so the parser gets past the first fields.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..300usize {
            for prefix in [&[][..], &[1][..], &[1, 1][..], &[1, 1, 1][..], &[1, 1, 1, 2, b'k', b'1'][..]] {
                let mut v = prefix.to_vec();
                while v.len() < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v.push(x as u8);
                }
                assert!(e.decrypt(&v, &c).await.is_err());
                let _ = Envelope::inspect(&v);
            }
        }
        assert!(matches!(e.decrypt_text("lv1.!!!", &c).await, Err(EnvelopeError::Malformed { .. })));
        assert!(matches!(e.decrypt_text("hello", &c).await, Err(EnvelopeError::Malformed { offset: 0, .. })));
    });
}

#[test]
fn wrong_context_fails() {
    let e = envelope();
    let c = ctx();
    rt().block_on(async {
        let ct = e.encrypt(b"010-1234-5678", &c).await.unwrap();
        for other in [
            EncryptionContext::new(),
            c.clone().with("column", "name"),
            c.clone().with("extra", ""),
            EncryptionContext::new().with("table", "inquiries"),
        ] {
            assert!(e.decrypt(&ct, &other).await.is_err(), "{other:?}");
        }
        // The same pairs in another insertion order are the same context.
        let same = EncryptionContext::new().with("column", "phone").with("table", "inquiries");
        assert_eq!(&*e.decrypt(&ct, &same).await.unwrap(), b"010-1234-5678");
    });
}

#[test]
fn wrong_context_fails_without_any_cache() {
    // With no cache the local keyring itself refuses: its wrap AAD binds the context.
    let e = Envelope::builder(LocalKeyring::from_key_bytes("k1", [7; 32]).unwrap()).no_cache().build();
    let c = ctx();
    rt().block_on(async {
        let ct = e.encrypt(b"x", &c).await.unwrap();
        assert!(matches!(
            e.decrypt(&ct, &c.clone().with("column", "email")).await,
            Err(EnvelopeError::InvalidEncryptedDataKey(_))
        ));
        assert_eq!(&*e.decrypt(&ct, &c).await.unwrap(), b"x");
        assert_eq!((e.stats().generate_calls, e.stats().decrypt_calls), (1, 2));
    });
}

#[test]
fn swapped_edk_fails_the_key_commitment() {
    let c = ctx();
    let keyring = counting_test_key(None);
    // Two envelopes over the same keyring: two data keys, same EDK field lengths.
    let a = Envelope::builder(keyring.clone()).build();
    let b = Envelope::builder(keyring.clone()).build();
    let reader = Envelope::builder(keyring.clone()).build();
    rt().block_on(async {
        let ca = a.encrypt(b"010-1234-5678", &c).await.unwrap();
        let cb = b.encrypt(b"010-9999-0000", &c).await.unwrap();
        let fields = 1 + 1 + 2 + 2 + 60;
        assert_ne!(ca[2..2 + fields], cb[2..2 + fields]);
        let mut swapped = ca.clone();
        swapped[2..2 + fields].copy_from_slice(&cb[2..2 + fields]);
        assert_eq!(reader.decrypt(&swapped, &c).await.unwrap_err(), EnvelopeError::KeyCommitmentMismatch);
        // And with B's commitment as well, the GCM tag (made under A's key) fails.
        swapped[2 + fields..2 + fields + 32].copy_from_slice(&cb[2 + fields..2 + fields + 32]);
        assert_eq!(reader.decrypt(&swapped, &c).await.unwrap_err(), EnvelopeError::AuthenticationFailed);
        assert_eq!(&*reader.decrypt(&ca, &c).await.unwrap(), b"010-1234-5678");
    });
}

#[test]
fn unknown_key_id_is_refused() {
    let c = ctx();
    rt().block_on(async {
        let other = Envelope::builder(LocalKeyring::from_key_bytes("k9", [7; 32]).unwrap()).build();
        let ct = other.encrypt(b"x", &c).await.unwrap();
        let e = envelope();
        assert_eq!(e.decrypt(&ct, &c).await.unwrap_err(), EnvelopeError::UnknownKeyId("k9".into()));
        // Same id, different master key bytes: the wrapped data key fails authentication.
        let other = Envelope::builder(LocalKeyring::from_key_bytes("k1", [8; 32]).unwrap()).build();
        let ct = other.encrypt(b"x", &c).await.unwrap();
        assert!(matches!(e.decrypt(&ct, &c).await, Err(EnvelopeError::InvalidEncryptedDataKey(_))));
    });
}

#[test]
fn partitions_by_context_and_counts() {
    let keyring = counting_test_key(None);
    let e = Envelope::builder(keyring.clone()).build();
    rt().block_on(async {
        for col in ["phone", "name", "email"] {
            let c = EncryptionContext::new().with("column", col);
            for _ in 0..10 {
                let ct = e.encrypt(col.as_bytes(), &c).await.unwrap();
                assert_eq!(&*e.decrypt(&ct, &c).await.unwrap(), col.as_bytes());
            }
        }
    });
    let s = e.stats();
    assert_eq!(keyring.generate_calls(), 3, "one data key per context partition");
    assert_eq!(keyring.decrypt_calls(), 0, "the encrypting envelope seeds its decrypt cache");
    assert_eq!((s.encrypt_cache_hits, s.encrypt_cache_misses), (27, 3));
    assert_eq!((s.decrypt_cache_hits, s.decrypt_cache_misses), (30, 0));
}

#[test]
fn debug_output_has_no_secrets() {
    let e = envelope();
    assert_eq!(
        format!("{e:?}"),
        "Envelope { keyring: \"local\", primary_key_id: \"k1\", limits: DataKeyLimits { max_age: 300s, \
         max_messages: 1048576, max_bytes: 4294967296 }, cache: true }"
    );
    let k = larder_envelope::DataKey::from_array([0xAB; 32]);
    assert_eq!(format!("{k:?}"), "DataKey(AES-256, ..)");
    let kr = LocalKeyring::from_key_bytes("k1", [0xAB; 32]).unwrap();
    let d = format!("{kr:?}");
    assert!(!d.contains("171") && !d.to_lowercase().contains("ab, ") && !d.contains("q6ur"), "{d}");
}

#[test]
fn blocking_inside_async_is_an_error_not_a_panic() {
    let b = envelope().blocking().unwrap();
    let c = ctx();
    let r = rt().block_on(async { b.encrypt(b"x", &c) });
    assert!(matches!(r, Err(EnvelopeError::ApiMisuse(_))));
    let ct = b.encrypt(b"x", &c).unwrap();
    assert_eq!(&*b.decrypt(&ct, &c).unwrap(), b"x");
    // Dropping the last clone inside async code does not panic either.
    rt().block_on(async move { drop(b) });
}

#[test]
fn partitions_beyond_the_maximum_are_dropped_when_idle() {
    let keyring = counting_test_key(None);
    let e = Envelope::builder(keyring.clone()).max_partitions(2).build();
    rt().block_on(async {
        let mut cts = Vec::new();
        for i in 0..5 {
            let c = EncryptionContext::new().with("row", i.to_string());
            cts.push((e.encrypt(b"v", &c).await.unwrap(), c));
        }
        assert_eq!(keyring.generate_calls(), 5);
        for (ct, c) in &cts {
            assert_eq!(&*e.decrypt(ct, c).await.unwrap(), b"v");
        }
        // Row 0's partition was dropped to stay within 2: its next encrypt needs a new key.
        e.encrypt(b"v", &cts[0].1).await.unwrap();
        assert_eq!(keyring.generate_calls(), 6);
    });
}

#[test]
fn plaintext_larger_than_the_byte_budget_is_refused() {
    let e = Envelope::builder(LocalKeyring::from_key_bytes("k1", [7; 32]).unwrap())
        .data_key_limits(larder_envelope::DataKeyLimits { max_bytes: 10, ..Default::default() })
        .build();
    let c = ctx();
    rt().block_on(async {
        assert_eq!(e.encrypt(&[0; 11], &c).await.unwrap_err(), EnvelopeError::PlaintextTooLarge);
        // 10 bytes fit; the next message needs a new key.
        let a = e.encrypt(&[1; 10], &c).await.unwrap();
        let b = e.encrypt(&[2; 1], &c).await.unwrap();
        assert_ne!(a[2..68], b[2..68]);
        assert_eq!(e.stats().generate_calls, 2);
    });
}

#[test]
fn random_mutations_never_decrypt() {
    let e = envelope();
    let c = ctx();
    let rt = rt();
    let ct = rt.block_on(e.encrypt(b"010-1234-5678", &c)).unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut tried = 0;
    for _ in 0..5_000 {
        let mut m = ct.clone();
        for _ in 0..1 + next() % 4 {
            let len = m.len().max(1) as u64;
            let at = (next() % len) as usize;
            match next() % 4 {
                0 if !m.is_empty() => m[at] = next() as u8,
                1 if !m.is_empty() => {
                    m.remove(at);
                }
                2 => m.insert(at.min(m.len()), next() as u8),
                _ if m.len() > 1 => {
                    let other = (next() % len) as usize;
                    m.swap(at, other);
                }
                _ => {}
            }
        }
        if m == ct {
            continue;
        }
        tried += 1;
        if let Ok(p) = rt.block_on(e.decrypt(&m, &c)) {
            panic!("mutated ciphertext decrypted to {:?}", &*p);
        }
    }
    assert!(tried > 4_500);
}

#[test]
fn large_contexts_and_plaintexts_round_trip() {
    let e = envelope();
    let c = ctx().with("note", "가".repeat(1_000));
    rt().block_on(async {
        let big = vec![0x5Au8; 100_000];
        let ct = e.encrypt(&big, &c).await.unwrap();
        assert_eq!(&*e.decrypt(&ct, &c).await.unwrap(), &big[..]);
        assert!(e.decrypt(&ct, &ctx()).await.is_err());
    });
}
