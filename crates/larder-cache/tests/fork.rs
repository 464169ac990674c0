//! Real forks (issue 9): a parent builds and warms a memo cache (its runtime thread, tier
//! connections and local tier exist), then forks 8 children that call memoized functions
//! through the inherited `Cache`. In every child the cache must keep working (the parent's
//! runtime has no threads there and its connections belong to the parent), values must be
//! right, inputs the parent computed must not be computed again, and every new input must be
//! computed exactly once across all children (the shared tier's leases).
//!
//! The same for tags (module [`tags`]): a child's `invalidate_tag` reaches its siblings and the
//! parent.
//!
//! Its own binary: a `fork()` in a process whose other test threads hold locks would hand the
//! children locks nobody can release.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_cache::Cache;
use larder_key::{KeySecret, KeySpace};
use larder_testkit::redis::RedisServer;

const CHILDREN: usize = 8;
const WARM: u64 = 10;
const INPUTS: u64 = 40;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("larder-cache-fork-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// The memoized function: 20 ms of "work", one line appended per computation (O_APPEND
/// writes of one short line are atomic across processes).
fn quote(log: &Path, x: u64) -> u64 {
    let mut f = OpenOptions::new().create(true).append(true).open(log).unwrap();
    // One write(2) per line: `writeln!` on a File may issue several, which other processes'
    // lines can interleave with.
    f.write_all(format!("{x} {}\n", std::process::id()).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    x * 1_000 + 7
}

fn call(cache: &Cache, space: &KeySpace, log: &Path, x: u64) -> u64 {
    cache.get_or_compute_blocking(space, &x, Duration::from_secs(600), || quote(log, x))
}

fn computations(log: &Path) -> Vec<u64> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut v: Vec<u64> = text.lines().map(|l| l.split(' ').next().unwrap().parse().unwrap()).collect();
    v.sort_unstable();
    v
}

/// Tests of this binary run one at a time: a fork copies only the forking thread, so another
/// test's thread inside larder at that moment could leave a lock held in the child (true of
/// any threaded program; a prefork server forks before it serves).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn scenario(cache: Cache, dir: &Path) {
    let space = KeySpace::new("fork_quote", 1).unwrap();
    let log = dir.join("computations");
    // Warm the parent: inputs 0..WARM computed and stored in both tiers.
    for x in 0..WARM {
        assert_eq!(call(&cache, &space, &log, x), x * 1_000 + 7);
    }
    assert_eq!(computations(&log).len() as u64, WARM);
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            let cache = cache.clone();
            let space = space.clone();
            let log = log.clone();
            larder_forktest::fork(move || {
                // Every child walks all inputs three times, starting at a different place so
                // that children race for the same new inputs.
                for round in 0..3 {
                    for k in 0..INPUTS {
                        let x = (k + (i as u64) * 5 + round) % INPUTS;
                        let got = call(&cache, &space, &log, x);
                        if got != x * 1_000 + 7 {
                            eprintln!("child {i}: input {x} gave {got}");
                            return 1;
                        }
                    }
                }
                0
            })
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        assert_eq!(c.wait_timeout(Duration::from_secs(120)), 0, "child {i} failed or hung");
    }
    let comps = computations(&log);
    eprintln!(
        "{} computations for {INPUTS} inputs ({WARM} warmed by the parent) across {CHILDREN} forked children",
        comps.len()
    );
    let expected: Vec<u64> = (0..INPUTS).collect();
    assert_eq!(comps, expected, "every input computed exactly once across parent and children");
    // The parent still works after its children came and went.
    assert_eq!(call(&cache, &space, &log, 3), 3_007);
    assert_eq!(call(&cache, &space, &log, INPUTS + 1), (INPUTS + 1) * 1_000 + 7);
}

fn secret() -> KeySecret {
    KeySecret::from_bytes(b"fork-test secret, 32 bytes long!").unwrap()
}

#[test]
fn forked_children_share_the_sqlite_tier_and_compute_each_input_once() {
    let _serial = serial();
    let dir = temp_dir("sqlite");
    let url = format!("local:1000,sqlite:{}", dir.join("cache.db").display());
    let cache = larder_cache::config::parse(&url).unwrap().secret(&secret()).build().unwrap();
    scenario(cache, &dir);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn forked_children_share_the_redis_tier_and_compute_each_input_once() {
    let _serial = serial();
    let dir = temp_dir("redis");
    let server = RedisServer::start();
    let url = format!("local:1000,{}", server.url());
    let cache = larder_cache::config::parse(&url).unwrap().secret(&secret()).build().unwrap();
    scenario(cache, &dir);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn forked_children_of_an_async_parent_keep_working() {
    let _serial = serial();
    // The parent used the cache from its own Tokio runtime (a connection opened there); the
    // children use the blocking API with no runtime of their own.
    let dir = temp_dir("async");
    let server = RedisServer::start();
    let url = format!("local:1000,{}", server.url());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = rt.block_on(async {
        let cache = larder_cache::config::parse(&url).unwrap().secret(&secret()).build().unwrap();
        let space = KeySpace::new("fork_async", 1).unwrap();
        let v = cache.get_or_compute(&space, &1u64, Duration::from_secs(60), || async { 11u64 }).await;
        assert_eq!(v, 11);
        cache
    });
    let space = KeySpace::new("fork_async", 1).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            let space = space.clone();
            larder_forktest::fork(move || {
                let hit = cache.get_or_compute_blocking(&space, &1u64, Duration::from_secs(60), || 99u64);
                cache.clear_local();
                let shared = cache.get_blocking::<u64, u64>(&space, &1u64);
                i32::from(hit != 11 || shared != Some(11))
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.wait_timeout(Duration::from_secs(60)), 0);
    }
    drop(rt);
    let _ = fs::remove_dir_all(&dir);
}

/// Tags in children made by `fork()` from a parent that built, warmed and tagged its cache:
/// the inherited tag table and local tier stay right, a child's invalidation reaches its
/// siblings and the parent, and new tokens are the child's own (never a sibling's).
#[cfg(all(feature = "sqlite", feature = "redis"))]
mod tags {
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;

    use larder_cache::{Cache, KeySecret, KeySpace, Lookup};
    use larder_testkit::redis::RedisServer;

    const TTL: Duration = Duration::from_secs(600);
    const CHILDREN: u64 = 4;

    fn call(cache: &Cache, space: &KeySpace, log: &Path, k: u64) -> u64 {
        match cache.lookup::<u64, u64>(space, &k, TTL) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => {
                p.tags([if k.is_multiple_of(2) { "even" } else { "odd" }]).compute_blocking(|| {
                    let mut f = OpenOptions::new().create(true).append(true).open(log).unwrap();
                    f.write_all(format!("{k}\n").as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    k + 100
                })
            }
        }
    }

    fn computed(log: &Path) -> usize {
        std::fs::read_to_string(log).unwrap_or_default().lines().count()
    }

    #[test]
    fn forked_children_invalidate_tags_for_siblings_and_parent() {
        let _serial = super::serial();
        let server = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let (log, go) = (dir.path().join("log"), dir.path().join("go"));
        let secret = KeySecret::from_bytes(b"tags fork test secret, 32 bytes").unwrap();
        let cache = larder_cache::config::parse(&format!("local:100,{}", server.url()))
            .unwrap()
            .secret(&secret)
            .tag_recheck(Duration::from_millis(200))
            .build()
            .unwrap();
        let space = KeySpace::new_with_secret("tags_fork", 1, &secret).unwrap();
        for k in 0..10 {
            call(&cache, &space, &log, k);
        }
        assert_eq!(computed(&log), 10);
        let children: Vec<_> = (0..CHILDREN)
            .map(|i| {
                let (cache, space, log, go) = (cache.clone(), space.clone(), log.clone(), go.clone());
                larder_forktest::fork(move || {
                    // Inherited entries: no computation.
                    if (0..10).any(|k| call(&cache, &space, &log, k) != k + 100) {
                        return 1;
                    }
                    if i == 0 {
                        if cache.invalidate_tag_blocking("even").is_err() {
                            return 2;
                        }
                        std::fs::write(&go, b"").unwrap();
                    }
                    while !go.exists() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    std::thread::sleep(Duration::from_millis(400)); // past tag_recheck
                    if (0..10).any(|k| call(&cache, &space, &log, k) != k + 100) {
                        return 3;
                    }
                    0
                })
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            assert_eq!(c.wait_timeout(Duration::from_secs(60)), 0, "child {i} failed or hung");
        }
        assert_eq!(computed(&log), 15, "the five `even` keys once more across all children, nothing else");
        // The parent's local copies of `even` entries are retired too; it reads the children's.
        std::thread::sleep(Duration::from_millis(400));
        for k in 0..10 {
            assert_eq!(call(&cache, &space, &log, k), k + 100);
        }
        assert_eq!(computed(&log), 15, "the parent computed nothing");
        assert!(cache.stats().shared_hits >= 5, "{:?}", cache.stats());
    }
}
