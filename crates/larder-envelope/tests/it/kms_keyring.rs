//! `AwsKmsKeyring` against a real moto KMS server (started per test on a loopback port):
//! round trips, the encryption context, the key-id allow-list, error mapping, outages and the
//! retry loop. Requests reaching moto are counted from moto's own request recording.

use crate::common::kms as kms_common;

use std::time::{Duration, Instant};

use kms_common::{eventually, keyring, keyring_builder, phone_context, CountingKeyring, FlakyKeyring};
use larder_envelope::aws::retry;
use larder_envelope::{
    EncryptedDataKey, EncryptionContext, EnvelopeError, Keyring, KeyringKind, RetryPolicy,
};
use larder_testkit::moto::MotoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_then_decrypt_round_trips_through_kms() {
    let moto = MotoServer::start();
    let key = moto.create_key().await;
    let kr = keyring(&moto, &key);
    assert_eq!(kr.kind(), KeyringKind::AwsKms);
    assert_eq!(kr.primary_key_id(), key);
    let ctx = phone_context();

    let generated = kr.generate_data_key(&ctx).await.unwrap();
    assert_eq!(generated.edk.kind, KeyringKind::AwsKms);
    assert_eq!(generated.edk.key_id, key, "the EDK names the key ARN KMS answered with");
    assert!(!generated.edk.ciphertext.is_empty());
    let opened = kr.decrypt_data_key(&generated.edk, &ctx).await.unwrap();
    assert_eq!(opened.expose_secret(), generated.plaintext.expose_secret());

    // Two generations give two different keys.
    let again = kr.generate_data_key(&ctx).await.unwrap();
    assert_ne!(again.plaintext.expose_secret(), generated.plaintext.expose_secret());
    assert_ne!(again.edk.ciphertext, generated.edk.ciphertext);

    assert_eq!(moto.count_requests("GenerateDataKey"), 2);
    assert_eq!(moto.count_requests("Decrypt"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_context_is_passed_to_kms() {
    let moto = MotoServer::start();
    let key = moto.create_key().await;
    let kr = keyring(&moto, &key);
    let ctx = phone_context();
    let generated = kr.generate_data_key(&ctx).await.unwrap();

    // moto binds the context as AES-GCM AAD of the EDK: a different or missing context fails
    // inside KMS, which only happens if the context was sent both times.
    for wrong in [
        EncryptionContext::new(),
        phone_context().with("column", "email"),
        phone_context().with("extra", "pair"),
    ] {
        let got = kr.decrypt_data_key(&generated.edk, &wrong).await;
        assert!(matches!(got, Err(EnvelopeError::InvalidEncryptedDataKey(_))), "{wrong:?}: {got:?}");
    }
    // The same pairs in another insertion order are the same context.
    let reordered = EncryptionContext::new().with("column", "phone").with("table", "customers");
    assert!(kr.decrypt_data_key(&generated.edk, &reordered).await.is_ok());

    // An empty context round-trips too (no EncryptionContext field is sent).
    let empty = EncryptionContext::new();
    let g = kr.generate_data_key(&empty).await.unwrap();
    assert_eq!(
        kr.decrypt_data_key(&g.edk, &empty).await.unwrap().expose_secret(),
        g.plaintext.expose_secret()
    );
    let got = kr.decrypt_data_key(&g.edk, &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::InvalidEncryptedDataKey(_))), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_id_outside_the_allow_list_is_refused_without_a_kms_call() {
    let moto = MotoServer::start();
    let ours = moto.create_key().await;
    let theirs = moto.create_key().await;
    let ctx = phone_context();
    // A genuine EDK under a key that exists in the same account, but that our keyring is not
    // configured for: KMS would happily decrypt it if asked under the key id it names.
    let foreign = keyring(&moto, &theirs).generate_data_key(&ctx).await.unwrap();
    let kr = keyring(&moto, &ours);
    let decrypts_before = moto.count_requests("Decrypt");

    let got = kr.decrypt_data_key(&foreign.edk, &ctx).await;
    assert!(matches!(&got, Err(EnvelopeError::UnknownKeyId(id)) if *id == theirs), "{got:?}");

    // Our key id on the outside, their ciphertext inside: KMS is asked under OUR key (pinned),
    // so it refuses; the key id in the EDK is never trusted on its own.
    let disguised = EncryptedDataKey { key_id: ours.clone(), ..foreign.edk.clone() };
    let got = kr.decrypt_data_key(&disguised, &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::AccessDenied(_))), "{got:?}");
    assert_eq!(moto.count_requests("Decrypt"), decrypts_before + 1, "only the pinned request was sent");

    // An EDK from another keyring kind is refused too, without a request.
    let local = EncryptedDataKey { kind: KeyringKind::Local, ..foreign.edk.clone() };
    assert!(matches!(kr.decrypt_data_key(&local, &ctx).await, Err(EnvelopeError::UnknownKeyId(_))));
    assert_eq!(moto.count_requests("Decrypt"), decrypts_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additional_key_ids_and_aliases_decrypt() {
    let moto = MotoServer::start();
    let old = moto.create_key().await;
    let new = moto.create_key().await;
    let ctx = phone_context();
    let under_old = keyring(&moto, &old).generate_data_key(&ctx).await.unwrap();

    // Rotation: the new primary still opens data keys made under the old one, configured by
    // ARN or by bare key id.
    let by_arn = keyring_builder(&moto, &new).additional_key_id(&old).build();
    let old_id = old.rsplit_once("key/").unwrap().1.to_owned();
    let by_id = keyring_builder(&moto, &new).additional_key_id(&old_id).build();
    for kr in [&by_arn, &by_id] {
        let k = kr.decrypt_data_key(&under_old.edk, &ctx).await.unwrap();
        assert_eq!(k.expose_secret(), under_old.plaintext.expose_secret());
        assert_eq!(kr.generate_data_key(&ctx).await.unwrap().edk.key_id, new);
    }

    // A primary given as an alias: data keys name the target key ARN, and open through the
    // alias (KMS checks the alias's key).
    let alias = moto.create_alias("pii", &new).await;
    let kr = keyring(&moto, &alias);
    let g = kr.generate_data_key(&ctx).await.unwrap();
    assert_eq!(g.edk.key_id, new);
    assert_eq!(kr.decrypt_data_key(&g.edk, &ctx).await.unwrap().expose_secret(), g.plaintext.expose_secret());
    // ... but the alias does not open data keys under another key.
    let got = kr.decrypt_data_key(&under_old.edk, &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::AccessDenied(_))), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_refusals_map_to_clear_errors_without_retries() {
    let moto = MotoServer::start();
    let key = moto.create_key().await;
    let ctx = phone_context();

    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000";
    let got = keyring(&moto, missing).generate_data_key(&ctx).await.map(|_| ());
    assert!(matches!(&got, Err(EnvelopeError::KeyNotFound(d)) if d.contains("NotFoundException")), "{got:?}");
    assert_eq!(moto.count_requests("GenerateDataKey"), 1, "a missing key is not retried");

    let kr = keyring(&moto, &key);
    let good = kr.generate_data_key(&ctx).await.unwrap();
    let before = moto.count_requests("Decrypt");
    let mut flipped = good.edk.clone();
    *flipped.ciphertext.last_mut().unwrap() ^= 1;
    let mut truncated = good.edk.clone();
    truncated.ciphertext.truncate(10);
    let garbage = EncryptedDataKey { ciphertext: vec![0x5a; 3], ..good.edk.clone() };
    for edk in [&flipped, &truncated, &garbage] {
        let got = kr.decrypt_data_key(edk, &ctx).await;
        assert!(matches!(&got, Err(EnvelopeError::InvalidEncryptedDataKey(_))), "{got:?}");
    }
    assert_eq!(moto.count_requests("Decrypt"), before + 3, "invalid ciphertexts are not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_kms_gives_kms_unavailable_within_the_deadline() {
    let mut moto = MotoServer::start();
    let key = moto.create_key().await;
    let kr = keyring(&moto, &key);
    let ctx = phone_context();
    let g = kr.generate_data_key(&ctx).await.unwrap();

    moto.stop();
    let start = Instant::now();
    let got = kr.generate_data_key(&ctx).await.map(|_| ());
    let took = start.elapsed();
    match &got {
        Err(EnvelopeError::KmsUnavailable(d)) => assert!(d.contains("after 3 attempts"), "{d}"),
        other => panic!("expected KmsUnavailable, got {other:?}"),
    }
    assert!(took < Duration::from_secs(4), "bounded by the operation timeout, took {took:?}");
    let got = kr.decrypt_data_key(&g.edk, &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::KmsUnavailable(_))), "{got:?}");

    // A restarted moto is a new, empty KMS: the old key is gone, and that is a clear error.
    moto.restart();
    let got = kr.generate_data_key(&ctx).await.map(|_| ());
    assert!(matches!(got, Err(EnvelopeError::KeyNotFound(_))), "{got:?}");
    let fresh = moto.create_key().await;
    assert!(keyring(&moto, &fresh).generate_data_key(&ctx).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kms_times_out_then_recovers() {
    let mut moto = MotoServer::start();
    let key = moto.create_key().await;
    let kr = keyring_builder(&moto, &key)
        .attempt_timeout(Duration::from_millis(300))
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            operation_timeout: Duration::from_secs(3),
        })
        .build();
    let ctx = phone_context();
    let g = kr.generate_data_key(&ctx).await.unwrap();

    // Frozen: TCP connects succeed, nothing answers. Only the timeouts end the call.
    moto.pause();
    for _ in 0..2 {
        let start = Instant::now();
        let got = kr.decrypt_data_key(&g.edk, &ctx).await;
        let took = start.elapsed();
        assert!(matches!(got, Err(EnvelopeError::KmsUnavailable(_))), "{got:?}");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    }

    moto.resume();
    let opened = eventually(Duration::from_secs(20), || kr.decrypt_data_key(&g.edk, &ctx)).await;
    assert_eq!(opened.expose_secret(), g.plaintext.expose_secret());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_loop_rides_out_throttling_in_front_of_real_kms() {
    let moto = MotoServer::start();
    let key = moto.create_key().await;
    let ctx = phone_context();
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        operation_timeout: Duration::from_secs(5),
    };

    // Throttled three times, then the real KMS answers: one success, one real request.
    let flaky = CountingKeyring::new(FlakyKeyring::new(
        keyring(&moto, &key),
        3,
        EnvelopeError::Throttled("ThrottlingException: Rate exceeded".into()),
    ));
    let g = retry(&policy, |_| flaky.generate_data_key(&ctx)).await.unwrap();
    assert_eq!(flaky.generate_calls(), 4);
    assert_eq!(moto.count_requests("GenerateDataKey"), 1);

    // Transient failures on the decrypt side.
    let flaky_dec = FlakyKeyring::new(keyring(&moto, &key), 2, EnvelopeError::KmsUnavailable("reset".into()));
    let k = retry(&policy, |_| flaky_dec.decrypt_data_key(&g.edk, &ctx)).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
    assert_eq!(flaky_dec.calls(), 3);
    assert_eq!(moto.count_requests("Decrypt"), 1);

    // Throttled for longer than the policy allows: Throttled, and KMS never saw a request.
    let always = FlakyKeyring::new(keyring(&moto, &key), u64::MAX, EnvelopeError::Throttled("slow".into()));
    let got = retry(&policy, |_| always.generate_data_key(&ctx)).await.map(|_| ());
    assert!(matches!(&got, Err(EnvelopeError::Throttled(d)) if d.contains("after 5 attempts")), "{got:?}");
    assert_eq!(always.calls(), 5);
    assert_eq!(moto.count_requests("GenerateDataKey"), 1);
}

/// Collects counter increments by `name{label=value,...}` for the calling thread.
#[derive(Default, Clone)]
struct CountingRecorder(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

struct CounterCell {
    key: String,
    totals: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        *self.totals.lock().unwrap().entry(self.key.clone()).or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.totals.lock().unwrap().insert(self.key.clone(), value);
    }
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let key = format!("{}{{{}}}", key.name(), labels.join(","));
        metrics::Counter::from_arc(std::sync::Arc::new(CounterCell { key, totals: self.0.clone() }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn every_kms_request_is_counted_by_operation_and_outcome_retries_included() {
    let mut moto = MotoServer::start();
    let recorder = CountingRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let key = moto.create_key().await;
            let kr = keyring(&moto, &key);
            let ctx = phone_context();
            let g = kr.generate_data_key(&ctx).await.unwrap();
            kr.decrypt_data_key(&g.edk, &ctx).await.unwrap();
            assert!(kr.decrypt_data_key(&g.edk, &EncryptionContext::new()).await.is_err());
            moto.stop();
            assert!(kr.generate_data_key(&ctx).await.is_err());
        })
    });
    let totals = recorder.0.lock().unwrap().clone();
    let get = |op: &str, outcome: &str| {
        totals
            .get(&format!("larder_envelope_kms_requests_total{{operation={op},outcome={outcome}}}"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(get("GenerateDataKey", "ok"), 1, "{totals:?}");
    assert_eq!(get("Decrypt", "ok"), 1, "{totals:?}");
    assert_eq!(get("Decrypt", "invalid_ciphertext"), 1, "{totals:?}");
    // The dead server: every attempt of the policy (3) is a request.
    assert_eq!(get("GenerateDataKey", "unavailable"), 3, "{totals:?}");
}
