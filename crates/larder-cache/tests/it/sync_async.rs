//! The blocking API and the async API are one machine: the same scenario — misses, local and
//! shared hits, computations, an error, a fail-safe serve, a wait for another worker's lease,
//! a tagged entry refused after its tag's invalidation —
//! run through `*_blocking` and through the async calls, each on its own cache and SQLite file,
//! leaves identical `Cache::stats()` and identical `metrics` (every counter and gauge, and the
//! number of histogram samples), recorded by a `DebuggingRecorder` local to the test.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use larder_cache::sqlite::{SqliteOptions, SqliteTier};
use larder_cache::{Cache, CacheStats, KeySpace, Lease, Lookup, SharedTier};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

const TTL: Duration = Duration::from_secs(60);
/// What the fail-safe entry lives: it is expired (but inside the fail-safe window) when used.
const SHORT_TTL: Duration = Duration::from_millis(50);

fn cache(db: &Path) -> Cache {
    Cache::builder()
        .local(100)
        .shared_url(&format!("sqlite:{}", db.display()))
        .xfetch_beta(0.0) // no random early refresh
        .ttl_jitter(0.0)
        .fail_safe(Duration::from_secs(60))
        .lease_wait(Duration::from_millis(150))
        .build()
        .expect("cache")
}

/// Another worker holding the lease of `key` in the same SQLite file.
fn hold_lease(db: &Path, space: &KeySpace, key: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tier = SqliteTier::open(db, SqliteOptions::default(), rt.handle().clone()).unwrap();
    let text = space.key(&key).unwrap().as_str().to_owned();
    let got = rt.block_on(tier.try_lease(&text, &[7u8; 16], Duration::from_secs(30))).unwrap();
    assert_eq!(got, Lease::Acquired);
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Boom;

/// The steps, written once; `Api` runs each through one of the two APIs.
trait Api {
    fn compute(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64) -> u64;
    fn fail(&self, cache: &Cache, space: &KeySpace, k: u32) -> Result<u64, Boom>;
    fn set(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, ttl: Duration);
    fn compute_tagged(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, tag: &str) -> u64;
    fn invalidate_tag(&self, cache: &Cache, tag: &str);
}

struct Blocking;

impl Api for Blocking {
    fn compute(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64) -> u64 {
        cache.get_or_compute_blocking(space, &k, TTL, || v)
    }
    fn fail(&self, cache: &Cache, space: &KeySpace, k: u32) -> Result<u64, Boom> {
        cache.try_get_or_compute_blocking(space, &k, TTL, || Err(Boom))
    }
    fn set(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, ttl: Duration) {
        cache.set_blocking(space, &k, v, ttl);
    }
    fn compute_tagged(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, tag: &str) -> u64 {
        match cache.lookup::<u32, u64>(space, &k, TTL) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => p.tags([tag]).compute_blocking(|| v),
        }
    }
    fn invalidate_tag(&self, cache: &Cache, tag: &str) {
        cache.invalidate_tag_blocking(tag).unwrap();
    }
}

/// The async API, each call driven to completion on a current-thread runtime (so every event
/// is recorded on this thread, under the test's local recorder).
struct Async(tokio::runtime::Runtime);

impl Async {
    fn run<T>(&self, f: Pin<Box<dyn Future<Output = T> + '_>>) -> T {
        self.0.block_on(f)
    }
}

impl Api for Async {
    fn compute(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64) -> u64 {
        self.run(Box::pin(cache.get_or_compute(space, &k, TTL, || async move { v })))
    }
    fn fail(&self, cache: &Cache, space: &KeySpace, k: u32) -> Result<u64, Boom> {
        self.run(Box::pin(cache.try_get_or_compute(space, &k, TTL, || async { Err(Boom) })))
    }
    fn set(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, ttl: Duration) {
        self.run(Box::pin(cache.set(space, &k, v, ttl)));
    }
    fn compute_tagged(&self, cache: &Cache, space: &KeySpace, k: u32, v: u64, tag: &str) -> u64 {
        match cache.lookup::<u32, u64>(space, &k, TTL) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => self.run(Box::pin(p.tags([tag]).compute(|| async move { v }))),
        }
    }
    fn invalidate_tag(&self, cache: &Cache, tag: &str) {
        self.run(Box::pin(cache.invalidate_tag(tag))).unwrap();
    }
}

/// Every metric as `name{labels} = value`, histograms as their sample count, sorted.
fn metric_lines(recorder: &DebuggingRecorder) -> Vec<String> {
    let mut out: Vec<String> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _unit, _desc, v)| {
            let (_kind, key) = ck.into_parts();
            let mut labels: Vec<String> =
                key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            let value = match v {
                DebugValue::Counter(n) => format!("counter {n}"),
                DebugValue::Gauge(g) => format!("gauge {}", g.into_inner()),
                DebugValue::Histogram(samples) => format!("histogram of {} samples", samples.len()),
            };
            format!("{}{{{}}} = {value}", key.name(), labels.join(","))
        })
        .collect();
    out.sort();
    out
}

/// Runs the scenario through `api` on a fresh cache; returns its stats and metrics.
fn scenario(api: &dyn Api) -> (CacheStats, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let space = KeySpace::new("sync_async", 1).unwrap();
    let recorder = DebuggingRecorder::new();
    let stats = metrics::with_local_recorder(&recorder, || {
        let cache = cache(&db);
        // A miss, computed; then two local hits.
        assert_eq!(api.compute(&cache, &space, 1, 10), 10);
        assert_eq!(api.compute(&cache, &space, 1, 0), 10);
        assert_eq!(api.compute(&cache, &space, 1, 0), 10);
        // A shared hit: this process forgets its local copy.
        cache.clear_local();
        assert_eq!(api.compute(&cache, &space, 1, 0), 10);
        // An error, with nothing stale to serve.
        assert_eq!(api.fail(&cache, &space, 2), Err(Boom));
        // A fail-safe serve: an expired entry inside the fail-safe window, and a failure.
        api.set(&cache, &space, 3, 30, SHORT_TTL);
        std::thread::sleep(SHORT_TTL * 3);
        assert_eq!(api.fail(&cache, &space, 3), Ok(30));
        // Another worker holds the lease: wait for it (lease_wait), then compute anyway.
        hold_lease(&db, &space, 4);
        assert_eq!(api.compute(&cache, &space, 4, 40), 40);
        // A tagged entry whose tag is invalidated, read back from the shared tier (this
        // process forgets its local copy): refused as tag-stale, computed again.
        assert_eq!(api.compute_tagged(&cache, &space, 5, 50, "t"), 50);
        api.invalidate_tag(&cache, "t");
        cache.clear_local();
        assert_eq!(api.compute_tagged(&cache, &space, 5, 51, "t"), 51);
        cache.stats()
    });
    (stats, metric_lines(&recorder))
}

#[test]
fn blocking_and_async_apis_count_the_same() {
    let _timed = crate::common::timed();
    let (sync_stats, sync_metrics) = scenario(&Blocking);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (async_stats, async_metrics) = scenario(&Async(rt));

    // The scenario did what it says (so equal numbers are not two equal zeros).
    assert_eq!(sync_stats.computations, 6, "{sync_stats:?}"); // keys 1 and 4, the two failures, key 5 twice
    assert_eq!(sync_stats.local_hits, 2, "{sync_stats:?}");
    assert_eq!(sync_stats.shared_hits, 1, "{sync_stats:?}");
    assert_eq!(sync_stats.compute_errors, 2, "{sync_stats:?}");
    assert_eq!(sync_stats.fail_safe_served, 1, "{sync_stats:?}");
    assert_eq!(sync_stats.lease_waits, 1, "{sync_stats:?}");
    assert_eq!(sync_stats.lease_timeouts, 1, "{sync_stats:?}");
    assert_eq!(sync_stats.store_errors, 0, "{sync_stats:?}");
    assert!(sync_stats.tag_stale >= 1, "{sync_stats:?}");
    assert!(
        sync_metrics
            .iter()
            .any(|l| l.starts_with("larder_cache_fail_safe_served_total") && l.ends_with("counter 1")),
        "{sync_metrics:#?}"
    );
    // tag_stale reaches the metrics too, with the same count.
    let tag_stale = format!("counter {}", sync_stats.tag_stale);
    assert!(
        sync_metrics
            .iter()
            .any(|l| l.starts_with("larder_cache_tag_stale_total{tier=sqlite}") && l.ends_with(&tag_stale)),
        "{sync_metrics:#?}"
    );

    assert_eq!(sync_stats, async_stats);
    assert_eq!(sync_metrics, async_metrics);
}
