//! Redis tier benchmarks against a real `redis-server` started by the bench (see
//! `docs/benchmarks.md`, section Redis, for the commands and figures).
//!
//! * `redis_sequential/*`: one request at a time. The server is pinned to CPU 0; run the bench
//!   under `taskset -c 0` too, so a round trip is not dominated by cross-vCPU wake-ups.
//!   - `bare_redis_rs_get`: redis-rs multiplexed connection, `GET` of the stored frame bytes;
//!   - `tier_get`: the same bytes through `RedisTier::get` (key layout, timeout);
//!   - `cache_hit`: `Cache::get_or_compute` on a Redis-only cache (no local tier): the tier get
//!     plus MAC verification, expiry/XFetch check and decoding of a `LoanQuote`.
//! * `redis_throughput_64_tasks/*`: 64 tasks sharing one multiplexed connection, bare `GET`
//!   vs cache hits; the bench also runs `redis-benchmark -t get -c 64` against the same
//!   (unpinned) server and prints its requests/s beside them.

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use larder_cache::redis::{connect, RedisOptions, RedisTier};
use larder_cache::{Cache, KeySecret, KeySpace, SharedTier};
use larder_testkit::redis::{RedisOptions as ServerOptions, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Quote {
    monthly_won: u64,
    total_won: u64,
    rate_bp: u32,
}

#[derive(larder_macros::StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

const TTL: Duration = Duration::from_secs(3600);

fn args() -> LoanQuote {
    args_of(42)
}

fn args_of(user_id: u64) -> LoanQuote {
    LoanQuote { user_id, amount_won: 5_000_000, rate_bp: 450, term_months: 36 }
}

fn quote() -> Quote {
    Quote { monthly_won: 148_000, total_won: 5_328_000, rate_bp: 450 }
}

struct Setup {
    cache: Cache,
    tier: Arc<RedisTier>,
    bare: redis::aio::MultiplexedConnection,
    /// The Redis name the cache stores the value under, and the key text.
    redis_key: String,
    key_text: String,
    frame_len: usize,
}

async fn setup(server: &RedisServer) -> Setup {
    // The tier is created inside the caller's runtime, so its connection is driven there.
    let tier = Arc::new(connect(&server.url(), RedisOptions::default()).expect("tier"));
    let shared: Arc<dyn SharedTier> = tier.clone();
    let cache = Cache::builder()
        .shared(shared)
        .secret(&KeySecret::from_bytes(&[7; 32]).expect("secret"))
        .build()
        .expect("cache");
    let space = KeySpace::new("loan_calc", 1).expect("space");
    let v = cache.get_or_compute(&space, &args(), TTL, || async { quote() }).await;
    assert_eq!(v, quote());
    let key_text = space.key(&args()).expect("key").as_str().to_owned();
    let frame = tier.get(&key_text).await.expect("get").expect("stored");
    let client = redis::Client::open(server.url()).expect("client");
    let bare = client.get_multiplexed_async_connection().await.expect("bare connection");
    Setup { cache, redis_key: tier.value_key(&key_text), tier, bare, key_text, frame_len: frame.len() }
}

async fn bare_get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    redis::cmd("GET").arg(key).query_async::<Vec<u8>>(conn).await.expect("bare GET")
}

async fn cache_hit(cache: &Cache, space: &KeySpace) -> Quote {
    cache_hit_of(cache, space, 42).await
}

async fn cache_hit_of(cache: &Cache, space: &KeySpace, user_id: u64) -> Quote {
    cache
        .get_or_compute(space, &args_of(user_id), TTL, || async { unreachable!("the value is cached") })
        .await
}

fn sequential(c: &mut Criterion) {
    let server = RedisServer::start_with(ServerOptions { pin_cpu: Some(0), ..ServerOptions::default() });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let s = rt.block_on(setup(&server));
    let space = KeySpace::new("loan_calc", 1).expect("space");
    let mut conn = s.bare.clone();
    assert_eq!(rt.block_on(bare_get(&mut conn, &s.redis_key)).len(), s.frame_len, "bare GET reads the frame");
    let before = s.cache.stats();
    interleaved(&rt, &s, &space);
    let mut g = c.benchmark_group("redis_sequential");
    g.bench_function("bare_redis_rs_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = s.bare.clone();
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(bare_get(&mut conn, &s.redis_key).await);
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("tier_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(s.tier.get(&s.key_text).await.expect("tier get"));
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("cache_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(cache_hit(&s.cache, &space).await);
                }
                start.elapsed()
            })
        });
    });
    g.finish();
    let after = s.cache.stats();
    assert_eq!(after.computations, before.computations, "the cache recomputed during the bench");
    assert!(after.shared_hits > before.shared_hits);
}

/// Alternates bare GETs and cache hits one by one and prints the ratio of their medians:
/// drift in machine load (other builds on a shared VM) hits both sides equally.
fn interleaved(rt: &tokio::runtime::Runtime, s: &Setup, space: &KeySpace) {
    const ROUNDS: usize = 20_000;
    let (mut bare, mut hit, mut tier) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS), Vec::new());
    rt.block_on(async {
        let mut conn = s.bare.clone();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            std::hint::black_box(bare_get(&mut conn, &s.redis_key).await);
            bare.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(cache_hit(&s.cache, space).await);
            hit.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(s.tier.get(&s.key_text).await.expect("tier get"));
            tier.push(t.elapsed());
        }
    });
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, h, t) = (median(&mut bare), median(&mut hit), median(&mut tier));
    eprintln!(
        "interleaved medians over {ROUNDS} rounds: bare redis-rs GET {b:?}, RedisTier::get {t:?} ({:.3}x), \
         cache hit {h:?} ({:.3}x bare)",
        t.as_secs_f64() / b.as_secs_f64(),
        h.as_secs_f64() / b.as_secs_f64()
    );
}

/// 64 tasks at once on the multi-thread runtime, bare GETs and cache hits in alternating
/// rounds (each task owns one stored key), and the ratio of the median rounds' throughput:
/// criterion runs the two sides minutes apart, and on a shared machine their ratio swung from
/// 0.27x to 2.0x between runs.
fn interleaved_throughput(
    rt: &tokio::runtime::Runtime,
    s: &Arc<Setup>,
    space: &KeySpace,
    keys: &Arc<Vec<String>>,
) {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 200;
    const ROUNDS: usize = 41;
    let round = |cache_side: bool| -> (f64, f64) {
        let (s, space, keys) = (Arc::clone(s), space.clone(), Arc::clone(keys));
        let cpu0 = process_cpu_seconds();
        let ops = rt.block_on(async move {
            let start = Instant::now();
            let hs: Vec<_> = (0..TASKS)
                .map(|task| {
                    let (s, space, keys) = (Arc::clone(&s), space.clone(), Arc::clone(&keys));
                    tokio::spawn(async move {
                        let mut conn = s.bare.clone();
                        for _ in 0..PER_TASK {
                            if cache_side {
                                std::hint::black_box(cache_hit_of(&s.cache, &space, task).await);
                            } else {
                                std::hint::black_box(bare_get(&mut conn, &keys[task as usize]).await);
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.expect("task");
            }
            (TASKS * PER_TASK) as f64 / start.elapsed().as_secs_f64()
        });
        (ops, (process_cpu_seconds() - cpu0) * 1e6 / (TASKS * PER_TASK) as f64)
    };
    let (mut bare, mut hit, mut bare_cpu, mut hit_cpu) = (Vec::new(), Vec::new(), 0.0, 0.0);
    for i in 0..ROUNDS {
        // Alternate which side goes first, so neither always follows the other.
        let order = if i % 2 == 0 { [false, true] } else { [true, false] };
        for cache_side in order {
            let (ops, cpu) = round(cache_side);
            if cache_side {
                hit.push(ops);
                hit_cpu += cpu / ROUNDS as f64;
            } else {
                bare.push(ops);
                bare_cpu += cpu / ROUNDS as f64;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, h) = (median(&mut bare), median(&mut hit));
    eprintln!(
        "interleaved 64-task throughput, median of {ROUNDS} rounds of {} ops: bare multiplexed GETs {b:.0}/s, \
         cache hits {h:.0}/s ({:.2}x bare); this process's CPU per op (mean): bare {bare_cpu:.2} us, \
         cache hit {hit_cpu:.2} us",
        TASKS * PER_TASK,
        h / b
    );
}

/// User + system CPU time of this process so far, from /proc/self/stat (clock ticks of 10 ms,
/// so only sums over many operations mean anything).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn run_redis_benchmark(server: &RedisServer, data_size: usize) -> Option<f64> {
    let bin = larder_testkit::find_binary(
        "LARDER_REDIS_BENCHMARK",
        "redis-benchmark",
        "Install it with: apt-get install redis-tools",
    );
    let port = server.port()?.to_string();
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "get", "-n", "200000", "-c", "64", "-q"])
        .args(["-d", &data_size.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "GET: 84245.99 requests per second, p50=0.303 msec" (carriage-return progress before).
    let line = text.rsplit('\r').next()?.lines().find(|l| l.contains("GET:"))?.to_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

fn throughput(c: &mut Criterion) {
    const TASKS: u64 = 64;
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let s = Arc::new(rt.block_on(setup(&server)));
    let space = KeySpace::new("loan_calc", 1).expect("space");
    if let Some(rps) = run_redis_benchmark(&server, s.frame_len) {
        eprintln!("redis-benchmark -t get -c 64 -d {} on the same server: {rps:.0} requests/s", s.frame_len);
    }
    // One key per task (64 distinct keys, all stored): concurrent hits on one key would be
    // coalesced by the cache's single-flight into fewer Redis round trips than the bare side.
    let redis_keys: Arc<Vec<String>> = Arc::new(rt.block_on(async {
        let mut keys = Vec::new();
        for id in 0..TASKS {
            let v = s.cache.get_or_compute(&space, &args_of(id), TTL, || async { quote() }).await;
            assert_eq!(v, quote());
            keys.push(s.tier.value_key(space.key(&args_of(id)).expect("key").as_str()));
        }
        keys
    }));
    let before = s.cache.stats();
    interleaved_throughput(&rt, &s, &space, &redis_keys);
    let mut g = c.benchmark_group("redis_throughput_64_tasks");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_redis_rs_get", |b| {
        b.iter_custom(|iters| {
            let s = Arc::clone(&s);
            let redis_keys = Arc::clone(&redis_keys);
            rt.block_on(async move {
                let per = iters.div_ceil(TASKS);
                let start = Instant::now();
                let hs: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let s = Arc::clone(&s);
                        let keys = Arc::clone(&redis_keys);
                        tokio::spawn(async move {
                            let mut conn = s.bare.clone();
                            let key = &keys[task as usize];
                            for _ in 0..per {
                                std::hint::black_box(bare_get(&mut conn, key).await);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.expect("task");
                }
                start.elapsed().mul_f64(iters as f64 / (per * TASKS) as f64)
            })
        });
    });
    g.bench_function("cache_hit", |b| {
        b.iter_custom(|iters| {
            let s = Arc::clone(&s);
            let space = space.clone();
            rt.block_on(async move {
                let per = iters.div_ceil(TASKS);
                let start = Instant::now();
                let hs: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let s = Arc::clone(&s);
                        let space = space.clone();
                        tokio::spawn(async move {
                            for _ in 0..per {
                                std::hint::black_box(cache_hit_of(&s.cache, &space, task).await);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.expect("task");
                }
                start.elapsed().mul_f64(iters as f64 / (per * TASKS) as f64)
            })
        });
    });
    g.finish();
    let after = s.cache.stats();
    assert_eq!(after.computations, before.computations, "the cache recomputed during the bench");
    assert_eq!(after.coalesced, before.coalesced, "hits were coalesced: not one round trip per hit");
    if let Some(rps) = run_redis_benchmark(&server, s.frame_len) {
        eprintln!("redis-benchmark -t get -c 64 -d {} (again, after): {rps:.0} requests/s", s.frame_len);
    }
}

criterion_group!(benches, sequential, throughput);
criterion_main!(benches);
