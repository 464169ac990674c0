//! The whole envelope over the real AWS KMS keyring and a real moto server: the seed's
//! 100-thread scenario (KMS calls counted three ways), and KMS outages in the middle of a run.

use crate::common::kms as kms_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use kms_common::{eventually, keyring_builder, phone_context, CountingKeyring, FlakyKeyring};
use larder_envelope::{AwsKmsKeyring, DataKeyLimits, Envelope, EnvelopeError, RetryPolicy};
use larder_testkit::moto::MotoServer;

const THREADS: usize = 100;
const ROUND_TRIPS_PER_THREAD: usize = 1_000;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Seed 003: a pool of 100 threads encrypting and decrypting customers' phone numbers through
/// one shared, cold envelope. The Java SDK's shared key buffer gave intermittent
/// `newPosition > limit` errors and blank phone numbers here.
#[test]
fn seed_scenario_100_threads_share_one_data_key_from_one_kms_call() {
    let moto = MotoServer::start();
    let key = block_on(moto.create_key());
    let counting = Arc::new(CountingKeyring::new(kms_common::keyring(&moto, &key)));
    let envelope = Envelope::builder_shared(counting.clone()).build();
    let blocking = envelope.blocking().unwrap();
    let ctx = phone_context();

    let ok = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let first_error = Mutex::new(None::<String>);
    let start_line = Barrier::new(THREADS);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (blocking, ctx, ok, wrong, errors, first_error, start_line) =
                (&blocking, &ctx, &ok, &wrong, &errors, &first_error, &start_line);
            s.spawn(move || {
                start_line.wait(); // every thread hits the cold cache together
                for i in 0..ROUND_TRIPS_PER_THREAD {
                    let phone = format!("010-{t:04}-{i:04}");
                    let round_trip = blocking
                        .encrypt_text(&phone, ctx)
                        .and_then(|stored| blocking.decrypt_text(&stored, ctx));
                    match round_trip {
                        Ok(back) if back == phone => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => wrong.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            first_error.lock().unwrap().get_or_insert_with(|| e.to_string());
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    });
    let took = started.elapsed();

    let stats = envelope.stats();
    eprintln!(
        "seed scenario: {THREADS} threads x {ROUND_TRIPS_PER_THREAD} round trips in {took:?}; keyring calls: \
         generate {} decrypt {}; moto requests: GenerateDataKey {} Decrypt {}; envelope stats: {stats:?}",
        counting.generate_calls(),
        counting.decrypt_calls(),
        moto.count_requests("GenerateDataKey"),
        moto.count_requests("Decrypt"),
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0, "first error: {:?}", first_error.lock().unwrap());
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "a round trip returned another plaintext");
    assert_eq!(ok.load(Ordering::Relaxed), (THREADS * ROUND_TRIPS_PER_THREAD) as u64);
    // Exactly one GenerateDataKey, counted by the wrapper, by the envelope and by moto itself.
    assert_eq!(counting.generate_calls(), 1);
    assert_eq!(stats.generate_calls, 1);
    assert_eq!(moto.count_requests("GenerateDataKey"), 1);
    assert!(counting.decrypt_calls() <= 1, "decrypt calls: {}", counting.decrypt_calls());
    assert!(moto.count_requests("Decrypt") <= 1);
    assert_eq!(stats.keyring_errors, 0);
}

/// A keyring whose calls give up fast, so outages show within a second or two.
fn outage_keyring(moto: &MotoServer, key: &str) -> AwsKmsKeyring {
    keyring_builder(moto, key)
        .attempt_timeout(Duration::from_millis(300))
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            operation_timeout: Duration::from_millis(1500),
        })
        .build()
}

const MAX_AGE: Duration = Duration::from_secs(3);
/// The longest an encrypt may take while KMS is down: the keyring's operation timeout plus
/// scheduling slack on a loaded 2-core machine.
const OUTAGE_CALL_BOUND: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outage {
    /// `SIGSTOP`: connections hang; `SIGCONT` brings KMS back with its keys.
    Hang,
    /// Killed: connections refused; a restarted moto has lost its keys.
    Down,
}

/// Runs encrypt+decrypt load from several tasks while KMS goes away in the middle: encrypts
/// continue from the cached data key until it expires, then fail fast with `KmsUnavailable`;
/// decrypts of everything made with cached keys keep working throughout; nothing ever
/// returns a wrong plaintext or hangs.
async fn outage_mid_run(outage: Outage) -> (MotoServer, Envelope, Vec<(String, String)>, String) {
    let mut moto = MotoServer::start();
    let key = moto.create_key().await;
    let envelope = Envelope::builder(outage_keyring(&moto, &key))
        .data_key_limits(DataKeyLimits { max_age: MAX_AGE, ..DataKeyLimits::default() })
        .build();
    let ctx = phone_context();

    // Warm the cache: the data key is generated between t0 and t_warm.
    let t0 = Instant::now();
    let first = envelope.encrypt_text("010-0000-0000", &ctx).await.unwrap();
    let t_warm = Instant::now();
    let mut made = vec![("010-0000-0000".to_owned(), first)];

    // Load from 8 tasks; KMS goes away a moment after it starts.
    let stop_load_at = t0 + MAX_AGE - Duration::from_millis(250);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (envelope, ctx) = (envelope.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let mut i = 0;
            while Instant::now() < stop_load_at {
                let phone = format!("010-{task:04}-{i:04}");
                let stored = match envelope.encrypt_text(&phone, &ctx).await {
                    Ok(stored) => stored,
                    // Judged below: only legitimate once the data key has expired.
                    Err(e) => return Err((Instant::now(), e, made)),
                };
                // Decrypts use the cached data key: they must never fail here.
                let back = envelope.decrypt_text(&stored, &ctx).await.unwrap();
                assert_eq!(back, phone);
                made.push((phone, stored));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<_, (Instant, EnvelopeError, Vec<(String, String)>)>(made)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let outage_started = Instant::now();
    match outage {
        Outage::Hang => moto.pause(),
        Outage::Down => moto.stop(),
    }
    for t in tasks {
        match t.await.unwrap() {
            Ok(m) => made.extend(m),
            // The key was generated after t0, so it was valid for any call that ended before
            // t0 + MAX_AGE: a failure then is a bug. A call stalled past expiry on this loaded
            // machine may fail, but only with KmsUnavailable.
            Err((at, e, m)) => {
                assert!(
                    at >= t0 + MAX_AGE && matches!(e, EnvelopeError::KmsUnavailable(_)),
                    "{outage:?}: an encrypt failed {:?} into the outage, {:?} after t0, while the cached \
                     data key was valid: {e}",
                    at - outage_started,
                    at - t0
                );
                made.extend(m);
            }
        }
    }
    let made_during_outage = made.len();
    assert!(
        made_during_outage > 50,
        "{outage:?}: only {made_during_outage} round trips during the cached phase"
    );

    // The cached data key has expired: encrypts now need KMS and fail, clearly and boundedly,
    // from many tasks at once.
    tokio::time::sleep_until((t_warm + MAX_AGE + Duration::from_millis(100)).into()).await;
    let mut failing = Vec::new();
    for task in 0..8 {
        let (envelope, ctx) = (envelope.clone(), ctx.clone());
        failing.push(tokio::spawn(async move {
            let start = Instant::now();
            let got = envelope.encrypt_text(&format!("010-9999-{task:04}"), &ctx).await;
            (start.elapsed(), got)
        }));
    }
    for f in failing {
        let (took, got) = f.await.unwrap();
        assert!(matches!(got, Err(EnvelopeError::KmsUnavailable(_))), "{outage:?}: {got:?}");
        assert!(took < OUTAGE_CALL_BOUND, "{outage:?}: an encrypt took {took:?} while KMS was down");
    }

    // Decrypts of everything made with cached keys continue.
    for (phone, stored) in &made {
        assert_eq!(&envelope.decrypt_text(stored, &ctx).await.unwrap(), phone);
    }
    // A cold envelope (another process, say) cannot open them: that needs KMS.
    let cold = Envelope::builder(outage_keyring(&moto, &key)).build();
    let got = cold.decrypt_text(&made[0].1, &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::KmsUnavailable(_))), "{outage:?}: {got:?}");

    eprintln!(
        "{outage:?} outage: {made_during_outage} round trips before expiry, stats {:?}, moto requests \
         GenerateDataKey {} Decrypt {}",
        envelope.stats(),
        moto.count_requests("GenerateDataKey"),
        moto.count_requests("Decrypt")
    );
    (moto, envelope, made, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_hanging_mid_run_then_recovering() {
    let (mut moto, envelope, made, key) = outage_mid_run(Outage::Hang).await;
    let ctx = phone_context();

    moto.resume();
    // Recovery: the next encrypt makes a new data key; the envelope has no sticky failure.
    let stored = eventually(Duration::from_secs(20), || envelope.encrypt_text("010-5555-0001", &ctx)).await;
    assert_eq!(envelope.decrypt_text(&stored, &ctx).await.unwrap(), "010-5555-0001");
    // And a cold envelope opens old and new ciphertexts through KMS again.
    let cold = Envelope::builder(outage_keyring(&moto, &key)).build();
    assert_eq!(cold.decrypt_text(&stored, &ctx).await.unwrap(), "010-5555-0001");
    for (phone, stored) in made.iter().step_by(97) {
        assert_eq!(&cold.decrypt_text(stored, &ctx).await.unwrap(), phone);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_killed_mid_run_then_restarted_empty() {
    let (mut moto, envelope, made, _key) = outage_mid_run(Outage::Down).await;
    let ctx = phone_context();

    // moto keeps keys in memory: the restarted server no longer has our master key. That is a
    // clear KeyNotFound, not a hang or a KmsUnavailable retry storm...
    moto.restart();
    // The first KMS request to a fresh moto loads its KMS backend and can outlast the 300 ms
    // attempt timeout; creating the new key we need below takes that hit first.
    let fresh = moto.create_key().await;
    let before = moto.count_requests("GenerateDataKey");
    let got = envelope.encrypt_text("010-5555-0002", &ctx).await;
    assert!(matches!(got, Err(EnvelopeError::KeyNotFound(_))), "{got:?}");
    assert_eq!(moto.count_requests("GenerateDataKey"), before + 1, "KeyNotFound is not retried");
    // ... while ciphertexts whose data keys are cached still open.
    for (phone, stored) in made.iter().step_by(13) {
        assert_eq!(&envelope.decrypt_text(stored, &ctx).await.unwrap(), phone);
    }
    // A new master key in the new KMS works at once.
    let e2 = Envelope::builder(outage_keyring(&moto, &fresh)).build();
    let stored = e2.encrypt_text("010-5555-0003", &ctx).await.unwrap();
    assert_eq!(e2.decrypt_text(&stored, &ctx).await.unwrap(), "010-5555-0003");
}

/// KMS throttling that outlasts the keyring's retries reaches callers as a typed `Throttled`
/// (never a wrong or empty value), all concurrent cold callers share the one failed flight, and
/// the next call recovers with a single real `GenerateDataKey`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_surfaces_as_throttled_then_recovers() {
    let moto = MotoServer::start();
    let key = moto.create_key().await;
    let keyring = Arc::new(CountingKeyring::new(FlakyKeyring::new(
        kms_common::keyring(&moto, &key),
        1,
        EnvelopeError::Throttled("ThrottlingException: Rate exceeded (after 3 attempts)".into()),
    )));
    let envelope = Envelope::builder_shared(keyring.clone()).build();
    let ctx = phone_context();

    let start_line = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for t in 0..50 {
        let (envelope, ctx, start_line) = (envelope.clone(), ctx.clone(), start_line.clone());
        tasks.push(tokio::spawn(async move {
            start_line.wait().await;
            let phone = format!("010-7777-{t:04}");
            match envelope.encrypt_text(&phone, &ctx).await {
                Ok(stored) => Ok(envelope.decrypt_text(&stored, &ctx).await.map(|back| back == phone)),
                Err(e) => Err(e),
            }
        }));
    }
    let (mut throttled, mut ok) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Err(EnvelopeError::Throttled(_)) => throttled += 1,
            Ok(Ok(true)) => ok += 1,
            other => panic!("expected Throttled or a correct round trip, got {other:?}"),
        }
    }
    assert!(throttled >= 1, "the throttled flight reached its callers");
    assert_eq!(throttled + ok, 50);
    // Single flight under failure: one throttled call, and at most one more that succeeded.
    assert!(keyring.generate_calls() <= 2, "generate calls: {}", keyring.generate_calls());

    let stored = envelope.encrypt_text("010-7777-9999", &ctx).await.unwrap();
    assert_eq!(envelope.decrypt_text(&stored, &ctx).await.unwrap(), "010-7777-9999");
    assert_eq!(keyring.generate_calls(), 2);
    assert_eq!(moto.count_requests("GenerateDataKey"), 1, "the throttled call never reached KMS");
}
