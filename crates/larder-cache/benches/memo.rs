//! Memo cache benchmarks, run side by side in one process so ratios are comparable:
//!
//! * a local-tier hit through `#[memoize]` (a `LoanQuote` argument), beside a bare get on
//!   quick_cache and on moka (`u64` keys), and the `cached` crate's `#[cached]` hit,
//!   single-threaded and with 2 threads (time per op per thread);
//! * the SQLite tier: a hit (no local tier) and a miss + store;
//! * tags (`tags` group): a local hit and a SQLite hit of an entry with one tag beside the same
//!   without tags, and `invalidate_tag` on SQLite.
//!
//! The local-hit group first prints an interleaved measurement (batches of memoized hits and
//! bare quick_cache gets, alternated): the ratio to trust on a loaded machine.
//!
//! `cargo bench -p larder-cache --bench memo -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use larder_cache::{memoize, Cache, KeySpace, StableKey};

#[derive(StableKey, Clone, Copy, Hash, PartialEq, Eq)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

static LOCAL: LazyLock<Cache> = LazyLock::new(|| Cache::builder().local(10_000).build().unwrap());

#[memoize(cache = &*LOCAL, namespace = "loan_calc", ttl = "1h")]
fn quote(q: LoanQuote) -> u64 {
    q.amount_won * u64::from(q.rate_bp) / 10_000 / u64::from(q.term_months) + q.user_id
}

#[cached::proc_macro::cached]
fn cached_quote(user_id: u64) -> u64 {
    user_id * 3
}

const Q: LoanQuote = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };

/// Runs `op` on 2 threads at once; returns the time per op per thread.
fn two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(2);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    t.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Per op per thread: the slower thread's wall time over its iterations.
    times.into_iter().max().unwrap_or_default()
}

/// Alternates batches of memoized hits and bare quick_cache gets, on 1 thread and on 2, and
/// prints the medians of their per-op times and the ratio: drift in machine load (other builds
/// on a shared VM) hits both sides equally, so this ratio is the one to trust.
fn interleaved(qc: &quick_cache::sync::Cache<u64, u64>, qs: &quick_cache::sync::Cache<LoanQuote, u64>) {
    const ROUNDS: usize = 2_000;
    const BATCH: u64 = 1_000;
    let per_op = |d: Duration| d.as_secs_f64() * 1e9 / BATCH as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let batch_memo = || {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(quote(black_box(Q)));
        }
        t.elapsed()
    };
    let batch_qc = || {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(qc.get(black_box(&7)));
        }
        t.elapsed()
    };
    // The hand-written equivalent of the memoized call: quick_cache keyed by the same
    // arguments (derived `Hash`/`Eq`, quick_cache's default hasher).
    let batch_qs = || {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(qs.get(black_box(&Q)));
        }
        t.elapsed()
    };
    let (mut m, mut q, mut k) =
        (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        m.push(per_op(batch_memo()));
        q.push(per_op(batch_qc()));
        k.push(per_op(batch_qs()));
    }
    let (m1, q1, k1) = (median(&mut m), median(&mut q), median(&mut k));
    // 2 threads: batches long enough (200,000 ops, milliseconds) that the two threads really
    // run at once; with 1,000-op batches the second thread was barely started when the first
    // finished, and contention never showed.
    const ROUNDS2: usize = 21;
    const BATCH2: u64 = 200_000;
    let per_op2 = |d: Duration| d.as_secs_f64() * 1e9 / BATCH2 as f64;
    let (mut m, mut q, mut k) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS2 {
        m.push(per_op2(two_threads(BATCH2, || {
            black_box(quote(black_box(Q)));
        })));
        q.push(per_op2(two_threads(BATCH2, || {
            black_box(qc.get(black_box(&7)));
        })));
        k.push(per_op2(two_threads(BATCH2, || {
            black_box(qs.get(black_box(&Q)));
        })));
    }
    let (m2, q2, k2) = (median(&mut m), median(&mut q), median(&mut k));
    eprintln!(
        "interleaved medians, {ROUNDS} rounds of {BATCH}: 1 thread: #[memoize] hit {m1:.1} ns, bare quick_cache get \
         {q1:.1} ns ({:.2}x), quick_cache get keyed by the LoanQuote itself {k1:.1} ns ({:.2}x); 2 threads on one key \
         ({ROUNDS2} rounds of {BATCH2}, per op per thread): #[memoize] hit {m2:.1} ns, bare quick_cache get {q2:.1} ns \
         ({:.2}x), keyed by the LoanQuote {k2:.1} ns ({:.2}x)",
        m1 / q1,
        m1 / k1,
        m2 / q2,
        m2 / k2
    );
}

fn local_hits(c: &mut Criterion) {
    let qc: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(10_000);
    let mk: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(10_000);
    let qs: quick_cache::sync::Cache<LoanQuote, u64> = quick_cache::sync::Cache::new(10_000);
    for i in 0..1000u64 {
        qc.insert(i, i);
        mk.insert(i, i);
        qs.insert(LoanQuote { user_id: i, ..Q }, i);
    }
    quote(Q);
    cached_quote(7);
    interleaved(&qc, &qs);

    let mut g = c.benchmark_group("local_hit_1_thread");
    g.bench_function("memoize_loanquote", |b| b.iter(|| black_box(quote(black_box(Q)))));
    g.bench_function("quick_cache_u64", |b| b.iter(|| black_box(qc.get(black_box(&7)))));
    g.bench_function("moka_u64", |b| b.iter(|| black_box(mk.get(black_box(&7)))));
    g.bench_function("cached_macro_u64", |b| b.iter(|| black_box(cached_quote(black_box(7)))));
    g.finish();

    let mut g = c.benchmark_group("local_hit_2_threads");
    g.bench_function("memoize_loanquote", |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                black_box(quote(black_box(Q)));
            })
        })
    });
    g.bench_function("quick_cache_u64", |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                black_box(qc.get(black_box(&7)));
            })
        })
    });
    g.bench_function("moka_u64", |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                black_box(mk.get(black_box(&7)));
            })
        })
    });
    g.bench_function("cached_macro_u64", |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                black_box(cached_quote(black_box(7)));
            })
        })
    });
    g.finish();
}

/// A SQLite-tier miss + store (blocking API, no local tier, a new key each call) against its
/// floor in the same process, interleaved: the same statements on a raw rusqlite connection to
/// a file of the same layout — the miss `SELECT`, the lease `INSERT … ON CONFLICT`, the
/// re-check `SELECT` after winning it, the entry `INSERT … ON CONFLICT` (each its own
/// autocommit transaction) and the lease `DELETE` — with a frame-sized blob.
fn sqlite_miss_floor() {
    const ROUNDS: usize = 9;
    const OPS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .shared_url(&format!("sqlite:{}", dir.path().join("larder.db").display()))
        .xfetch_beta(0.0)
        .build()
        .unwrap();
    let space = KeySpace::new("bench_sqlite", 1).unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)).unwrap();
    raw.execute_batch(
        "PRAGMA synchronous=NORMAL;
         CREATE TABLE e (key TEXT PRIMARY KEY, frame BLOB NOT NULL, expires_ms INTEGER NOT NULL,
           written_ms INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
         CREATE INDEX e_written ON e(written_ms);
         CREATE TABLE l (key TEXT PRIMARY KEY, token BLOB NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .unwrap();
    let frame = vec![7u8; 80];
    let token = [9u8; 16];
    let raw_miss = |k: u64| {
        let key = format!("bench_sqlite:v1:{k:032}");
        let now = 1_000_000i64;
        let get = || {
            raw.prepare_cached("SELECT frame FROM e WHERE key = ?1")
                .unwrap()
                .query_row([&key], |r| r.get::<_, Vec<u8>>(0))
                .is_ok()
        };
        assert!(!get());
        let won = raw
            .prepare_cached(
                "INSERT INTO l (key, token, expires_ms) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO UPDATE \
                 SET token = excluded.token, expires_ms = excluded.expires_ms WHERE l.expires_ms <= ?4",
            )
            .unwrap()
            .execute(rusqlite::params![key, &token[..], now + 30_000, now])
            .unwrap();
        assert_eq!(won, 1);
        assert!(!get());
        raw.prepare_cached(
            "INSERT INTO e (key, frame, expires_ms, written_ms, size) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(key) DO UPDATE SET frame = excluded.frame, expires_ms = excluded.expires_ms, \
             written_ms = excluded.written_ms, size = excluded.size",
        )
        .unwrap()
        .execute(rusqlite::params![key, frame, now + 3_600_000, now, 80])
        .unwrap();
        raw.prepare_cached("DELETE FROM l WHERE key = ?1 AND token = ?2")
            .unwrap()
            .execute(rusqlite::params![key, &token[..]])
            .unwrap();
    };
    // The async API, awaited on an application's runtime: its writes go through the pool.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (mut l, mut r, mut a) =
        (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    let mut next = 0u64;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..OPS {
            next += 1;
            black_box(cache.get_or_compute_blocking(&space, &next, Duration::from_secs(3600), || next));
        }
        l.push(t.elapsed().as_secs_f64() * 1e6 / OPS as f64);
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..OPS {
                next += 1;
                let n = next;
                black_box(
                    cache.get_or_compute(&space, &n, Duration::from_secs(3600), || async move { n }).await,
                );
            }
        });
        a.push(t.elapsed().as_secs_f64() * 1e6 / OPS as f64);
        let t = Instant::now();
        for _ in 0..OPS {
            next += 1;
            raw_miss(next);
        }
        r.push(t.elapsed().as_secs_f64() * 1e6 / OPS as f64);
    }
    let st = cache.stats();
    assert_eq!(st.computations, 2 * ROUNDS as u64 * OPS, "every larder call was a miss that computed");
    for v in [&mut l, &mut r, &mut a] {
        v.sort_by(f64::total_cmp);
    }
    let (lm, rm, am) = (l[ROUNDS / 2], r[ROUNDS / 2], a[ROUNDS / 2]);
    eprintln!(
        "interleaved medians, {ROUNDS} rounds of {OPS}: SQLite miss + store {lm:.1} us (blocking API), \
         {am:.1} us (async API on a 2-worker runtime), raw statements (SELECT, lease INSERT, SELECT, \
         entry INSERT, lease DELETE) {rm:.1} us ({:.2}x, {:.2}x)",
        lm / rm,
        am / rm
    );
}

fn sqlite_tier(c: &mut Criterion) {
    sqlite_miss_floor();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    // No local tier: every call goes to SQLite.
    let cache = Cache::builder().shared_url(&url).xfetch_beta(0.0).build().unwrap();
    let space = KeySpace::new("bench_sqlite", 1).unwrap();
    cache.get_or_compute_blocking(&space, &Q.user_id, Duration::from_secs(3600), || 42u64);
    let mut g = c.benchmark_group("sqlite_tier");
    g.bench_function("hit", |b| {
        b.iter(|| {
            black_box(cache.get_or_compute_blocking(&space, &Q.user_id, Duration::from_secs(3600), || 0u64))
        })
    });
    let mut next = 1_000_000u64;
    g.bench_function("miss_and_store", |b| {
        b.iter(|| {
            next += 1;
            black_box(cache.get_or_compute_blocking(&space, &next, Duration::from_secs(3600), || next))
        })
    });
    g.finish();
}

/// What a local hit is made of: the canonical encoding, the clock read, the lookup.
fn components(c: &mut Criterion) {
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let mut g = c.benchmark_group("local_hit_parts");
    g.bench_function("encode_loanquote", |b| {
        b.iter(|| larder_key::with_encoding(black_box(&Q), 1 << 16, |e| e.len()).unwrap())
    });
    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    g.bench_function("lookup_loanquote", |b| {
        b.iter(|| match LOCAL.lookup::<_, u64>(&space, black_box(&Q), Duration::from_secs(3600)) {
            larder_cache::Lookup::Hit(v) => v,
            larder_cache::Lookup::Miss(_) => 0,
        })
    });
    g.bench_function("keyed_blake3_key_text", |b| b.iter(|| black_box(space.key(black_box(&Q)).unwrap())));
    g.finish();
}

/// What a tag costs: the same calls with and without one tag, side by side.
fn tags(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tags.db").display());
    let ttl = Duration::from_secs(3600);
    let space = KeySpace::new("bench_tags", 1).unwrap();
    let call = |cache: &Cache, k: u64, tagged: bool| match cache.lookup::<u64, u64>(&space, &k, ttl) {
        larder_cache::Lookup::Hit(v) => v,
        larder_cache::Lookup::Miss(p) if tagged => p.tags(["user:7"]).compute_blocking(|| k),
        larder_cache::Lookup::Miss(p) => p.compute_blocking(|| k),
    };
    // Local tier in front of SQLite; a long tag_recheck so every call is a local hit (with
    // the default 1 s, one call per second per tag also reads the tag's record).
    let local = Cache::builder()
        .local(10_000)
        .shared_url(&url)
        .tag_recheck(Duration::from_secs(3600))
        .build()
        .unwrap();
    // SQLite only: every call reads the entry (and, tagged, its tag's record).
    let shared = Cache::builder().shared_url(&url).xfetch_beta(0.0).build().unwrap();
    for cache in [&local, &shared] {
        call(cache, 1, false);
        call(cache, 2, true);
    }
    let mut g = c.benchmark_group("tags");
    g.bench_function("local_hit_untagged", |b| b.iter(|| black_box(call(&local, black_box(1), false))));
    g.bench_function("local_hit_1_tag", |b| b.iter(|| black_box(call(&local, black_box(2), true))));
    g.bench_function("sqlite_hit_untagged", |b| b.iter(|| black_box(call(&shared, black_box(1), false))));
    g.bench_function("sqlite_hit_1_tag", |b| b.iter(|| black_box(call(&shared, black_box(2), true))));
    g.bench_function("sqlite_invalidate_tag", |b| {
        b.iter(|| shared.invalidate_tag_blocking(black_box("user:8")).unwrap())
    });
    g.finish();
    let computed = local.stats().computations + shared.stats().computations;
    assert_eq!(computed, 2, "every measured call was a hit");
}

criterion_group!(benches, local_hits, components, sqlite_tier, tags);
criterion_main!(benches);
