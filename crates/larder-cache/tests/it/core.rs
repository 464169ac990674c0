//! The cache core against real tiers: corrupt and forged entries, fail-open and the breaker,
//! single-flight, cancellation, XFetch, fail-safe, size limits, invalidation, get/set.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use larder_cache::frame::{self, FrameMeta, MacKey};
use larder_cache::{Cache, KeySecret, KeySpace};

fn secret() -> KeySecret {
    KeySecret::from_hex(&"5a".repeat(32)).unwrap()
}

fn sqlite_cache(path: &std::path::Path, local: bool) -> Cache {
    let mut b = Cache::builder().secret(&secret()).shared_url(&format!("sqlite:{}", path.display()));
    if local {
        b = b.local(1000);
    }
    b.build().unwrap()
}

fn write_raw(path: &std::path::Path, key: &str, bytes: &[u8]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "INSERT INTO larder_entries (key, frame, expires_ms, written_ms, size) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(key) DO UPDATE SET frame = excluded.frame",
        rusqlite::params![key, bytes, i64::MAX, 0i64, bytes.len() as i64],
    )
    .unwrap();
}

fn read_raw(path: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT frame FROM larder_entries WHERE key = ?1", [key], |r| r.get(0)).ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn garbage_and_forged_entries_in_sqlite_are_counted_misses() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = sqlite_cache(&db, false);
    let space = KeySpace::new("forgery", 1).unwrap();
    let ttl = Duration::from_secs(60);
    let calls = AtomicU32::new(0);
    let compute = |v: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        v
    };

    // 1. Garbage bytes under the real key text.
    let key1 = space.key(&1u32).unwrap();
    write_raw(&db, key1.as_str(), b"\x00\xffnot a frame at all");
    assert_eq!(cache.get_or_compute_blocking(&space, &1u32, ttl, || compute(10)), 10);
    assert_eq!(cache.stats().corrupt_entries, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // 2. A well-formed frame with the wrong MAC (another secret): a forged value.
    let key2 = space.key(&2u32).unwrap();
    let forger = MacKey::from_secret(&KeySecret::from_hex(&"66".repeat(32)).unwrap());
    let meta = FrameMeta { written_ms: now_ms(), ttl_ms: 600_000, delta_ms: 0 };
    let forged =
        frame::seal(&forger, key2.as_str(), meta, &postcard::to_allocvec(&999_999u64).unwrap()).unwrap();
    write_raw(&db, key2.as_str(), &forged);
    assert_eq!(cache.get_or_compute_blocking(&space, &2u32, ttl, || compute(20)), 20);
    assert_eq!(cache.stats().corrupt_entries, 2);

    // 3. A genuine entry copied under another key: the MAC binds the key text.
    let genuine = read_raw(&db, key1.as_str()).expect("value 1 stored by the cache");
    let key3 = space.key(&3u32).unwrap();
    write_raw(&db, key3.as_str(), &genuine);
    assert_eq!(cache.get_or_compute_blocking(&space, &3u32, ttl, || compute(30)), 30);
    assert_eq!(cache.stats().corrupt_entries, 3);

    // 4. An old frame version.
    let mut old = read_raw(&db, key1.as_str()).unwrap();
    old[2] = 0;
    let key4 = space.key(&4u32).unwrap();
    write_raw(&db, key4.as_str(), &old);
    assert_eq!(cache.get_or_compute_blocking(&space, &4u32, ttl, || compute(40)), 40);
    assert_eq!(cache.stats().corrupt_entries, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // The entries the cache wrote itself are read back by another "process" (another cache
    // on the same file and secret), without computing.
    let other = sqlite_cache(&db, false);
    for (i, v) in [(1u32, 10u64), (2, 20), (3, 30), (4, 40)] {
        assert_eq!(other.get_or_compute_blocking(&space, &i, ttl, || compute(0)), v);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(other.stats().shared_hits, 4);
    assert_eq!(other.stats().corrupt_entries, 0);

    // A cache with another secret refuses them all (and counts them).
    let stranger = Cache::builder()
        .secret(&KeySecret::from_hex(&"77".repeat(32)).unwrap())
        .shared_url(&format!("sqlite:{}", db.display()))
        .build()
        .unwrap();
    assert_eq!(stranger.get_or_compute_blocking(&space, &1u32, ttl, || compute(11)), 11);
    assert_eq!(stranger.stats().corrupt_entries, 1);
}

#[test]
fn a_locked_shared_tier_fails_open_and_the_breaker_stops_calling_it() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = Cache::builder()
        .secret(&secret())
        .shared_url(&format!("sqlite:{}", db.display()))
        .op_timeout(Duration::from_millis(100))
        .breaker(3, Duration::from_millis(300))
        .build()
        .unwrap();
    let space = KeySpace::new("outage", 1).unwrap();
    assert_eq!(cache.get_or_compute_blocking(&space, &0u32, Duration::from_secs(60), || 1u32), 1);
    // Another process-like connection takes the write lock and keeps it: every lease and
    // write of the cache now waits for its timeout.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let calls = AtomicU32::new(0);
    let start = std::time::Instant::now();
    for i in 1..=20u32 {
        let v = cache.get_or_compute_blocking(&space, &i, Duration::from_secs(60), || {
            calls.fetch_add(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(v, i * 2, "still answering by computing");
    }
    let took = start.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    let st = cache.stats();
    assert!(st.store_errors >= 3, "{st:?}");
    assert!(st.breaker_skips > 0, "the breaker skipped the locked tier: {st:?}");
    assert!(cache.breaker_open());
    // Without the breaker, 20 calls × (lease + write) would wait 4 s on timeouts.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Unlock: after the cool-down a probe closes the breaker and the tier is used again.
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    std::thread::sleep(Duration::from_millis(350));
    for i in 100..103u32 {
        let _ = cache.get_or_compute_blocking(&space, &i, Duration::from_secs(60), || 7u32);
    }
    assert!(!cache.breaker_open(), "breaker closed after the tier answered again");
    assert!(read_raw(&db, space.key(&102u32).unwrap().as_str()).is_some(), "writes reach the tier again");
}

#[test]
fn concurrent_blocking_misses_compute_once() {
    let _timed = crate::common::timed();
    let cache = Cache::builder().local(100).build().unwrap();
    let space = KeySpace::new("flight", 1).unwrap();
    let calls = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                let v = cache.get_or_compute_blocking(&space, &"k", Duration::from_secs(60), || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    42u32
                });
                assert_eq!(v, 42);
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.stats().coalesced >= 1);
}

#[test]
fn concurrent_errors_are_shared_not_cached() {
    let _timed = crate::common::timed();
    let cache = Cache::builder().local(100).build().unwrap();
    let space = KeySpace::new("flight_err", 1).unwrap();
    let calls = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let r: Result<u32, String> =
                    cache.try_get_or_compute_blocking(&space, &"k", Duration::from_secs(60), || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Err("down".into())
                    });
                assert_eq!(r, Err("down".to_string()));
            });
        }
    });
    assert!(calls.load(Ordering::SeqCst) <= 2, "waiters share the error: {}", calls.load(Ordering::SeqCst));
    let r: Result<u32, String> =
        cache.try_get_or_compute_blocking(&space, &"k", Duration::from_secs(60), || Ok(5));
    assert_eq!(r, Ok(5), "the error was not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_wedge_waiters() {
    let _timed = crate::common::timed();
    let cache = Cache::builder().local(100).build().unwrap();
    let space = KeySpace::new("cancel", 1).unwrap();
    let c2 = cache.clone();
    let s2 = space.clone();
    let leader = tokio::spawn(async move {
        c2.get_or_compute(&s2, &1u8, Duration::from_secs(60), || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            1u32
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c3 = cache.clone();
    let s3 = space.clone();
    let waiter = tokio::spawn(async move {
        c3.get_or_compute(&s3, &1u8, Duration::from_secs(60), || async { 2u32 }).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let v = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("waiter wedged").unwrap();
    assert_eq!(v, 2, "the waiter took over");
}

#[test]
fn ttl_expiry_recomputes() {
    let _timed = crate::common::timed();
    let cache = Cache::builder().local(100).ttl_jitter(0.0).build().unwrap();
    let space = KeySpace::new("ttl", 1).unwrap();
    let calls = AtomicU32::new(0);
    let get = || {
        cache.get_or_compute_blocking(&space, &1u8, Duration::from_millis(80), || {
            calls.fetch_add(1, Ordering::SeqCst)
        })
    };
    assert_eq!(get(), 0);
    assert_eq!(get(), 0);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(get(), 1);
}

#[test]
fn xfetch_refreshes_a_hot_key_before_it_expires() {
    let _timed = crate::common::timed();
    let space = KeySpace::new("xfetch", 1).unwrap();
    // δ = 50 ms against a 10 s TTL: with β = 10^6 the early-refresh gap is far beyond the TTL,
    // so the next read refreshes (probability of not doing so: about 10^-5).
    let eager = Cache::builder().local(100).xfetch_beta(1e6).build().unwrap();
    let calls = AtomicU32::new(0);
    let get = |c: &Cache| {
        c.get_or_compute_blocking(&space, &1u8, Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(50));
            calls.fetch_add(1, Ordering::SeqCst)
        })
    };
    assert_eq!(get(&eager), 0);
    assert_eq!(get(&eager), 1, "the second read refreshed the entry before its expiry");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed early");
    assert_eq!(eager.stats().early_refreshes, 1);
    // β = 0 disables it.
    let calm = Cache::builder().local(100).xfetch_beta(0.0).build().unwrap();
    calls.store(0, Ordering::SeqCst);
    for _ in 0..5 {
        get(&calm);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(calm.stats().early_refreshes, 0);
}

#[test]
fn xfetch_on_the_shared_tier() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let space = KeySpace::new("xfetch_shared", 1).unwrap();
    let writer = sqlite_cache(&db, false);
    writer.get_or_compute_blocking(&space, &1u8, Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(50));
        1u32
    });
    let reader = Cache::builder()
        .secret(&secret())
        .shared_url(&format!("sqlite:{}", db.display()))
        .xfetch_beta(1e6)
        .build()
        .unwrap();
    let v = reader.get_or_compute_blocking(&space, &1u8, Duration::from_secs(10), || 2u32);
    assert_eq!(v, 2, "recomputed early by this reader");
    assert_eq!(reader.stats().early_refreshes, 1);
}

#[test]
fn fail_safe_serves_the_last_value_when_the_function_fails() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = Cache::builder()
        .secret(&secret())
        .shared_url(&format!("sqlite:{}", db.display()))
        .ttl_jitter(0.0)
        .fail_safe(Duration::from_secs(60))
        .build()
        .unwrap();
    let space = KeySpace::new("failsafe", 1).unwrap();
    let ttl = Duration::from_millis(50);
    let r: Result<u32, String> = cache.try_get_or_compute_blocking(&space, &1u8, ttl, || Ok(7));
    assert_eq!(r, Ok(7));
    std::thread::sleep(Duration::from_millis(100));
    let r: Result<u32, String> = cache.try_get_or_compute_blocking(&space, &1u8, ttl, || Err("down".into()));
    assert_eq!(r, Ok(7), "stale value served");
    assert_eq!(cache.stats().fail_safe_served, 1);
    // Without fail-safe, the error comes through.
    let strict = sqlite_cache(&db, false);
    let r: Result<u32, String> = strict.try_get_or_compute_blocking(&space, &2u8, ttl, || Ok(1));
    assert_eq!(r, Ok(1));
    std::thread::sleep(Duration::from_millis(100));
    let r: Result<u32, String> = strict.try_get_or_compute_blocking(&space, &2u8, ttl, || Err("down".into()));
    assert_eq!(r, Err("down".into()));
}

#[test]
fn oversize_values_are_returned_but_not_stored() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = Cache::builder()
        .local(100)
        .secret(&secret())
        .shared_url(&format!("sqlite:{}", db.display()))
        .max_value_bytes(64)
        .build()
        .unwrap();
    let space = KeySpace::new("big", 1).unwrap();
    let calls = AtomicU32::new(0);
    for _ in 0..3 {
        let v = cache.get_or_compute_blocking(&space, &1u8, Duration::from_secs(60), || {
            calls.fetch_add(1, Ordering::SeqCst);
            vec![7u8; 1000]
        });
        assert_eq!(v.len(), 1000);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().oversize_values, 3);
    assert!(read_raw(&db, space.key(&1u8).unwrap().as_str()).is_none());
}

#[test]
fn set_get_invalidate_across_caches_on_one_file() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let a = sqlite_cache(&db, true);
    let b = sqlite_cache(&db, true);
    let space = KeySpace::new("manual", 1).unwrap();
    let ttl = Duration::from_secs(60);
    assert_eq!(a.get_blocking::<_, String>(&space, &"k"), None);
    a.set_blocking(&space, &"k", "v1".to_string(), ttl);
    assert_eq!(b.get_blocking::<_, String>(&space, &"k"), Some("v1".to_string()));
    a.invalidate_blocking(&space, &"k");
    assert_eq!(a.get_blocking::<_, String>(&space, &"k"), None);
    // b's local copy survives until its cap (SQLite has no backplane); its shared tier is clean.
    b.clear_local();
    assert_eq!(b.get_blocking::<_, String>(&space, &"k"), None);
    // A version bump is a new namespace: nothing from v1 is visible.
    let v2 = KeySpace::new("manual", 2).unwrap();
    a.set_blocking(&space, &"j", 1u32, ttl);
    assert_eq!(a.get_blocking::<_, u32>(&v2, &"j"), None);
}

#[test]
fn nan_keys_compute_without_caching() {
    let _timed = crate::common::timed();
    let cache = Cache::builder().local(100).build().unwrap();
    let space = KeySpace::new("nan", 1).unwrap();
    let calls = AtomicU32::new(0);
    for _ in 0..2 {
        cache.get_or_compute_blocking(&space, &f64::NAN, Duration::from_secs(60), || {
            calls.fetch_add(1, Ordering::SeqCst)
        });
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_against_sqlite_single_flights_many_tasks() {
    let _timed = crate::common::timed();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(sqlite_cache(&dir.path().join("c.db"), true));
    let space = KeySpace::new("async_sqlite", 1).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let (cache, space, calls) = (cache.clone(), space.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let key = i % 4;
            cache
                .get_or_compute(&space, &key, Duration::from_secs(60), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    key * 10
                })
                .await
                == key * 10
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_api_works_inside_a_runtime() {
    let _timed = crate::common::timed();
    // A sync memoized function called from async code: tier calls must not try to start a
    // runtime inside this one (they run on a helper thread instead).
    let dir = tempfile::tempdir().unwrap();
    let cache = sqlite_cache(&dir.path().join("c.db"), true);
    let space = KeySpace::new("nested", 1).unwrap();
    let calls = AtomicU32::new(0);
    for _ in 0..3 {
        let v = cache.get_or_compute_blocking(&space, &9u8, Duration::from_secs(60), || {
            calls.fetch_add(1, Ordering::SeqCst);
            81u32
        });
        assert_eq!(v, 81);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache.invalidate_blocking(&space, &9u8);
    assert_eq!(cache.get_blocking::<_, u32>(&space, &9u8), None);
    assert_eq!(cache.stats().shared_writes, 1);
}
