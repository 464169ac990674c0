//! Work off the request path (issue 13, items 2 and 3): background refresh — XFetch and
//! stale-while-revalidate — once across real processes on SQLite and Redis, and the soft and
//! hard factory timeouts, for the blocking and the async detached API and `#[memoize]`.
//!
//! Nothing here asserts on elapsed time. Functions block on a [`Gate`] (in-process) or a
//! release file (across processes) that the test opens only after every caller returned, so
//! "no caller waited for the refresh" is an ordering fact, and every count is exact.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::common::{test_path, unix_ms, wait_for_lines};
use larder_cache::{memoize, Cache, CacheStats, FactoryTimeout, KeySecret, KeySpace, Lookup};

const LONG: Duration = Duration::from_secs(600);

fn secret() -> KeySecret {
    KeySecret::from_hex(&"5a".repeat(32)).unwrap()
}

/// A door a computation waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn is_open(&self) -> bool {
        *self.open.lock().unwrap()
    }

    /// Waits until opened (at most a minute: a wedged test fails instead of hanging).
    fn wait(&self) {
        let g = self.open.lock().unwrap();
        let (g, _) = self.cv.wait_timeout_while(g, Duration::from_secs(60), |open| !*open).unwrap();
        assert!(*g, "the gate was never opened");
    }
}

/// Polls `cond` until it holds (at most 30 s); fails the test otherwise.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The error type of the timed functions: a hard timeout converts into it.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    TimedOut(FactoryTimeout),
}

impl From<FactoryTimeout> for Failure {
    fn from(t: FactoryTimeout) -> Self {
        Failure::TimedOut(t)
    }
}

/// A cache on a SQLite file (tier calls bounded generously: on a loaded machine a write must
/// not become a counted failure here; these tests are about counts).
fn sqlite_builder(db: &Path) -> larder_cache::CacheBuilder {
    Cache::builder()
        .secret(&secret())
        .local(100)
        .shared_url(&format!("sqlite:{}", db.display()))
        .ttl_jitter(0.0)
        .op_timeout(TIER_TIMEOUT)
}

/// A second cache on the same file, without a local tier: reads what the shared tier holds
/// without touching the counters of the cache under test.
fn observer(db: &Path) -> Cache {
    Cache::builder()
        .secret(&secret())
        .shared_url(&format!("sqlite:{}", db.display()))
        .op_timeout(TIER_TIMEOUT)
        .build()
        .unwrap()
}

/// Stores `value` with a short TTL and waits (through `observer`) until it has expired.
fn prime_and_expire(cache: &Cache, observer: &Cache, space: &KeySpace, value: u32) {
    cache.set_blocking(space, &1u8, value, Duration::from_millis(150));
    wait_until("the primed entry to expire", || observer.get_blocking::<_, u32>(space, &1u8).is_none());
    // The local tier's coarse monotonic clock may see the expiry a few ms after the wall clock
    // did: drop the local copy, so the next call starts from the expired shared entry.
    cache.clear_local();
}

// ---------------------------------------------------------------------------------------
// Background refresh in one process.

#[test]
fn xfetch_refresh_runs_in_the_background_while_every_caller_gets_the_current_value() {
    // Local tier only, β so large that the first read after a computation claims the refresh.
    let cache = Cache::builder().local(100).xfetch_beta(1e9).build().unwrap();
    let space = KeySpace::new("refresh_local", 1).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let gate = Gate::new();
    let call = |gated: bool| {
        let (calls, gate) = (calls.clone(), gate.clone());
        match cache.lookup::<_, u32>(&space, &1u8, LONG) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => p.compute_blocking_detached(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if gated {
                    gate.wait();
                }
                std::thread::sleep(Duration::from_millis(2)); // δ > 0, so XFetch samples
                n + 1
            }),
        }
    };
    assert_eq!(call(false), 1, "first computation, in the request");
    // 8 threads × 50 calls: the first read claims the refresh, which blocks at the gate; every
    // call still returns the current value.
    let returned: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..8).map(|_| s.spawn(|| (0..50).map(|_| call(true)).collect::<Vec<_>>())).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(returned.len(), 400);
    assert!(returned.iter().all(|&v| v == 1), "a caller got something other than the current value");
    // The refresh starts in the background (perhaps after the last caller returned); with the
    // gate closed no second one can start.
    wait_until("the refresh to start", || calls.load(Ordering::SeqCst) >= 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one refresh started, while 400 calls returned");
    assert_eq!(cache.stats().refreshes_started, 1);
    assert_eq!(cache.stats().refreshes_finished, 0, "the refresh is still at the gate");
    gate.open();
    wait_until("the refresh to finish", || cache.stats().refreshes_finished == 1);
    let st = cache.stats();
    assert_eq!((st.computations, st.early_refreshes), (2, 1), "{st:?}");
    // The refreshed value is served (its own early refresh, if XFetch claims one, runs in the
    // background again).
    assert_eq!(call(false), 2);
}

#[test]
fn stale_while_revalidate_serves_the_expired_value_and_refreshes_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = sqlite_builder(&db).xfetch_beta(0.0).stale_while_revalidate(LONG).build().unwrap();
    let obs = observer(&db);
    let space = KeySpace::new("refresh_swr", 1).unwrap();
    prime_and_expire(&cache, &obs, &space, 1);
    let calls = Arc::new(AtomicU32::new(0));
    let gate = Gate::new();
    let returned: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| {
                            let (calls, gate) = (calls.clone(), gate.clone());
                            match cache.lookup::<_, u32>(&space, &1u8, LONG) {
                                Lookup::Hit(v) => v,
                                Lookup::Miss(p) => p.compute_blocking_detached(move || {
                                    calls.fetch_add(1, Ordering::SeqCst);
                                    gate.wait();
                                    2
                                }),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(returned.len(), 160);
    assert!(returned.iter().all(|&v| v == 1), "every caller got the stale value at once");
    // The refresh starts in the background (perhaps after the last caller returned); with the
    // gate closed no second one can start.
    wait_until("the refresh to start", || calls.load(Ordering::SeqCst) >= 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for 160 calls");
    assert_eq!(cache.stats().refreshes_started, 1);
    gate.open();
    wait_until("the refresh to finish", || cache.stats().refreshes_finished == 1);
    assert_eq!(obs.get_blocking::<_, u32>(&space, &1u8), Some(2), "the refreshed value is shared");
    let st = cache.stats();
    assert_eq!((st.computations, st.refreshes_started), (1, 1), "{st:?}");
    assert!(st.stale_served >= 1, "{st:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Background refresh across real processes.

const ROLE_ENV: &str = "LARDER_REFRESH_TEST_ROLE";
const OLD: u64 = 1;
const NEW: u64 = 2;
const WORKERS: u32 = 4;
const THREADS: u32 = 4;
/// Calls each thread makes after the entry's expiry.
const CALLS_AFTER_EXPIRY: u32 = 25;

/// The tier call bound of the multi-process tests (see `refresh_worker`).
const TIER_TIMEOUT: Duration = Duration::from_secs(5);

fn refresh_space() -> KeySpace {
    KeySpace::new("refresh_procs", 1).unwrap()
}

fn append(file: &Path, line: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(file).unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Waits for `file` to exist (at most a minute).
fn wait_for_file(file: &Path) -> bool {
    let start = Instant::now();
    while !file.exists() {
        if start.elapsed() > Duration::from_secs(60) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

struct Files {
    count: PathBuf,
    done: PathBuf,
    release: PathBuf,
    stats: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Self {
        Files {
            count: dir.join("count.log"),
            done: dir.join("done.log"),
            release: dir.join("release"),
            stats: dir.join("stats.log"),
        }
    }

    fn encode(&self) -> String {
        [&self.count, &self.done, &self.release, &self.stats].map(|p| p.display().to_string()).join("\n")
    }
}

fn role_main_if_requested() {
    let Ok(raw) = std::env::var(ROLE_ENV) else { return };
    let p: Vec<&str> = raw.split('\n').collect();
    let code = match p.as_slice() {
        [spec, count, done, release, stats, expires_at, index] => {
            let files = Files {
                count: count.into(),
                done: done.into(),
                release: release.into(),
                stats: stats.into(),
            };
            refresh_worker(spec, &files, expires_at.parse().unwrap(), index.parse().unwrap())
        }
        _ => {
            eprintln!("unknown role {raw:?}");
            2
        }
    };
    std::process::exit(code);
}

/// One worker process: `THREADS` threads (tasks on a Tokio runtime for worker 0, which uses
/// the async API) call the key until each made `CALLS_AFTER_EXPIRY` calls past its expiry;
/// every call must return the old value at once (the refresh waits for the release file).
/// Then the worker says it is done, waits for the release and for its own refresh (if it
/// runs one) to finish, and writes its counters.
fn refresh_worker(spec: &str, files: &Files, expires_at: u64, index: u32) -> i32 {
    let cache = larder_cache::config::parse(spec)
        .unwrap()
        .ttl_jitter(0.0)
        .xfetch_beta(0.0)
        .stale_while_revalidate(LONG)
        .lease_ttl(Duration::from_secs(60))
        // Under a loaded CI machine a 250 ms tier call can time out, and the refresh's write
        // would fail open (not stored); this test is about counts, not tier latency.
        .op_timeout(TIER_TIMEOUT)
        .build()
        .unwrap();
    let space = refresh_space();
    // Worker 0's runtime lives as long as the worker: a Redis tier's connection tasks may run
    // on it, and this worker's background refresh still writes after its calls are done.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bad = if index == 0 {
        rt.block_on(async {
            let tasks: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (cache, space) = (cache.clone(), space.clone());
                    let (count, release) = (files.count.clone(), files.release.clone());
                    tokio::spawn(async move {
                        let (mut bad, mut after) = (0u32, 0u32);
                        while after < CALLS_AFTER_EXPIRY {
                            let (count, release) = (count.clone(), release.clone());
                            let v = match cache.lookup::<_, u64>(&space, &7u32, LONG) {
                                Lookup::Hit(v) => v,
                                Lookup::Miss(p) => {
                                    p.compute_detached(move || async move {
                                        append(&count, &format!("refresh {}", std::process::id()));
                                        let start = Instant::now();
                                        while !release.exists() && start.elapsed() < Duration::from_secs(60) {
                                            tokio::time::sleep(Duration::from_millis(5)).await;
                                        }
                                        NEW
                                    })
                                    .await
                                }
                            };
                            bad += u32::from(v != OLD);
                            if unix_ms() >= expires_at {
                                after += 1;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        bad
                    })
                })
                .collect();
            let mut bad = 0;
            for t in tasks {
                bad += t.await.unwrap();
            }
            bad
        })
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (cache, space) = (&cache, &space);
                    s.spawn(move || {
                        let (mut bad, mut after) = (0u32, 0u32);
                        while after < CALLS_AFTER_EXPIRY {
                            let (count, release) = (files.count.clone(), files.release.clone());
                            let v = match cache.lookup::<_, u64>(space, &7u32, LONG) {
                                Lookup::Hit(v) => v,
                                Lookup::Miss(p) => p.compute_blocking_detached(move || {
                                    append(&count, &format!("refresh {}", std::process::id()));
                                    wait_for_file(&release);
                                    NEW
                                }),
                            };
                            bad += u32::from(v != OLD);
                            if unix_ms() >= expires_at {
                                after += 1;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        bad
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
        })
    };
    append(&files.done, &format!("done {}", std::process::id()));
    if !wait_for_file(&files.release) {
        return 4;
    }
    let start = Instant::now();
    let st = loop {
        let st = cache.stats();
        if st.refreshes_started == st.refreshes_finished {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return 5;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    append(&files.stats, &format!("{} {} {}", st.refreshes_started, st.computations, st.stale_served));
    eprintln!("refresh worker {index}: {st:?}, {bad} values other than the old one");
    if bad == 0 {
        0
    } else {
        3
    }
}

/// What the processes observed: (refresh computations in the count file, refreshes started
/// by the workers' counters, computations by the counters, stale values served).
fn run_refresh_workers(test_name: &str, spec: &str, prime: &Cache, dir: &Path) -> (usize, u64, u64, u64) {
    let files = Files::in_dir(dir);
    // The old value, with a TTL that ends while the workers are calling (`expires_at` is
    // read after the write, so the entry has expired by then).
    prime.set_blocking(&refresh_space(), &7u32, OLD, Duration::from_millis(1_500));
    let expires_at = unix_ms() + 1_500;
    let mut children: Vec<_> = (0..WORKERS)
        .map(|i| {
            let role = format!("{spec}\n{}\n{expires_at}\n{i}", files.encode());
            Command::new(std::env::current_exe().unwrap())
                .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE_ENV, role)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn worker process")
        })
        .collect();
    // Every caller of every process returned the old value, and the refresh has started.
    assert!(
        wait_for_lines(&files.done, WORKERS as usize, Duration::from_secs(60)),
        "workers did not finish calling"
    );
    assert!(wait_for_lines(&files.count, 1, Duration::from_secs(30)), "no refresh started");
    std::fs::write(&files.release, b"go").unwrap();
    for c in &mut children {
        assert!(c.wait().unwrap().success(), "a worker got a value other than the old one, or failed");
    }
    let refreshes = std::fs::read_to_string(&files.count).unwrap().lines().count();
    let stats = std::fs::read_to_string(&files.stats).unwrap();
    let mut sums = (0u64, 0u64, 0u64);
    for l in stats.lines() {
        let n: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        sums = (sums.0 + n[0], sums.1 + n[1], sums.2 + n[2]);
    }
    assert_eq!(stats.lines().count(), WORKERS as usize);
    (refreshes, sums.0, sums.1, sums.2)
}

fn check_refresh_counts(what: &str, observed: (usize, u64, u64, u64)) {
    eprintln!(
        "{what}: {} refresh computations (count file), {} refreshes started, {} computations, {} stale serves \
         over {WORKERS} processes × {THREADS} callers",
        observed.0, observed.1, observed.2, observed.3
    );
    assert_eq!(observed.0, 1, "{what}: refresh computations across processes");
    assert_eq!((observed.1, observed.2), (1, 1), "{what}: counters of all processes");
    assert!(observed.3 >= u64::from(WORKERS), "{what}: every process served the stale value");
}

#[test]
fn background_refresh_once_across_processes_on_sqlite() {
    role_main_if_requested();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.db");
    let spec = format!("local:1000,sqlite:{}", db.display());
    // The same stale-while-revalidate window as the workers: the entry is kept past its expiry.
    let prime = Cache::builder()
        .shared_url(&format!("sqlite:{}", db.display()))
        .ttl_jitter(0.0)
        .stale_while_revalidate(LONG)
        .op_timeout(TIER_TIMEOUT)
        .build()
        .unwrap();
    let observed = run_refresh_workers(
        &test_path(module_path!(), "background_refresh_once_across_processes_on_sqlite"),
        &spec,
        &prime,
        dir.path(),
    );
    check_refresh_counts("sqlite", observed);
    assert_eq!(
        prime.get_blocking::<_, u64>(&refresh_space(), &7u32),
        Some(NEW),
        "the refreshed value is shared"
    );
}

#[cfg(feature = "redis")]
#[test]
fn background_refresh_once_across_processes_on_redis() {
    role_main_if_requested();
    let server = larder_testkit::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let base = server.url();
    let url = format!("{base}{}secret={}", if base.contains('?') { '&' } else { '?' }, "5a".repeat(32));
    let spec = format!("local:1000,{url}");
    let prime = Cache::builder()
        .shared_url(&url)
        .ttl_jitter(0.0)
        .stale_while_revalidate(LONG)
        .op_timeout(TIER_TIMEOUT)
        .build()
        .unwrap();
    let observed = run_refresh_workers(
        &test_path(module_path!(), "background_refresh_once_across_processes_on_redis"),
        &spec,
        &prime,
        dir.path(),
    );
    check_refresh_counts("redis", observed);
    assert_eq!(
        prime.get_blocking::<_, u64>(&refresh_space(), &7u32),
        Some(NEW),
        "the refreshed value is shared"
    );
}

// ---------------------------------------------------------------------------------------
// Factory timeouts.

/// Soft timeout with a fail-safe value: the caller gets the stale value, the computation
/// ends later and stores its value, the next call hits it; one computation in all. Returns
/// the cache's counters at the end.
fn soft_timeout_with_stale_blocking(db: &Path) -> CacheStats {
    let cache = sqlite_builder(db).fail_safe(LONG).soft_timeout(Duration::from_millis(30)).build().unwrap();
    let obs = observer(db);
    let space = KeySpace::new("soft_stale", 1).unwrap();
    prime_and_expire(&cache, &obs, &space, 1);
    let (calls, gate) = (Arc::new(AtomicU32::new(0)), Gate::new());
    let (c, g) = (calls.clone(), gate.clone());
    let r: Result<u32, Failure> = match cache.lookup::<_, u32>(&space, &1u8, LONG) {
        Lookup::Hit(_) => panic!("expired entry hit"),
        Lookup::Miss(p) => p.try_compute_blocking_detached(move || {
            c.fetch_add(1, Ordering::SeqCst);
            g.wait();
            Ok(2)
        }),
    };
    assert_eq!(r, Ok(1), "the stale value, after the soft timeout");
    let st = cache.stats();
    assert_eq!(
        (st.stale_served_by_timeout, st.computations),
        (1, 0),
        "returned before the computation ended"
    );
    gate.open();
    wait_until("the computation to land", || cache.stats().refreshes_finished == 1);
    assert_eq!(obs.get_blocking::<_, u32>(&space, &1u8), Some(2), "stored in the shared tier");
    let next: Result<u32, Failure> = cache.try_get_or_compute_blocking(&space, &1u8, LONG, || Ok(99));
    assert_eq!(next, Ok(2), "the next call hits the new value");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one computation in all");
    cache.stats()
}

async fn soft_timeout_with_stale_async(db: PathBuf) -> CacheStats {
    let cache = sqlite_builder(&db).fail_safe(LONG).soft_timeout(Duration::from_millis(30)).build().unwrap();
    let obs = observer(&db);
    let space = KeySpace::new("soft_stale", 1).unwrap();
    {
        let (cache, obs, space) = (cache.clone(), obs.clone(), space.clone());
        larder_cache::spawn_blocking(move || prime_and_expire(&cache, &obs, &space, 1)).await.unwrap();
    }
    let (calls, gate) = (Arc::new(AtomicU32::new(0)), Gate::new());
    let (c, g) = (calls.clone(), gate.clone());
    let r: Result<u32, Failure> = match cache.lookup::<_, u32>(&space, &1u8, LONG) {
        Lookup::Hit(_) => panic!("expired entry hit"),
        Lookup::Miss(p) => {
            p.try_compute_detached(move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                // Waits without blocking a runtime thread.
                while !g.is_open() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(2)
            })
            .await
        }
    };
    assert_eq!(r, Ok(1), "the stale value, after the soft timeout");
    let st = cache.stats();
    assert_eq!(
        (st.stale_served_by_timeout, st.computations),
        (1, 0),
        "returned before the computation ended"
    );
    gate.open();
    let start = Instant::now();
    while cache.stats().refreshes_finished != 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "the computation never landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(obs.get::<_, u32>(&space, &1u8).await, Some(2), "stored in the shared tier");
    let next: Result<u32, Failure> = cache.try_get_or_compute(&space, &1u8, LONG, || async { Ok(99) }).await;
    assert_eq!(next, Ok(2), "the next call hits the new value");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one computation in all");
    cache.stats()
}

#[test]
fn soft_timeout_with_stale_serves_it_and_the_same_counters_sync_and_async() {
    let dir = tempfile::tempdir().unwrap();
    let sync = soft_timeout_with_stale_blocking(&dir.path().join("sync.db"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let asynch = rt.block_on(soft_timeout_with_stale_async(dir.path().join("async.db")));
    eprintln!("soft timeout with stale: {sync:?}");
    assert_eq!(
        (sync.computations, sync.stale_served_by_timeout, sync.refreshes_started, sync.refreshes_finished),
        (1, 1, 1, 1)
    );
    assert_eq!(sync, asynch, "the blocking and the async API count the same events");
}

#[test]
fn soft_timeout_without_stale_waits_for_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = sqlite_builder(&db).soft_timeout(Duration::from_millis(10)).build().unwrap();
    let space = KeySpace::new("soft_nostale", 1).unwrap();
    let (calls, started, gate) = (Arc::new(AtomicU32::new(0)), Gate::new(), Gate::new());
    let caller = {
        let (cache, space) = (cache.clone(), space.clone());
        let (c, st, g) = (calls.clone(), started.clone(), gate.clone());
        std::thread::spawn(move || -> Result<u32, Failure> {
            match cache.lookup::<_, u32>(&space, &1u8, LONG) {
                Lookup::Hit(_) => panic!("nothing cached yet"),
                Lookup::Miss(p) => p.try_compute_blocking_detached(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                    st.open();
                    g.wait();
                    Ok(5)
                }),
            }
        })
    };
    started.wait();
    // Give the soft timeout ample time to pass; with nothing stale to serve, the caller must
    // still be waiting (an ordering fact: the gate is closed, so no value can exist yet).
    std::thread::sleep(Duration::from_millis(200));
    assert!(!caller.is_finished(), "returned without a value to return");
    gate.open();
    assert_eq!(caller.join().unwrap(), Ok(5));
    let st = cache.stats();
    assert_eq!((st.computations, st.stale_served_by_timeout, st.hard_timeouts), (1, 0, 0), "{st:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn hard_timeout_is_a_typed_error_releases_the_lease_and_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let hard = Duration::from_millis(200);
    let cache = sqlite_builder(&db)
        .soft_timeout(Duration::from_millis(20))
        .hard_timeout(hard)
        .lease_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let obs = observer(&db);
    let space = KeySpace::new("hard_timeout", 1).unwrap();
    let (calls, ended, gate) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)), Gate::new());
    let call = |gated: bool, value: u32| -> Result<u32, Failure> {
        let (c, e, g) = (calls.clone(), ended.clone(), gate.clone());
        match cache.lookup::<_, u32>(&space, &1u8, LONG) {
            Lookup::Hit(v) => Ok(v),
            Lookup::Miss(p) => p.try_compute_blocking_detached(move || {
                c.fetch_add(1, Ordering::SeqCst);
                if gated {
                    g.wait();
                }
                e.fetch_add(1, Ordering::SeqCst);
                Ok(value)
            }),
        }
    };
    let r = call(true, 5);
    let t = match &r {
        Err(Failure::TimedOut(t)) => t.clone(),
        other => panic!("expected the hard timeout, got {other:?}"),
    };
    assert_eq!((t.namespace(), t.after()), ("hard_timeout", hard));
    assert!(t.to_string().contains("hard timeout"), "{t}");
    let st = cache.stats();
    assert_eq!((st.hard_timeouts, st.computations), (1, 0), "{st:?}");
    assert_eq!(obs.get_blocking::<_, u32>(&space, &1u8), None, "nothing cached");
    assert_eq!(cache.local_len(), 0, "nothing cached locally");
    // The next call computes again at once: the lease was released (a 60 s lease left held
    // would make it wait, counted as a lease wait).
    assert_eq!(call(false, 6), Ok(6));
    let st = cache.stats();
    assert_eq!((st.computations, st.lease_waits, st.hard_timeouts), (1, 0, 1), "{st:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the next call recomputed");
    // The abandoned computation ends; its value is dropped, not stored (nothing awaits it).
    gate.open();
    wait_until("the abandoned computation to end", || ended.load(Ordering::SeqCst) == 2);
    assert_eq!(call(false, 7), Ok(6));
    assert_eq!(obs.get_blocking::<_, u32>(&space, &1u8), Some(6));
    assert_eq!(cache.stats().computations, 1, "the abandoned run was not settled");
}

/// Drops tell whether an async computation was cancelled.
struct DropCount(Arc<AtomicU32>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_hard_timeout_cancels_the_computation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = sqlite_builder(&db).build().unwrap();
    let space = KeySpace::new("hard_timeout_async", 1).unwrap();
    let (calls, dropped) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (c, d) = (calls.clone(), dropped.clone());
    // Per call: the cache has no timeouts.
    let r: Result<u32, Failure> = match cache.lookup::<_, u32>(&space, &1u8, LONG) {
        Lookup::Hit(_) => panic!("nothing cached yet"),
        Lookup::Miss(p) => {
            p.hard_timeout(Duration::from_millis(100))
                .try_compute_detached(move || async move {
                    let _guard = DropCount(d);
                    c.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok(5)
                })
                .await
        }
    };
    assert!(matches!(r, Err(Failure::TimedOut(_))), "{r:?}");
    let start = Instant::now();
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the timed-out computation was not cancelled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let next: Result<u32, Failure> = cache.try_get_or_compute(&space, &1u8, LONG, || async { Ok(6) }).await;
    assert_eq!(next, Ok(6), "the next call recomputes");
    assert_eq!(cache.stats().hard_timeouts, 1);
}

#[test]
fn timeouts_from_the_cache_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = Cache::from_url(&format!(
        "local:10,sqlite:{}?secret={}&soft_timeout=10ms&hard_timeout=150ms",
        db.display(),
        "5a".repeat(32)
    ))
    .unwrap();
    let space = KeySpace::new("url_timeouts", 1).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let r: Result<u32, Failure> = match cache.lookup::<_, u32>(&space, &1u8, LONG) {
        Lookup::Hit(_) => panic!("nothing cached yet"),
        Lookup::Miss(p) => p.try_compute_blocking_detached(move || {
            g.wait();
            Ok(1)
        }),
    };
    assert!(matches!(r, Err(Failure::TimedOut(ref t)) if t.after() == Duration::from_millis(150)), "{r:?}");
    gate.open();
    // Per call, `Duration::MAX` switches the cache's hard timeout off.
    let r: Result<u32, Failure> = match cache.lookup::<_, u32>(&space, &1u8, LONG) {
        Lookup::Hit(_) => panic!("nothing cached yet"),
        Lookup::Miss(p) => p.hard_timeout(Duration::MAX).try_compute_blocking_detached(|| Ok(2)),
    };
    assert_eq!(r, Ok(2));
    assert_eq!(cache.stats().hard_timeouts, 1);
}

// ---------------------------------------------------------------------------------------
// `#[memoize]` attribute arguments.

static MEMO_CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().local(100).build().unwrap());
static MEMO_GATE: LazyLock<Arc<Gate>> = LazyLock::new(Gate::new);
static MEMO_CALLS: AtomicU32 = AtomicU32::new(0);

#[memoize(cache = &*MEMO_CACHE, namespace = "memo_hard", soft_timeout = "10ms", hard_timeout = "150ms")]
fn slow_square(x: u32) -> Result<u64, Failure> {
    MEMO_CALLS.fetch_add(1, Ordering::SeqCst);
    if x == 3 {
        MEMO_GATE.wait();
    }
    Ok(u64::from(x) * u64::from(x))
}

static ASYNC_MEMO_CALLS: AtomicU32 = AtomicU32::new(0);

#[memoize(cache = &*MEMO_CACHE, namespace = "memo_hard_async", hard_timeout = "100ms")]
async fn slow_cube(x: u32) -> Result<u64, Failure> {
    ASYNC_MEMO_CALLS.fetch_add(1, Ordering::SeqCst);
    if x == 3 {
        std::future::pending::<()>().await;
    }
    Ok(u64::from(x).pow(3))
}

#[memoize(cache = &*MEMO_CACHE, namespace = "memo_detach", detach)]
fn detached_double(x: u32) -> u64 {
    u64::from(x) * 2
}

#[test]
fn memoize_hard_timeout_from_attribute_arguments() {
    let before = MEMO_CALLS.load(Ordering::SeqCst);
    assert_eq!(slow_square(4), Ok(16));
    assert_eq!(slow_square(4), Ok(16));
    assert_eq!(MEMO_CALLS.load(Ordering::SeqCst) - before, 1);
    let r = slow_square(3);
    assert!(matches!(r, Err(Failure::TimedOut(ref t)) if t.after() == Duration::from_millis(150)), "{r:?}");
    MEMO_GATE.open();
    // Not cached: the next call computes again (the gate is open now).
    assert_eq!(slow_square(3), Ok(9));
    assert_eq!(MEMO_CALLS.load(Ordering::SeqCst) - before, 3);
    assert_eq!(detached_double(21), 42);
    assert_eq!(detached_double(21), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoize_async_hard_timeout_from_attribute_arguments() {
    let before = ASYNC_MEMO_CALLS.load(Ordering::SeqCst);
    assert_eq!(slow_cube(2).await, Ok(8));
    assert_eq!(slow_cube(2).await, Ok(8));
    let r = slow_cube(3).await;
    assert!(matches!(r, Err(Failure::TimedOut(_))), "{r:?}");
    let r = slow_cube(3).await;
    assert!(matches!(r, Err(Failure::TimedOut(_))), "not cached: timed out again");
    assert_eq!(ASYNC_MEMO_CALLS.load(Ordering::SeqCst) - before, 3);
}

// ---------------------------------------------------------------------------------------
// The new events reach `metrics` as well as `Cache::stats`.

#[test]
fn refresh_and_timeout_events_reach_the_recorder() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the cache is built: build it under the recorder.
    let cache = metrics::with_local_recorder(&recorder, || {
        Cache::builder().local(100).xfetch_beta(1e9).hard_timeout(Duration::from_millis(100)).build()
    })
    .unwrap();
    let space = KeySpace::new("refresh_metrics", 1).unwrap();
    let call = |key: u8, gate: Option<Arc<Gate>>| -> Result<u32, Failure> {
        match cache.lookup::<_, u32>(&space, &key, LONG) {
            Lookup::Hit(v) => Ok(v),
            Lookup::Miss(p) => p.try_compute_blocking_detached(move || {
                if let Some(g) = gate {
                    g.wait();
                }
                std::thread::sleep(Duration::from_millis(2)); // δ > 0, so XFetch samples
                Ok(u32::from(key))
            }),
        }
    };
    // Per-namespace handles are registered when the namespace is first counted, on the
    // calling thread: call under the recorder too.
    metrics::with_local_recorder(&recorder, || {
        assert_eq!(call(1, None), Ok(1));
        assert_eq!(call(1, None), Ok(1), "the current value, refreshed in the background");
        wait_until("the refresh to finish", || cache.stats().refreshes_finished == 1);
        let gate = Gate::new();
        assert!(matches!(call(2, Some(gate.clone())), Err(Failure::TimedOut(_))));
        gate.open();
    });
    let snap = snapshotter.snapshot().into_vec();
    let counter = |name: &str| {
        snap.iter()
            .find(|(ck, ..)| ck.key().name() == name)
            .map(|(.., v)| v)
            .unwrap_or_else(|| panic!("{name} not registered"))
    };
    assert_eq!(counter("larder_cache_refreshes_started_total"), &DebugValue::Counter(1));
    assert_eq!(counter("larder_cache_refreshes_finished_total"), &DebugValue::Counter(1));
    assert_eq!(counter("larder_cache_hard_timeouts_total"), &DebugValue::Counter(1));
    assert_eq!(counter("larder_cache_stale_served_by_timeout_total"), &DebugValue::Counter(0));
    assert_eq!(counter("larder_cache_computations_total"), &DebugValue::Counter(2));
    let st = cache.stats();
    assert_eq!(
        (st.refreshes_started, st.refreshes_finished, st.hard_timeouts, st.computations),
        (1, 1, 1, 2)
    );
}
