//! `larder-soak-worker`: one worker process of the soak (see the crate docs). Configured by
//! environment variables set by the orchestrator (`tests/soak.rs`):
//! `SOAK_WORKER`, `SOAK_SECS`, `SOAK_CACHE` (a `Cache::from_url` spec with a Redis tier),
//! `SOAK_KMS_ENDPOINT`, `SOAK_KMS_KEY_ID`, `SOAK_OUT` (directory for `worker-N.json`).
//!
//! Four tasks loop until the deadline, each call checked against the right answer:
//! * memo: `get_or_compute` of one of 3,000 inputs with a 3 s TTL through the Redis tier; the
//!   value must be exactly the function's.
//! * envelope: encrypt a phone number under one of three contexts with the AWS KMS keyring
//!   (moto), decrypt it at once, re-decrypt an older ciphertext, and now and then try an old
//!   ciphertext under the wrong context (must fail). Data keys live 4 s and opened keys 3 s,
//!   so KMS is called throughout the run, including while it is stalled.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use larder_cache::{Cache, KeySpace};
use larder_envelope::aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use larder_envelope::{
    aws_sdk_kms, AwsKmsKeyring, CountingKeyring, DataKeyLimits, EncryptionContext, Envelope, EnvelopeError,
    RetryPolicy,
};
use larder_soak::Report;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (the soak orchestrator sets it)"))
}

/// The memoized function: any deterministic value the worker can check independently.
fn expected(n: u64) -> String {
    format!("v{n}:{}", &blake3::hash(&n.to_le_bytes()).to_hex()[..16])
}

fn error_kind(e: &EnvelopeError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("Unknown").to_owned()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Shared {
    cache: Cache,
    space: KeySpace,
    envelope: Envelope,
    keyring: Arc<CountingKeyring<AwsKmsKeyring>>,
    report: Mutex<Report>,
    computations: AtomicU64,
    deadline: Instant,
}

fn context(i: u64) -> EncryptionContext {
    EncryptionContext::new().with("table", "users").with("column", format!("phone{}", i % 3))
}

async fn task(s: Arc<Shared>, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut mine = Report::default();
    let mut old: VecDeque<(Vec<u8>, Vec<u8>, u64)> = VecDeque::new();
    while Instant::now() < s.deadline {
        if rng.below(10) < 6 {
            let n = rng.below(3000);
            let t = Instant::now();
            let comp = &s.computations;
            let v: String = s
                .cache
                .get_or_compute(&s.space, &n, Duration::from_secs(3), || async move {
                    comp.fetch_add(1, Ordering::Relaxed);
                    expected(n)
                })
                .await;
            mine.latencies_us.entry("memo".into()).or_default().push(t.elapsed().as_micros() as u64);
            mine.memo_ops += 1;
            if v != expected(n) {
                mine.wrong_values += 1;
                eprintln!("WRONG memo value for {n}: {v:?}");
            }
            continue;
        }
        mine.envelope_ops += 1;
        let c = rng.below(3);
        let ctx = context(c);
        let phone = format!("010-{:04}-{:04}", rng.below(10_000), rng.below(10_000)).into_bytes();
        let t = Instant::now();
        match s.envelope.encrypt(&phone, &ctx).await {
            Ok(ct) => {
                mine.latencies_us.entry("encrypt".into()).or_default().push(t.elapsed().as_micros() as u64);
                let t = Instant::now();
                match s.envelope.decrypt(&ct, &ctx).await {
                    Ok(pt) if pt[..] == phone[..] => {}
                    Ok(_) => {
                        mine.wrong_values += 1;
                        eprintln!("WRONG plaintext from a fresh ciphertext");
                    }
                    Err(e) => mine.count_error("decrypt-fresh", &error_kind(&e)),
                }
                mine.latencies_us.entry("decrypt".into()).or_default().push(t.elapsed().as_micros() as u64);
                old.push_back((ct, phone, c));
                if old.len() > 256 {
                    old.pop_front();
                }
            }
            Err(e) => mine.count_error("encrypt", &error_kind(&e)),
        }
        if !old.is_empty() {
            let i = rng.below(old.len() as u64) as usize;
            let (ct, pt, c) = &old[i];
            let t = Instant::now();
            match s.envelope.decrypt(ct, &context(*c)).await {
                Ok(got) if got[..] == pt[..] => {}
                Ok(_) => {
                    mine.wrong_values += 1;
                    eprintln!("WRONG plaintext from an old ciphertext");
                }
                Err(e) => mine.count_error("decrypt-old", &error_kind(&e)),
            }
            mine.latencies_us.entry("decrypt".into()).or_default().push(t.elapsed().as_micros() as u64);
            if rng.below(20) == 0 {
                // The wrong context must never open it.
                if s.envelope.decrypt(ct, &context(*c + 1)).await.is_ok() {
                    mine.wrong_values += 1;
                    eprintln!("WRONG: a ciphertext opened under another context");
                }
            }
        }
    }
    s.report.lock().unwrap_or_else(|p| p.into_inner()).merge(mine);
}

fn main() {
    let worker: usize = env("SOAK_WORKER").parse().expect("SOAK_WORKER is a number");
    let secs: u64 = env("SOAK_SECS").parse().expect("SOAK_SECS is a number");
    let out = std::path::PathBuf::from(env("SOAK_OUT"));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let report = rt.block_on(async {
        let cache = Cache::from_url(&env("SOAK_CACHE")).expect("SOAK_CACHE spec");
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(env("SOAK_KMS_ENDPOINT"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "larder-soak"))
            .build();
        let kms = AwsKmsKeyring::builder(aws_sdk_kms::Client::from_conf(conf), env("SOAK_KMS_KEY_ID"))
            .attempt_timeout(Duration::from_millis(800))
            .retry_policy(RetryPolicy { operation_timeout: Duration::from_secs(2), ..RetryPolicy::default() })
            .build();
        let keyring = Arc::new(CountingKeyring::new(kms));
        let envelope = Envelope::builder_shared(keyring.clone())
            .data_key_limits(DataKeyLimits { max_age: Duration::from_secs(4), ..DataKeyLimits::default() })
            .decrypt_cache(Duration::from_secs(3), 1000)
            .build();
        let shared = Arc::new(Shared {
            cache,
            space: KeySpace::new("soak", 1).expect("namespace"),
            envelope,
            keyring,
            report: Mutex::new(Report { worker, ..Report::default() }),
            computations: AtomicU64::new(0),
            deadline: Instant::now() + Duration::from_secs(secs),
        });
        let tasks: Vec<_> = (0..4u64)
            .map(|i| {
                tokio::spawn(task(
                    shared.clone(),
                    (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i),
                ))
            })
            .collect();
        let mut panics = 0;
        for t in tasks {
            if let Err(e) = t.await {
                panics += 1;
                eprintln!("worker {worker}: a task failed: {e}");
            }
        }
        let mut r = shared.report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if panics > 0 {
            *r.errors.entry("worker:panic".into()).or_default() += panics;
        }
        r.computations = shared.computations.load(Ordering::Relaxed);
        r.keyring_calls.insert("GenerateDataKey".into(), shared.keyring.generate_calls());
        r.keyring_calls.insert("Decrypt".into(), shared.keyring.decrypt_calls());
        let st = shared.cache.stats();
        for (k, v) in [
            ("shared_hits", st.shared_hits),
            ("shared_misses", st.shared_misses),
            ("computations", st.computations),
            ("lease_waits", st.lease_waits),
            ("lease_timeouts", st.lease_timeouts),
            ("store_errors", st.store_errors),
            ("breaker_skips", st.breaker_skips),
            ("corrupt_entries", st.corrupt_entries),
        ] {
            r.cache_stats.insert(k.into(), v);
        }
        r
    });
    let line = serde_json::to_string(&report).expect("report serializes");
    std::fs::write(out.join(format!("worker-{worker}.json")), line).expect("write the report");
    // Leave without waiting for background tasks (breaker probes, refreshes) to wind down.
    rt.shutdown_timeout(Duration::from_secs(1));
    if report.errors.contains_key("worker:panic") {
        std::process::exit(3);
    }
}
