//! The soak with faults: a real `redis-server` and a real `moto_server` on loopback, four
//! `larder-soak-worker` processes doing mixed memo and envelope work for `LARDER_SOAK_SECS`
//! seconds (default 10, so `cargo test --workspace` stays short;
//! `scripts/soak.sh SECONDS` sets it), while this test
//! * kills Redis with SIGKILL every `LARDER_SOAK_REDIS_EVERY` seconds (default 6) and starts an
//!   empty one on the same port a second later, and
//! * stops moto (SIGSTOP: connections hang, only timeouts end them) once, for a quarter of
//!   the run starting at 40 %, then lets it go on.
//!
//! Asserts: zero wrong values (a memo call always returns the function's value, Redis down or
//! not), zero panics, every worker exits cleanly. Prints errors by kind, latency percentiles
//! and keyring calls (counted in the workers and cross-checked with moto's request log).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use larder_soak::{percentile, Report};
use larder_testkit::moto::MotoServer;
use larder_testkit::redis::RedisServer;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn soak_with_redis_kills_and_a_kms_stall() {
    let secs = env_secs("LARDER_SOAK_SECS", 10).max(5);
    let redis_every = env_secs("LARDER_SOAK_REDIS_EVERY", 6).max(2);
    let mut redis = RedisServer::start();
    let mut moto = MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key_id = rt.block_on(moto.create_key());
    let out = std::env::temp_dir().join(format!("larder-soak-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();

    let spawn = |w: usize| -> Child {
        Command::new(env!("CARGO_BIN_EXE_larder-soak-worker"))
            .env("SOAK_WORKER", w.to_string())
            .env("SOAK_SECS", secs.to_string())
            .env("SOAK_CACHE", format!("local:64,{}", redis.url()))
            // The deployment secret every worker shares (a Redis tier needs one).
            .env("LARDER_KEY_SECRET", "3c".repeat(32))
            .env("SOAK_KMS_ENDPOINT", moto.endpoint())
            .env("SOAK_KMS_KEY_ID", &key_id)
            .env("SOAK_OUT", &out)
            .spawn()
            .expect("spawn larder-soak-worker")
    };
    let mut workers: Vec<Child> = (0..4).map(spawn).collect();

    let start = Instant::now();
    let stall_from = Duration::from_secs_f64(secs as f64 * 0.4);
    let stall_for = Duration::from_secs_f64(secs as f64 * 0.25);
    let (mut redis_kills, mut kms_stalled, mut kms_stalls) = (0u32, false, 0u32);
    let mut next_kill = Duration::from_secs(redis_every);
    while start.elapsed() < Duration::from_secs(secs) {
        let t = start.elapsed();
        if t >= next_kill {
            redis.kill9();
            redis_kills += 1;
            std::thread::sleep(Duration::from_secs(1));
            redis.restart();
            next_kill += Duration::from_secs(redis_every);
        }
        if !kms_stalled && kms_stalls == 0 && t >= stall_from {
            moto.pause();
            kms_stalled = true;
            kms_stalls += 1;
        }
        if kms_stalled && t >= stall_from + stall_for {
            moto.resume();
            kms_stalled = false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if kms_stalled {
        moto.resume();
    }

    // Workers stop by themselves at the deadline; allow them a bounded time to finish the
    // calls in flight (each bounded by the cache's and the keyring's timeouts).
    let grace = Instant::now() + Duration::from_secs(60);
    let mut statuses = Vec::new();
    for (w, child) in workers.iter_mut().enumerate() {
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                statuses.push((w, st));
                break;
            }
            if Instant::now() > grace {
                let _ = child.kill();
                panic!("worker {w} did not stop within 60 s of the deadline");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    for (w, st) in &statuses {
        assert!(st.success(), "worker {w} exited with {st}");
    }
    let mut total = Report::default();
    for w in 0..4 {
        let path = out.join(format!("worker-{w}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("worker {w} wrote no report: {e}"));
        total.merge(serde_json::from_str(&text).expect("report parses"));
    }
    let _ = std::fs::remove_dir_all(&out);

    println!("== soak: {secs} s, 4 workers, Redis killed {redis_kills}×, KMS stalled {kms_stalls}× for {stall_for:?}");
    println!(
        "memo calls {}, envelope rounds {}, wrong values {}",
        total.memo_ops, total.envelope_ops, total.wrong_values
    );
    println!("memo computations {} (cache stats: {:?})", total.computations, total.cache_stats);
    println!("errors by kind: {:?}", total.errors);
    for (area, lat) in total.latencies_us.iter_mut() {
        let n = lat.len();
        println!(
            "latency {area:8} n={n:7}  p50 {:>7} µs  p90 {:>7} µs  p99 {:>7} µs  p99.9 {:>8} µs  max {:>8} µs",
            percentile(lat, 50.0),
            percentile(lat, 90.0),
            percentile(lat, 99.0),
            percentile(lat, 99.9),
            percentile(lat, 100.0)
        );
    }
    let moto_generate = moto.count_requests("GenerateDataKey");
    let moto_decrypt = moto.count_requests("Decrypt");
    println!(
        "keyring calls (workers): {:?}; requests moto answered: GenerateDataKey {moto_generate}, Decrypt {moto_decrypt}",
        total.keyring_calls
    );

    assert_eq!(total.wrong_values, 0, "wrong values under faults");
    assert!(!total.errors.contains_key("worker:panic"), "a worker task panicked");
    assert!(redis_kills >= 1 && kms_stalls == 1, "faults were not injected (run too short?)");
    assert!(total.memo_ops > 0 && total.envelope_ops > 0, "no work was done");
    // The keyring's calls reached the real server (its retries can make moto's count larger).
    assert!(moto_generate > 0, "moto answered no GenerateDataKey");
}
