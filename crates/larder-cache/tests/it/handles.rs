//! The companions `#[memoize]` generates (`rate::key`, `peek`, `invalidate`, `prime`, `refresh`)
//! reach exactly the entries the calls use — same key space, same `LARDER_KEY_SECRET`, same
//! cache — across real processes sharing one SQLite file.
//!
//! The test binary re-invokes itself: three child processes run one step each, in order, with
//! the same database, count file and secret in their environment; the parent checks the
//! computation counts (one line per computation in an `O_APPEND` file), the key texts the
//! children printed, and the rows in the SQLite file between steps.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::test_path;
use larder_cache::{memoize, Cache, KeySecret, KeySpace};

const STEP_ENV: &str = "LARDER_HANDLES_STEP";
const DB_ENV: &str = "LARDER_HANDLES_DB";
const COUNT_ENV: &str = "LARDER_HANDLES_COUNT";
const SECRET_HEX: &str = "8f3a6b1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

/// The cache every memoized function here uses: a local tier in front of the shared file.
fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let db = std::env::var(DB_ENV).expect("the step's database path");
        Cache::from_url(&format!("local:100,sqlite:{db}")).expect("cache")
    })
}

fn count_file() -> String {
    std::env::var(COUNT_ENV).expect("the step's count file")
}

fn computations(tag: &str) -> u64 {
    let text = std::fs::read_to_string(count_file()).unwrap_or_default();
    text.lines().filter(|l| *l == tag).count() as u64
}

/// Records one computation; returns how many of this tag came before it.
fn record(tag: &str) -> u64 {
    let before = computations(tag);
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(count_file()).expect("open count file");
    f.write_all(format!("{tag}\n").as_bytes()).expect("append");
    before
}

/// Each computation returns a different value (`user * 1000 + computations before it`), so a
/// refreshed or primed value can be told from the first one.
#[memoize(namespace = "handles_sync", ttl = "10m", cache = cache())]
fn rate(user: u64) -> u64 {
    user * 1000 + record("rate")
}

#[memoize(namespace = "handles_async", ttl = "10m", cache = cache())]
async fn rate_async(user: u64) -> u64 {
    user * 1000 + record("rate_async")
}

fn step_warm() {
    assert_eq!(rate(1), 1000);
    assert_eq!(rate(2), 2001);
    println!("KEY sync {}", rate::key(1).expect("key"));
    rt().block_on(async {
        assert_eq!(rate_async(1).await, 1000);
        assert_eq!(rate_async(2).await, 2001);
    });
    println!("KEY async {}", rate_async::key(1).expect("key"));
    assert_eq!((computations("rate"), computations("rate_async")), (2, 2));
}

fn step_operate() {
    // A new process: its local tier is empty, so everything below comes from the SQLite file.
    println!("KEY sync {}", rate::key(1).expect("key"));
    assert_eq!(rate::peek(1), Some(1000), "peek sees the other process's value");
    assert_eq!(rate::peek(5), None, "peek computes nothing");
    rate::invalidate(1);
    assert_eq!(rate::peek(1), None, "invalidated");
    rate::prime(3, 777);
    assert_eq!(rate::peek(3), Some(777));
    assert_eq!(rate::refresh(2), 2002, "refresh computes whatever is cached");
    assert_eq!(rate::peek(2), Some(2002));
    assert_eq!(rate(2), 2002, "the call path sees the refreshed value");
    assert_eq!(computations("rate"), 3, "only refresh computed in this process");

    rt().block_on(async {
        println!("KEY async {}", rate_async::key(1).expect("key"));
        assert_eq!(rate_async::peek(1).await, Some(1000));
        assert_eq!(rate_async::peek(5).await, None);
        rate_async::invalidate(1).await;
        assert_eq!(rate_async::peek(1).await, None);
        rate_async::prime(3, 777).await;
        assert_eq!(rate_async::peek(3).await, Some(777));
        assert_eq!(rate_async::refresh(2).await, 2002);
        assert_eq!(rate_async(2).await, 2002);
    });
    assert_eq!(computations("rate_async"), 3);
}

fn step_check() {
    assert_eq!(rate(3), 777, "primed in another process");
    assert_eq!(rate(2), 2002, "refreshed in another process");
    assert_eq!(rate(1), 1003, "invalidated in another process: computed again");
    rt().block_on(async {
        assert_eq!(rate_async(3).await, 777);
        assert_eq!(rate_async(2).await, 2002);
        assert_eq!(rate_async(1).await, 1003);
    });
    assert_eq!((computations("rate"), computations("rate_async")), (4, 4));
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

const TEST: &str = "handles_reach_the_call_paths_entries_across_processes";

/// Runs one step in a child process; returns its stdout.
fn run_step(step: &str, db: &Path, count: &Path) -> String {
    let out = Command::new(std::env::current_exe().expect("test executable"))
        .args([&test_path(module_path!(), TEST), "--exact", "--nocapture", "--test-threads=1"])
        .env(STEP_ENV, step)
        .env(DB_ENV, db)
        .env(COUNT_ENV, count)
        .env("LARDER_KEY_SECRET", SECRET_HEX)
        .env_remove("LARDER_CACHE")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn step");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "step {step} failed ({}); stdout:\n{stdout}", out.status);
    stdout
}

fn printed_key(stdout: &str, which: &str) -> String {
    let tag = format!("KEY {which} ");
    stdout
        .lines()
        .find_map(|l| l.split_once(&tag).map(|(_, rest)| rest)) // the harness may print on the same line
        .unwrap_or_else(|| panic!("no `{tag}` line in:\n{stdout}"))
        .trim()
        .to_owned()
}

fn stored_keys(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open the cache file");
    let mut stmt = conn.prepare("SELECT key FROM larder_entries ORDER BY key").expect("query");
    stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows").map(|r| r.expect("row")).collect()
}

#[test]
fn handles_reach_the_call_paths_entries_across_processes() {
    if let Ok(step) = std::env::var(STEP_ENV) {
        match step.as_str() {
            "warm" => step_warm(),
            "operate" => step_operate(),
            "check" => step_check(),
            other => panic!("unknown step {other}"),
        }
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cache.db");
    let count = dir.path().join("count.log");

    let secret = KeySecret::from_hex(SECRET_HEX).expect("secret");
    let sync_space = KeySpace::new("handles_sync", 1).expect("space").with_secret(&secret);
    let async_space = KeySpace::new("handles_async", 1).expect("space").with_secret(&secret);
    let key = |space: &KeySpace, user: u64| space.key(&user).expect("key").as_str().to_owned();

    let warm = run_step("warm", &db, &count);
    let operate = run_step("operate", &db, &count);
    // `key()` is the call path's key: the same in both processes, keyed with the secret.
    for (which, space) in [("sync", &sync_space), ("async", &async_space)] {
        assert_eq!(printed_key(&warm, which), key(space, 1));
        assert_eq!(printed_key(&operate, which), key(space, 1));
        let unkeyed = KeySpace::new(space.namespace(), 1).expect("space").key(&1u64).expect("key");
        assert_ne!(printed_key(&warm, which), unkeyed.as_str(), "the secret is part of the key");
    }
    // In the file: 1 invalidated, 2 refreshed, 3 primed, for both functions.
    let rows = stored_keys(&db);
    for space in [&sync_space, &async_space] {
        assert!(!rows.contains(&key(space, 1)), "invalidated entry still stored: {rows:?}");
        assert!(rows.contains(&key(space, 2)), "refreshed entry missing: {rows:?}");
        assert!(rows.contains(&key(space, 3)), "primed entry missing: {rows:?}");
    }
    assert_eq!(rows.len(), 4, "{rows:?}");

    run_step("check", &db, &count);
    let log = std::fs::read_to_string(&count).expect("count file");
    let n = |tag: &str| log.lines().filter(|l| *l == tag).count();
    // warm: 2; operate: 1 (refresh); check: 1 (the invalidated input).
    assert_eq!((n("rate"), n("rate_async")), (4, 4));
    assert_eq!(stored_keys(&db).len(), 6);
}
