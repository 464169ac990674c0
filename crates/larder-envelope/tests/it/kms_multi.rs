//! Format v2 with AWS KMS (a real moto server): a local keyring plus a KMS key, and two KMS
//! keys (two "regions"). The second EDK comes from KMS `Encrypt` of the same data key, made
//! once per cold data key however many threads encrypt; either keyring alone decrypts; the
//! KMS requests that reached moto are counted by moto's own recorder.

use crate::common::kms as kms_common;

use std::sync::{Arc, Barrier};

use kms_common::{phone_context, CountingKeyring};
use larder_envelope::{Envelope, EnvelopeError, LocalKeyring};
use larder_testkit::moto::MotoServer;

const THREADS: usize = 100;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn local_plus_kms_escrow_one_encrypt_call_and_either_keyring_decrypts() {
    let moto = MotoServer::start();
    let key = block_on(moto.create_key());
    let kms = Arc::new(CountingKeyring::new(kms_common::keyring(&moto, &key)));
    let local = Arc::new(CountingKeyring::new(LocalKeyring::from_key_bytes("k1", [4; 32]).unwrap()));
    let env = Envelope::builder_shared(local.clone()).with_keyring_shared(kms.clone()).build();
    let blocking = env.blocking().unwrap();
    let ctx = phone_context();
    let barrier = Barrier::new(THREADS);
    let cts: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (blocking, ctx, barrier) = (&blocking, &ctx, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    blocking.encrypt_text(&format!("010-{t:04}-0000"), ctx).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!((local.generate_calls(), kms.encrypt_calls(), kms.generate_calls()), (1, 1, 0));
    assert_eq!(moto.count_requests("Encrypt"), 1, "one KMS Encrypt reached moto");
    assert_eq!(moto.count_requests("GenerateDataKey"), 0);
    let info = Envelope::inspect_text(&cts[0]).unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.edks.len(), 2);
    assert!(info.edks[1].key_id.contains(&key), "{:?}", info.edks[1]);

    // KMS alone (the local keyring file is lost): 100 threads, one Decrypt.
    let kms_reader = Arc::new(CountingKeyring::new(kms_common::keyring(&moto, &key)));
    let reader = Envelope::builder_shared(kms_reader.clone()).build().blocking().unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for (t, ct) in cts.iter().enumerate() {
            let (reader, ctx, barrier) = (&reader, &ctx, &barrier);
            s.spawn(move || {
                barrier.wait();
                assert_eq!(reader.decrypt_text(ct, ctx).unwrap(), format!("010-{t:04}-0000"));
            });
        }
    });
    assert_eq!(kms_reader.decrypt_calls(), 1);
    assert_eq!(moto.count_requests("Decrypt"), 1);
    // The local keyring alone needs no KMS at all.
    let local_reader = Envelope::builder(LocalKeyring::from_key_bytes("k1", [4; 32]).unwrap()).build();
    assert_eq!(block_on(local_reader.decrypt_text(&cts[7], &ctx)).unwrap(), "010-0007-0000");
    assert_eq!(moto.count_requests("Decrypt"), 1);
}

#[test]
fn two_kms_keys_either_decrypts_and_the_allow_list_holds() {
    let moto = MotoServer::start();
    let (k1, k2, k3) =
        block_on(async { (moto.create_key().await, moto.create_key().await, moto.create_key().await) });
    let env = Envelope::builder(kms_common::keyring(&moto, &k1))
        .with_keyring(kms_common::keyring(&moto, &k2))
        .build();
    let ctx = phone_context();
    let ct = block_on(env.encrypt_text("010-1234-5678", &ctx)).unwrap();
    assert_eq!((moto.count_requests("GenerateDataKey"), moto.count_requests("Encrypt")), (1, 1));
    for k in [&k1, &k2] {
        let reader = Envelope::builder(kms_common::keyring(&moto, k)).build();
        assert_eq!(block_on(reader.decrypt_text(&ct, &ctx)).unwrap(), "010-1234-5678");
    }
    // A keyring allowed only k3 never calls KMS for the k1/k2 EDKs.
    let before = moto.count_requests("Decrypt");
    let stranger = Envelope::builder(kms_common::keyring(&moto, &k3)).build();
    assert!(matches!(
        block_on(stranger.decrypt_text(&ct, &ctx)).unwrap_err(),
        EnvelopeError::UnknownKeyId(_)
    ));
    assert_eq!(moto.count_requests("Decrypt"), before);
}
