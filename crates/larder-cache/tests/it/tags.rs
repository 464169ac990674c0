//! Tags (docs/cache.md, "Tags"): across real processes on every shared tier — a SQLite file,
//! a real `redis-server`, and a 3-node Redis Cluster — then in one process, and through
//! `#[memoize(tags = …)]`. The fork test is in `tests/fork.rs` (a binary of its own).
//!
//! * `*_invalidation_reaches_every_process`: process A fills 10 keys (tagged `user:7`,
//!   `user:7`+`team:1`, `user:8`, untagged); process B calls `invalidate_tag("user:7")`; then
//!   A and B read every key at the same moment. The five `user:7` keys are computed exactly
//!   once more in total (by A or B, never both), with the new data; the other five are not
//!   computed again (A serves them from its local tier, B from the shared tier).
//! * `*_compute_racing_an_invalidation_is_refused`: A starts computing a tagged key from the
//!   old data, B invalidates the tag while A computes, A stores its (stale) value after the
//!   invalidation. A third process C must not get it: it computes the new value (exactly one
//!   more computation), and A itself then reads C's value.
//! * `*_corrupt_or_forged_tag_record_is_a_miss`: the tag record is overwritten with garbage,
//!   then with a record sealed under another secret: each time a fresh process-like cache
//!   recomputes (counted), never panics, and the next reader hits the repaired record.
//!
//! The processes are this test binary run again for one test ([`common::spawn_self`]) with
//! [`CHILD_ENV`] set to play a role; every computation appends a line to a count file opened
//! with `O_APPEND`, so computations are counted across processes. Every test whose counts
//! rely on a tier call finishing within its 250 ms bound takes a [`common::timed`] slot.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_cache::frame::MacKey;
use larder_cache::{Cache, KeySecret, KeySpace, Lookup, SharedTier, TierOptions};
use larder_testkit::redis::{RedisCluster, RedisServer};

use crate::common::{self, test_path};

const CHILD_ENV: &str = "LARDER_TAGS_TEST_CHILD";
const TTL: Duration = Duration::from_secs(600);
/// The children's `tag_recheck`: the bound on a local tier's lag without a backplane.
const RECHECK: Duration = Duration::from_millis(300);
const KEYS: u64 = 10;
const SECRET: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The tags of key `k`: 0–3 `user:7`, 4 `user:7` and `team:1`, 5–7 `user:8`, 8–9 none.
fn tags_of(k: u64) -> Vec<&'static str> {
    match k {
        0..=3 => vec!["user:7"],
        4 => vec!["user:7", "team:1"],
        5..=7 => vec!["user:8"],
        _ => vec![],
    }
}

fn secret() -> KeySecret {
    KeySecret::from_hex(SECRET).unwrap()
}

fn space() -> KeySpace {
    KeySpace::new_with_secret("tags_test", 1, &secret()).unwrap()
}

fn open_cache(url: &str) -> Cache {
    larder_cache::config::parse(&format!("local:1000,{url}"))
        .unwrap()
        .secret(&secret())
        .tag_recheck(RECHECK)
        .build()
        .unwrap()
}

// ---- files shared by the processes of one test ----

fn touch(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), b"").unwrap();
}

fn wait_file(dir: &Path, name: &str) {
    let start = Instant::now();
    while !dir.join(name).exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {name}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The current "database" generation the computations read.
fn data(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("data")).unwrap().trim().parse().unwrap()
}

fn set_data(dir: &Path, generation: u64) {
    let tmp = dir.join("data.tmp");
    std::fs::write(&tmp, generation.to_string()).unwrap();
    std::fs::rename(tmp, dir.join("data")).unwrap();
}

fn value(k: u64, generation: u64) -> u64 {
    k * 1000 + generation
}

fn count(dir: &Path, role: &str, k: u64) {
    let mut f = OpenOptions::new().create(true).append(true).open(dir.join("count.log")).unwrap();
    f.write_all(format!("{role} {k}\n").as_bytes()).unwrap();
}

/// Computations per key (all roles), and per role.
fn counts(dir: &Path) -> (BTreeMap<u64, usize>, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(dir.join("count.log")).unwrap_or_default();
    let (mut per_key, mut per_role) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines() {
        let (role, k) = line.split_once(' ').unwrap();
        *per_key.entry(k.parse().unwrap()).or_insert(0) += 1;
        *per_role.entry(role.to_owned()).or_insert(0) += 1;
    }
    (per_key, per_role)
}

fn write_values(dir: &Path, role: &str, values: &[(u64, u64)]) {
    let text: String = values.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    std::fs::write(dir.join(format!("{role}.values")), text).unwrap();
}

fn read_values(dir: &Path, role: &str) -> BTreeMap<u64, u64> {
    std::fs::read_to_string(dir.join(format!("{role}.values")))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

/// One call the way an application makes it: a local hit, or a computation stored under
/// the key's tags.
fn call(cache: &Cache, dir: &Path, role: &str, k: u64) -> u64 {
    match cache.lookup::<u64, u64>(&space(), &k, TTL) {
        Lookup::Hit(v) => v,
        Lookup::Miss(p) => {
            let tags = tags_of(k);
            let p = if tags.is_empty() { p } else { p.tags(tags) };
            p.compute_blocking(|| {
                count(dir, role, k);
                let g = data(dir);
                std::thread::sleep(Duration::from_millis(50));
                value(k, g)
            })
        }
    }
}

// ---- child processes ----

fn child_main_if_requested() {
    let Ok(job) = std::env::var(CHILD_ENV) else { return };
    let mut parts = job.splitn(3, '\n');
    let (role, url, dir) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    run_child(role, url, Path::new(dir));
    std::process::exit(0);
}

fn spawn(test: &str, role: &str, url: &str, dir: &Path) -> Child {
    common::spawn_self(test, CHILD_ENV, &format!("{role}\n{url}\n{}", dir.display()))
}

fn all_keys(cache: &Cache, dir: &Path, role: &str) -> Vec<(u64, u64)> {
    (0..KEYS).map(|k| (k, call(cache, dir, role, k))).collect()
}

fn run_child(role: &str, url: &str, dir: &Path) {
    let cache = open_cache(url);
    match role {
        // Fills every key, then reads them all again when told to.
        "A" => {
            let filled = all_keys(&cache, dir, "A");
            write_values(dir, "A.fill", &filled);
            touch(dir, "A.filled");
            wait_file(dir, "go");
            let before = cache.stats();
            let got = all_keys(&cache, dir, "A");
            let after = cache.stats();
            write_values(dir, "A", &got);
            std::fs::write(
                dir.join("A.stats"),
                format!("{} {}", after.local_hits - before.local_hits, after.tag_stale - before.tag_stale),
            )
            .unwrap();
        }
        // Invalidates user:7, then reads every key with A.
        "B" => {
            cache.invalidate_tag_blocking("user:7").unwrap();
            touch(dir, "B.invalidated");
            wait_file(dir, "go");
            let got = all_keys(&cache, dir, "B");
            write_values(dir, "B", &got);
        }
        // Computes key 0 from the data it reads first, and stores it only after being
        // released (by then the tag has been invalidated); later reads key 0 again.
        "slow" => {
            let v = match cache.lookup::<u64, u64>(&space(), &0u64, TTL) {
                Lookup::Hit(v) => v,
                Lookup::Miss(p) => p.tags(tags_of(0)).compute_blocking(|| {
                    count(dir, "slow", 0);
                    let g = data(dir);
                    touch(dir, "slow.started");
                    wait_file(dir, "slow.release");
                    value(0, g)
                }),
            };
            write_values(dir, "slow.first", &[(0, v)]);
            touch(dir, "slow.stored");
            wait_file(dir, "go");
            write_values(dir, "slow", &[(0, call(&cache, dir, "slow", 0))]);
        }
        "invalidate" => cache.invalidate_tag_blocking("user:7").unwrap(),
        "C" => write_values(dir, "C", &[(0, call(&cache, dir, "C", 0))]),
        other => panic!("unknown role {other}"),
    }
}

fn wait_ok(mut c: Child, what: &str) {
    assert!(c.wait().unwrap().success(), "{what} failed");
}

// ---- scenarios ----

fn invalidation_reaches_every_process(test: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    set_data(dir, 1);
    let a = spawn(test, "A", url, dir);
    wait_file(dir, "A.filled");
    assert_eq!(counts(dir).0.values().sum::<usize>(), 10, "A fills 10 keys");
    // The data behind user:7 changes, then B invalidates the tag.
    set_data(dir, 2);
    let b = spawn(test, "B", url, dir);
    wait_file(dir, "B.invalidated");
    // Past A's tag_recheck: its local tier must not serve user:7 entries any more, with or
    // without a backplane message.
    std::thread::sleep(RECHECK * 2);
    touch(dir, "go");
    wait_ok(a, "A");
    wait_ok(b, "B");

    let (per_key, per_role) = counts(dir);
    eprintln!("{test}: computations per key {per_key:?}, per process {per_role:?}");
    for k in 0..KEYS {
        let expected = if tags_of(k).contains(&"user:7") { 2 } else { 1 };
        assert_eq!(per_key.get(&k), Some(&expected), "key {k} ({:?}): {per_key:?}", tags_of(k));
    }
    assert_eq!(per_key.values().sum::<usize>(), 15, "10 fills + exactly one recomputation of 5 keys");
    for role in ["A", "B"] {
        let got = read_values(dir, role);
        for k in 0..KEYS {
            let generation = if tags_of(k).contains(&"user:7") { 2 } else { 1 };
            assert_eq!(got[&k], value(k, generation), "{role} read key {k}");
        }
    }
    // A served the keys the invalidation did not touch from its own local tier: the two
    // untagged ones, and two of the three `user:8` ones. Its `user:8` token was older than
    // tag_recheck by then, so the first `user:8` key (5) was confirmed against the shared
    // tier (no computation), which confirmed the tag for keys 6 and 7.
    let stats = std::fs::read_to_string(dir.join("A.stats")).unwrap();
    let local_hits: u64 = stats.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(local_hits, 4, "A's local hits after the invalidation (keys 6, 7, 8, 9)");
}

fn compute_racing_an_invalidation_is_refused(test: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    set_data(dir, 1);
    let slow = spawn(test, "slow", url, dir);
    wait_file(dir, "slow.started");
    // While `slow` computes from generation 1: the data changes and the tag is invalidated.
    set_data(dir, 2);
    wait_ok(spawn(test, "invalidate", url, dir), "invalidate");
    // Only now does `slow` store its value (read before the invalidation).
    touch(dir, "slow.release");
    wait_file(dir, "slow.stored");
    assert_eq!(read_values(dir, "slow.first")[&0], value(0, 1), "slow returns what it computed");
    // A fresh process must not be served the stale value from the shared tier.
    wait_ok(spawn(test, "C", url, dir), "C");
    assert_eq!(
        read_values(dir, "C")[&0],
        value(0, 2),
        "C was served the value computed before the invalidation"
    );
    // And `slow`'s own local copy stops being served within tag_recheck.
    std::thread::sleep(RECHECK * 2);
    touch(dir, "go");
    wait_ok(slow, "slow");
    assert_eq!(read_values(dir, "slow")[&0], value(0, 2), "slow kept serving its stale local copy");
    let (per_key, per_role) = counts(dir);
    eprintln!("{test}: computations per process {per_role:?}");
    assert_eq!(per_key.get(&0), Some(&2), "the racing computation and exactly one more: {per_role:?}");
    assert_eq!(per_role.get("C"), Some(&1));
    assert_eq!(per_role.get("slow"), Some(&1), "slow read C's value, not computing again");
}

/// Opens the tier of `url` directly (as an attacker with write access, or a bit flip, would
/// see it).
fn raw_tier(url: &str, rt: &tokio::runtime::Runtime) -> Arc<dyn SharedTier> {
    let opts = TierOptions {
        op_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        runtime: rt.handle().clone(),
    };
    let _entered = rt.enter();
    larder_cache::config::open_shared(url, &opts).unwrap()
}

fn corrupt_or_forged_tag_record_is_a_miss(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    set_data(dir, 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tier = raw_tier(url, &rt);
    let record = larder_cache::tags::record_key("user:7");

    let first = open_cache(url);
    assert_eq!(call(&first, dir, "first", 0), value(0, 1));
    assert!(rt.block_on(tier.get(&record)).unwrap().is_some(), "the first tagged store creates the record");

    let forger = MacKey::from_secret(&KeySecret::from_hex(&"66".repeat(32)).unwrap());
    let forged =
        larder_cache::tags::record_frame(&forger, "user:7", &larder_cache::tags::new_token()).unwrap();
    let garbage = b"LC\x01\x08 not a record".to_vec();
    for (what, bytes) in [("garbage", garbage), ("forged", forged)] {
        rt.block_on(tier.set(&record, &bytes, Duration::from_secs(600))).unwrap();
        // A process without a local copy reads the entry: its tag cannot be confirmed.
        let reader = open_cache(url);
        let before = counts(dir).0.get(&0).copied().unwrap_or(0);
        assert_eq!(call(&reader, dir, what, 0), value(0, 1));
        assert_eq!(counts(dir).0[&0], before + 1, "{what} record: the entry must be recomputed");
        let s = reader.stats();
        assert!(s.corrupt_entries >= 1, "{what} record not counted as corrupt: {s:?}");
        assert!(s.tag_stale >= 1, "{what} record: entry not counted as tag-stale: {s:?}");
        // The reader replaced the unusable record; the next process hits.
        let next = open_cache(url);
        assert_eq!(call(&next, dir, "next", 0), value(0, 1));
        assert_eq!(counts(dir).0[&0], before + 1, "{what} record: the repaired entry was not shared");
        assert_eq!(next.stats().shared_hits, 1);
    }
    assert_eq!(counts(dir).0[&0], 3, "1 fill + one recomputation per bad record");
}

// ---- per tier ----

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("cache.db").display())
}

#[test]
fn sqlite_invalidation_reaches_every_process() {
    child_main_if_requested();
    let _timed = common::timed();
    let db = tempfile::tempdir().unwrap();
    invalidation_reaches_every_process(
        &test_path(module_path!(), "sqlite_invalidation_reaches_every_process"),
        &sqlite_url(db.path()),
    );
}

#[test]
fn redis_invalidation_reaches_every_process() {
    child_main_if_requested();
    let _timed = common::timed();
    let server = RedisServer::start();
    invalidation_reaches_every_process(
        &test_path(module_path!(), "redis_invalidation_reaches_every_process"),
        &server.url(),
    );
}

#[test]
fn cluster_invalidation_reaches_every_process() {
    child_main_if_requested();
    let _timed = common::timed();
    let cluster = RedisCluster::start(3);
    invalidation_reaches_every_process(
        &test_path(module_path!(), "cluster_invalidation_reaches_every_process"),
        &cluster.url(),
    );
}

#[test]
fn sqlite_compute_racing_an_invalidation_is_refused() {
    child_main_if_requested();
    let _timed = common::timed();
    let db = tempfile::tempdir().unwrap();
    compute_racing_an_invalidation_is_refused(
        &test_path(module_path!(), "sqlite_compute_racing_an_invalidation_is_refused"),
        &sqlite_url(db.path()),
    );
}

#[test]
fn redis_compute_racing_an_invalidation_is_refused() {
    child_main_if_requested();
    let _timed = common::timed();
    let server = RedisServer::start();
    compute_racing_an_invalidation_is_refused(
        &test_path(module_path!(), "redis_compute_racing_an_invalidation_is_refused"),
        &server.url(),
    );
}

#[test]
fn cluster_compute_racing_an_invalidation_is_refused() {
    child_main_if_requested();
    let _timed = common::timed();
    let cluster = RedisCluster::start(3);
    compute_racing_an_invalidation_is_refused(
        &test_path(module_path!(), "cluster_compute_racing_an_invalidation_is_refused"),
        &cluster.url(),
    );
}

#[test]
fn sqlite_corrupt_or_forged_tag_record_is_a_miss() {
    let _timed = common::timed();
    let db = tempfile::tempdir().unwrap();
    corrupt_or_forged_tag_record_is_a_miss(&sqlite_url(db.path()));
}

#[test]
fn redis_corrupt_or_forged_tag_record_is_a_miss() {
    let _timed = common::timed();
    let server = RedisServer::start();
    corrupt_or_forged_tag_record_is_a_miss(&server.url());
}

#[test]
fn cluster_corrupt_or_forged_tag_record_is_a_miss() {
    let _timed = common::timed();
    let cluster = RedisCluster::start(3);
    corrupt_or_forged_tag_record_is_a_miss(&cluster.url());
}

mod in_process {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use larder_cache::{Cache, CacheError, KeySpace, Lookup};

    const TTL: Duration = Duration::from_secs(600);

    async fn call(cache: &Cache, space: &KeySpace, k: u64, tags: &[&str], n: &AtomicU64) -> u64 {
        match cache.lookup::<u64, u64>(space, &k, TTL) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => {
                let p = if tags.is_empty() { p } else { p.tags(tags.iter().copied()) };
                p.compute(|| async {
                    n.fetch_add(1, Ordering::SeqCst);
                    k * 10
                })
                .await
            }
        }
    }

    /// In the calling process an invalidation is immediate (no recheck window), through the
    /// async API, on a local-only cache and on a SQLite-backed one; untagged and other-tag
    /// entries keep hitting; bad tags are typed errors.
    #[tokio::test]
    async fn calling_process_sees_its_invalidation_at_once() {
        let _timed = crate::common::timed();
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("local:100,sqlite:{}", dir.path().join("c.db").display());
        for spec in ["local:100", sqlite.as_str()] {
            let cache = Cache::from_url(spec).unwrap();
            let space = KeySpace::new("tags_in_process", 1).unwrap();
            let n = AtomicU64::new(0);
            for k in 0..3 {
                call(&cache, &space, k, &["a"], &n).await;
            }
            call(&cache, &space, 3, &["b"], &n).await;
            call(&cache, &space, 4, &[], &n).await;
            assert_eq!(n.load(Ordering::SeqCst), 5, "{spec}");
            cache.invalidate_tag("a").await.unwrap();
            for k in 0..5 {
                let tags: &[&str] = match k {
                    0..=2 => &["a"],
                    3 => &["b"],
                    _ => &[],
                };
                assert_eq!(call(&cache, &space, k, tags, &n).await, k * 10);
            }
            assert_eq!(n.load(Ordering::SeqCst), 8, "{spec}: the three `a` entries, once each");
            // Recomputed entries are current again: hits.
            for k in 0..3 {
                call(&cache, &space, k, &["a"], &n).await;
            }
            assert_eq!(n.load(Ordering::SeqCst), 8, "{spec}");
            // Tagging with an invalid tag computes without storing.
            call(&cache, &space, 9, &[""], &n).await;
            call(&cache, &space, 9, &[""], &n).await;
            assert_eq!(n.load(Ordering::SeqCst), 10, "{spec}: an invalid tag stores nothing");
            assert!(matches!(cache.invalidate_tag("").await, Err(CacheError::Config(_))));
            assert!(matches!(cache.invalidate_tag_blocking(&"x".repeat(257)), Err(CacheError::Config(_))));
        }
    }
}

mod memoize {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use larder_cache::{memoize, Cache};

    static CALLS: AtomicU64 = AtomicU64::new(0);
    static ASYNC_CALLS: AtomicU64 = AtomicU64::new(0);

    fn cache() -> &'static Cache {
        static C: OnceLock<Cache> = OnceLock::new();
        C.get_or_init(|| Cache::builder().local(100).build().unwrap())
    }

    #[memoize(namespace = "tags_memo", cache = cache(), tags = [format!("user:{user}"), "profiles".to_owned()])]
    fn profile(user: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        user * 7
    }

    #[memoize(namespace = "tags_memo_async", cache = cache(), tags = vec![format!("async-user:{user}")])]
    async fn profile_async(user: u64) -> Result<u64, String> {
        ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(user * 9)
    }

    /// `#[memoize(tags = …)]`: the tags come from the arguments; `prime` stores under them too.
    #[test]
    fn memoized_functions_are_tagged_from_their_arguments() {
        let calls = || CALLS.load(Ordering::SeqCst);
        assert_eq!((profile(1), profile(2), profile(1)), (7, 14, 7));
        assert_eq!(calls(), 2);
        cache().invalidate_tag_blocking("user:1").unwrap();
        assert_eq!((profile(1), profile(2)), (7, 14));
        assert_eq!(calls(), 3, "only user 1 recomputed");
        cache().invalidate_tag_blocking("profiles").unwrap();
        assert_eq!((profile(1), profile(2)), (7, 14));
        assert_eq!(calls(), 5, "both recomputed");
        profile::prime(3, 21);
        assert_eq!(profile(3), 21);
        assert_eq!(calls(), 5, "primed");
        cache().invalidate_tag_blocking("user:3").unwrap();
        assert_eq!(profile(3), 21);
        assert_eq!(calls(), 6, "a primed value carries the tags too");
    }

    #[tokio::test]
    async fn async_memoized_functions_are_tagged_too() {
        let calls = || ASYNC_CALLS.load(Ordering::SeqCst);
        assert_eq!(profile_async(1).await, Ok(9));
        assert_eq!(profile_async(1).await, Ok(9));
        assert_eq!(calls(), 1);
        cache().invalidate_tag("async-user:1").await.unwrap();
        assert_eq!(profile_async(1).await, Ok(9));
        assert_eq!(profile_async(1).await, Ok(9));
        assert_eq!(calls(), 2);
        profile_async::prime(5, 45).await;
        assert_eq!(profile_async(5).await, Ok(45));
        assert_eq!(calls(), 2);
        assert_eq!(profile_async::refresh(5).await, Ok(45));
        cache().invalidate_tag("async-user:5").await.unwrap();
        assert_eq!(profile_async(5).await, Ok(45));
        assert_eq!(calls(), 4, "refresh, then the recomputation after the invalidation");
    }
}
