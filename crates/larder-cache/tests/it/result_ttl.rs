//! A TTL that depends on the result (`ttl_fn`) and cached errors with their own TTL
//! (`err_ttl`), through a local tier in front of a real SQLite file; a second cache on the
//! same file (another worker) sees the same expiries, because the TTL is in the stored frame.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use larder_cache::{memoize, Cache, KeySpace};

fn db() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| DIR.get_or_init(|| tempfile::tempdir().unwrap()).path().join("ttl.db"))
}

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(|| {
        larder_cache::config::parse(&format!("local:100,sqlite:{}", db().display()))
            .unwrap()
            .ttl_jitter(0.0)
            .xfetch_beta(0.0)
            .build()
            .unwrap()
    })
}

/// Another worker on the same file (no local tier, so every read is the file's).
fn other_worker() -> Cache {
    Cache::builder().shared_url(&format!("sqlite:{}", db().display())).ttl_jitter(0.0).build().unwrap()
}

static SEARCHES: AtomicU32 = AtomicU32::new(0);

/// Empty results are kept 300 ms, others the function's 10 minutes.
fn search_ttl(hits: &[u32]) -> Duration {
    if hits.is_empty() {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(600)
    }
}

#[memoize(namespace = "search", ttl = "10m", ttl_fn = search_ttl, cache = cache())]
fn search(q: u32) -> Vec<u32> {
    SEARCHES.fetch_add(1, Ordering::SeqCst);
    if q.is_multiple_of(2) {
        vec![q, q + 1]
    } else {
        Vec::new()
    }
}

#[test]
fn ttl_chosen_from_the_result() {
    assert_eq!(search(2), vec![2, 3]);
    assert_eq!(search(3), Vec::<u32>::new());
    assert_eq!(search(2), vec![2, 3]);
    assert_eq!(search(3), Vec::<u32>::new());
    assert_eq!(SEARCHES.load(Ordering::SeqCst), 2);
    let space = KeySpace::new("search", 1).unwrap();
    let other = other_worker();
    assert_eq!(other.get_blocking::<_, Vec<u32>>(&space, &3u32), Some(vec![]));
    std::thread::sleep(Duration::from_millis(450));
    // The empty result expired everywhere; the other did not.
    assert_eq!(other.get_blocking::<_, Vec<u32>>(&space, &3u32), None, "empty result kept past its TTL");
    assert_eq!(other.get_blocking::<_, Vec<u32>>(&space, &2u32), Some(vec![2, 3]));
    assert_eq!(search(3), Vec::<u32>::new());
    assert_eq!(search(2), vec![2, 3]);
    assert_eq!(SEARCHES.load(Ordering::SeqCst), 3, "only the empty result was computed again");
    // A primed value gets the TTL of its kind too.
    search::prime(5, Vec::new());
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(search::peek(5), None);
}

static LOOKUPS: AtomicU32 = AtomicU32::new(0);

#[memoize(namespace = "lookup", ttl = "10m", err_ttl = "300ms", cache = cache())]
fn lookup(id: u32) -> Result<u64, String> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err("no such customer".into())
    } else {
        Ok(u64::from(id) * 10)
    }
}

#[test]
fn errors_cached_for_their_own_ttl() {
    assert_eq!(lookup(0), Err("no such customer".into()));
    assert_eq!(lookup(0), Err("no such customer".into()), "the error is cached");
    assert_eq!(lookup(4), Ok(40));
    assert_eq!(lookup(4), Ok(40));
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 2);
    // The other worker reads the cached error from the file.
    let space = KeySpace::new("lookup", 1).unwrap();
    let other = other_worker();
    assert_eq!(
        other.get_blocking::<_, Result<u64, String>>(&space, &0u32),
        Some(Err("no such customer".into()))
    );
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(other.get_blocking::<_, Result<u64, String>>(&space, &0u32), None, "error kept past err_ttl");
    assert_eq!(other.get_blocking::<_, Result<u64, String>>(&space, &4u32), Some(Ok(40)));
    assert_eq!(lookup(0), Err("no such customer".into()));
    assert_eq!(lookup(4), Ok(40));
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 3, "only the error was computed again");
}

#[test]
fn cache_api_ttl_by() {
    let cache = Cache::builder().local(10).ttl_jitter(0.0).xfetch_beta(0.0).build().unwrap();
    let space = KeySpace::new("ttl_by", 1).unwrap();
    let calls = AtomicU32::new(0);
    let call = |x: u32| match cache.lookup::<_, u32>(&space, &x, Duration::from_secs(600)) {
        larder_cache::Lookup::Hit(v) => v,
        larder_cache::Lookup::Miss(p) => p
            .ttl_by(|v: &u32| if *v == 0 { Duration::from_millis(200) } else { Duration::from_secs(600) })
            .compute_blocking(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                x % 2
            }),
    };
    assert_eq!((call(2), call(3), call(2), call(3)), (0, 1, 0, 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((call(2), call(3)), (0, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "only the zero was recomputed");
}
