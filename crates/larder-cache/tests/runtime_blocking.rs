//! A sync `#[memoize]` function called from async code blocks a Tokio runtime thread while it
//! waits for another caller: detected, counted and warned about once; through
//! `larder_cache::spawn_blocking` it is not. Its own binary: the count is process-wide.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use larder_cache::{memoize, Cache};

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().local(100).build().unwrap());
static RUNS: AtomicU32 = AtomicU32::new(0);

#[memoize(cache = &*CACHE, namespace = "slow_sync", ttl = "1m")]
fn slow(x: u32) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    x + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_memoized_fn_waiting_on_a_runtime_thread_is_detected() {
    // The right way: on the blocking pool, marked. 3 concurrent callers, one computes, the
    // other two wait — on blocking threads: nothing counted.
    let handles: Vec<_> = (0..3).map(|_| larder_cache::spawn_blocking(|| slow(1))).collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), 2);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(larder_cache::blocking_calls_on_runtime(), 0, "waiting on blocking-pool threads is fine");

    // The mistake: called straight from tasks on runtime workers. The waiters block workers.
    let tasks: Vec<_> = (0..3).map(|_| tokio::spawn(async { slow(2) })).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 3);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    let n = larder_cache::blocking_calls_on_runtime();
    assert!((1..=2).contains(&n), "2 waiters blocked runtime workers (1 if one came late and hit): {n}");

    // A local hit does not wait: not counted.
    assert_eq!(slow(2), 3);
    assert_eq!(larder_cache::blocking_calls_on_runtime(), n);
}
