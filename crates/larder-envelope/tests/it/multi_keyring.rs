//! Multi-keyring envelopes (ciphertext format v2) over real local keyrings, counted: any one
//! keyring decrypts, v1 still decrypts, one keyring call per cold data key per keyring under
//! 100 threads, failover in order, typed errors, tamper detection.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use larder_envelope::{
    BoxFuture, CountingKeyring, DataKey, EncryptedDataKey, EncryptionContext, Envelope, EnvelopeError,
    GeneratedKey, Keyring, KeyringKind, LocalKeyring,
};

const THREADS: usize = 100;

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}

fn local(id: &str, byte: u8) -> LocalKeyring {
    LocalKeyring::from_key_bytes(id, [byte; 32]).unwrap()
}

fn counted(id: &str, byte: u8) -> Arc<CountingKeyring<LocalKeyring>> {
    Arc::new(CountingKeyring::new(local(id, byte)).with_latency(Duration::from_millis(20)))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn any_one_keyring_decrypts_and_v1_still_does() {
    let rt = rt();
    let multi = Envelope::builder(local("a1", 1)).with_keyring(local("b1", 2)).build();
    let ctx = ctx();
    let ct = rt.block_on(multi.encrypt_text("010-1234-5678", &ctx)).unwrap();
    assert!(ct.starts_with("lv2."), "{ct}");
    let info = Envelope::inspect_text(&ct).unwrap();
    assert_eq!(info.version, 2);
    let ids: Vec<&str> = info.edks.iter().map(|e| e.key_id.as_str()).collect();
    assert_eq!(ids, ["a1", "b1"]);
    for alone in [local("a1", 1), local("b1", 2)] {
        let env = Envelope::builder(alone).build();
        assert_eq!(rt.block_on(env.decrypt_text(&ct, &ctx)).unwrap(), "010-1234-5678");
    }
    // A keyring holding neither key: a typed error, never plaintext.
    let stranger = Envelope::builder(local("c1", 3)).build();
    assert_eq!(
        rt.block_on(stranger.decrypt_text(&ct, &ctx)).unwrap_err(),
        EnvelopeError::UnknownKeyId("a1".into())
    );
    // The wrong context fails for every keyring.
    let other = EncryptionContext::new().with("column", "name");
    assert!(rt.block_on(multi.decrypt_text(&ct, &other)).is_err());

    // v1 from a single-keyring envelope decrypts with the multi-keyring envelope.
    let v1 =
        rt.block_on(Envelope::builder(local("b1", 2)).build().encrypt_text("01099998888", &ctx)).unwrap();
    assert!(v1.starts_with("lv1."));
    assert_eq!(rt.block_on(multi.decrypt_text(&v1, &ctx)).unwrap(), "01099998888");
}

#[test]
fn one_edk_v2_costs_one_byte_more_than_v1() {
    let rt = rt();
    let ctx = ctx();
    let v1 = rt.block_on(Envelope::builder(local("k1", 1)).build().encrypt(b"010-1234-5678", &ctx)).unwrap();
    let v2_env = Envelope::builder(local("k1", 1)).format_v2().build();
    let v2 = rt.block_on(v2_env.encrypt(b"010-1234-5678", &ctx)).unwrap();
    assert_eq!(v1.len(), 141);
    assert_eq!(v2.len(), v1.len() + 1);
    assert_eq!(v2[0], 2);
    assert_eq!(&*rt.block_on(v2_env.decrypt(&v2, &ctx)).unwrap(), b"010-1234-5678");
    // Two local EDKs: + 66 bytes (kind, id length, "b1", EDK length, 60-byte EDK).
    let two = Envelope::builder(local("k1", 1)).with_keyring(local("b1", 2)).build();
    let ct2 = rt.block_on(two.encrypt(b"010-1234-5678", &ctx)).unwrap();
    assert_eq!(ct2.len(), v2.len() + 66);
}

/// 100 threads on a cold multi-keyring envelope: one generate on the primary, one wrap on the
/// second keyring. Then 100 threads decrypting with fresh envelopes: one call per keyring that
/// holds a key, none for a keyring that holds neither (it does not accept the EDKs).
#[test]
fn one_call_per_cold_data_key_per_keyring_under_100_threads() {
    let a = counted("a1", 1);
    let b = counted("b1", 2);
    let env = Envelope::builder_shared(a.clone()).with_keyring_shared(b.clone()).build();
    let blocking = env.blocking().unwrap();
    let ctx = ctx();
    let barrier = Barrier::new(THREADS);
    let cts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (blocking, ctx, barrier) = (&blocking, &ctx, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..10)
                        .map(|i| blocking.encrypt_text(&format!("010-{t:04}-{i:04}"), ctx).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(cts.len(), THREADS * 10);
    assert_eq!((a.generate_calls(), a.encrypt_calls(), a.decrypt_calls()), (1, 0, 0));
    assert_eq!((b.generate_calls(), b.encrypt_calls(), b.decrypt_calls()), (0, 1, 0));
    let edks: std::collections::HashSet<String> =
        cts.iter().map(|c| format!("{:?}", Envelope::inspect_text(c).unwrap().edks)).collect();
    assert_eq!(edks.len(), 1, "every ciphertext carries the same two EDKs");

    // Decrypt side: a stranger keyring first (accepts nothing), then b. 100 threads, cold.
    let stranger = counted("c1", 3);
    let b2 = counted("b1", 2);
    let reader = Envelope::builder_shared(stranger.clone()).decrypt_with_shared(b2.clone()).build();
    let reader = reader.blocking().unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for (t, ct) in cts.iter().step_by(10).enumerate() {
            let (reader, ctx, barrier) = (&reader, &ctx, &barrier);
            s.spawn(move || {
                barrier.wait();
                assert_eq!(reader.decrypt_text(ct, ctx).unwrap(), format!("010-{t:04}-0000"));
            });
        }
    });
    assert_eq!(stranger.decrypt_calls(), 0, "a keyring is never called for EDKs it does not accept");
    assert_eq!(b2.decrypt_calls(), 1);
}

/// Failover in order: a keyring with the right key id but the wrong key bytes (a lost or
/// replaced master key) fails, the next keyring opens the same data key.
#[test]
fn decryption_fails_over_to_the_next_keyring() {
    let rt = rt();
    let ctx = ctx();
    let ct = rt
        .block_on(
            Envelope::builder(local("a1", 1)).with_keyring(local("b1", 2)).build().encrypt_text("x", &ctx),
        )
        .unwrap();
    let broken = counted("a1", 9);
    let good = counted("b1", 2);
    let env = Envelope::builder_shared(broken.clone()).decrypt_with_shared(good.clone()).build();
    assert_eq!(rt.block_on(env.decrypt_text(&ct, &ctx)).unwrap(), "x");
    assert_eq!((broken.decrypt_calls(), good.decrypt_calls()), (1, 1));
    assert_eq!(env.stats().keyring_errors, 1);
    // Only the broken one: its error, typed.
    let only = Envelope::builder(local("a1", 9)).build();
    assert!(matches!(
        rt.block_on(only.decrypt_text(&ct, &ctx)).unwrap_err(),
        EnvelopeError::InvalidEncryptedDataKey(_)
    ));
}

/// A keyring that cannot wrap someone else's data key (the trait's default).
struct GenerateOnly(LocalKeyring);

impl Keyring for GenerateOnly {
    fn kind(&self) -> KeyringKind {
        self.0.kind()
    }
    fn primary_key_id(&self) -> String {
        self.0.primary_key_id()
    }
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        self.0.generate_data_key(context)
    }
    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        self.0.decrypt_data_key(edk, context)
    }
}

#[test]
fn a_keyring_that_cannot_wrap_fails_the_encryption() {
    let rt = rt();
    let env = Envelope::builder(local("a1", 1)).with_keyring(GenerateOnly(local("b1", 2))).build();
    let err = rt.block_on(env.encrypt(b"x", &ctx())).unwrap_err();
    assert!(matches!(&err, EnvelopeError::Keyring(m) if m.contains("cannot wrap")), "{err}");
    assert_eq!(env.stats().keyring_errors, 1);
}

#[test]
fn every_bit_flip_and_truncation_of_a_v2_ciphertext_fails() {
    let rt = rt();
    let ctx = ctx();
    let env = Envelope::builder(local("a1", 1)).with_keyring(local("b1", 2)).build();
    let ct = rt.block_on(env.encrypt(b"010-1234-5678", &ctx)).unwrap();
    for i in 0..ct.len() {
        for bit in 0..8 {
            let mut bad = ct.clone();
            bad[i] ^= 1 << bit;
            assert!(rt.block_on(env.decrypt(&bad, &ctx)).is_err(), "flip byte {i} bit {bit}");
        }
    }
    for n in 0..ct.len() {
        assert!(rt.block_on(env.decrypt(&ct[..n], &ctx)).is_err(), "truncated to {n}");
    }
    // Swapping the two EDK entries changes the header (AAD): authentication fails.
    let p = 3; // version, algorithm, count
    let entry = 66;
    let mut swapped = ct.clone();
    swapped[p..p + entry].copy_from_slice(&ct[p + entry..p + 2 * entry]);
    swapped[p + entry..p + 2 * entry].copy_from_slice(&ct[p..p + entry]);
    assert!(rt.block_on(env.decrypt(&swapped, &ctx)).is_err());
    // A zero EDK count and an lv1 prefix on a v2 body are malformed.
    let mut zero = ct.clone();
    zero[2] = 0;
    assert_eq!(
        rt.block_on(env.decrypt(&zero, &ctx)).unwrap_err(),
        EnvelopeError::Malformed { what: "EDK count is 0", offset: 2 }
    );
    let text = rt.block_on(env.encrypt_text("x", &ctx)).unwrap();
    let relabelled = text.replacen("lv2.", "lv1.", 1);
    assert!(matches!(
        rt.block_on(env.decrypt_text(&relabelled, &ctx)).unwrap_err(),
        EnvelopeError::Malformed { .. }
    ));
}
