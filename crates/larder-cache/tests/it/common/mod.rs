//! What the integration tests share: the multi-process scenario harness used by
//! `sqlite_processes.rs` and `redis_processes.rs` (call `common::worker_main_if_requested()`
//! first in each test that spawns workers), [`test_path`] and [`spawn_self`] for re-running one
//! test of this binary in a child process, and the Redis conformance suite ([`redis`]).
//!
//! A test binary re-invokes itself as worker processes: the test function calls
//! [`worker_main_if_requested`] first; in a worker (the environment variable [`WORKER_ENV`]
//! is set) that runs the worker and exits the process, so the rest of the test only runs in
//! the parent. Each computation appends one line to a count file opened with `O_APPEND`, so
//! computations are counted outside the cache, across processes.
//!
//! ```ignore
//! #[test]
//! fn seed_scenario() {
//!     common::worker_main_if_requested();
//!     let dir = tempfile::tempdir().unwrap();
//!     let spec = format!("local:1000,sqlite:{}", dir.path().join("c.db").display());
//!     let report = common::Scenario::seed(&spec, dir.path()).run(&common::test_path(module_path!(), "seed_scenario"));
//!     assert_eq!(report.computations, 50);
//! }
//! ```

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use larder_cache::{Cache, KeySpace};

#[cfg(feature = "redis")]
pub mod redis;

/// Who is running, for [`alone`] and [`timed`]: the tests that load the machine (fleets of
/// worker processes) or need it quiet (TLS handshakes to a cluster within a 250 ms call bound)
/// run alone; the other tests whose calls have short timeouts run together, never beside
/// those. So four busy workers on a two-core machine cannot push a 250 ms call past its bound,
/// as when each file was its own binary and ran alone. Tests with no timing in them take no
/// slot and run freely.
///
/// A slot is a count under a mutex, not a held lock guard, so an async test may keep its slot
/// across `.await`s.
struct Slots {
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct SlotState {
    timed: usize,
    alone: bool,
    alone_waiting: usize,
}

static SLOTS: Slots = Slots {
    state: Mutex::new(SlotState { timed: 0, alone: false, alone_waiting: 0 }),
    changed: Condvar::new(),
};

/// A test's place in [`SLOTS`], given back when dropped.
#[must_use = "the slot is given back when this is dropped"]
pub struct Slot {
    alone: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = SLOTS.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.alone {
            s.alone = false;
        } else {
            s.timed -= 1;
        }
        SLOTS.changed.notify_all();
    }
}

/// For a test that loads the machine or needs it quiet: waits until no other slot is taken.
pub fn alone() -> Slot {
    let mut s = SLOTS.state.lock().unwrap_or_else(PoisonError::into_inner);
    s.alone_waiting += 1;
    while s.alone || s.timed > 0 {
        s = SLOTS.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
    s.alone_waiting -= 1;
    s.alone = true;
    Slot { alone: true }
}

/// For a test with short timeouts: waits until no [`alone`] test runs or waits.
pub fn timed() -> Slot {
    let mut s = SLOTS.state.lock().unwrap_or_else(PoisonError::into_inner);
    while s.alone || s.alone_waiting > 0 {
        s = SLOTS.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
    s.timed += 1;
    Slot { alone: false }
}

/// The name the test harness gives test `name` of module `module` (pass `module_path!()`):
/// `sqlite_processes::seed_scenario`, the crate's own name left out. A child process runs
/// exactly that test with `--exact`.
pub fn test_path(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}

/// Set in a worker process's environment; holds the worker's parameters.
pub const WORKER_ENV: &str = "LARDER_CACHE_TEST_WORKER";

/// The value every worker must get for `input`.
pub fn expected_value(input: u32) -> u64 {
    u64::from(input) * 1_000_003 + 7
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One worker process's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The cache configuration string (`local:1000,sqlite:PATH`, `local:1000,redis://…`).
    pub cache_spec: String,
    /// The file every computation appends a line to.
    pub count_file: PathBuf,
    /// Unix ms at which every worker starts calling (a shared start line).
    pub start_at_ms: u64,
    /// Worker number (changes the order of inputs).
    pub index: u32,
    /// Calls this worker makes.
    pub calls: u32,
    /// Distinct inputs the calls are spread over.
    pub distinct: u32,
    /// How long one computation sleeps, ms.
    pub compute_ms: u64,
    /// Threads in this worker sharing the calls.
    pub threads: u32,
    /// The cache's lease TTL, ms.
    pub lease_ttl_ms: u64,
    /// The cache's lease wait, ms.
    pub lease_wait_ms: u64,
}

impl WorkerSpec {
    fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.cache_spec,
            self.count_file.display(),
            self.start_at_ms,
            self.index,
            self.calls,
            self.distinct,
            self.compute_ms,
            self.threads,
            self.lease_ttl_ms,
            self.lease_wait_ms
        )
    }

    fn decode(s: &str) -> Option<Self> {
        let mut it = s.split('\n');
        Some(WorkerSpec {
            cache_spec: it.next()?.to_owned(),
            count_file: PathBuf::from(it.next()?),
            start_at_ms: it.next()?.parse().ok()?,
            index: it.next()?.parse().ok()?,
            calls: it.next()?.parse().ok()?,
            distinct: it.next()?.parse().ok()?,
            compute_ms: it.next()?.parse().ok()?,
            threads: it.next()?.parse().ok()?,
            lease_ttl_ms: it.next()?.parse().ok()?,
            lease_wait_ms: it.next()?.parse().ok()?,
        })
    }

    /// The input of call `k` of this worker: every worker visits every input, in its own
    /// order, so workers collide on keys all the time.
    pub fn input_of(&self, k: u32) -> u32 {
        (k.wrapping_mul(7).wrapping_add(self.index.wrapping_mul(11))) % self.distinct.max(1)
    }
}

/// In a worker process: runs the worker described by [`WORKER_ENV`] and exits (status 0 if
/// every call returned the right value, 3 otherwise). Elsewhere: returns at once.
pub fn worker_main_if_requested() {
    let Ok(raw) = std::env::var(WORKER_ENV) else { return };
    let code = match WorkerSpec::decode(&raw) {
        Some(spec) => run_worker(&spec),
        None => {
            eprintln!("worker: malformed {WORKER_ENV}");
            2
        }
    };
    std::process::exit(code);
}

fn record(count_file: &Path, input: u32) {
    // One short write to an O_APPEND file: atomic with respect to other appenders.
    let line = format!("{input} {}\n", std::process::id());
    let mut f = OpenOptions::new().create(true).append(true).open(count_file).expect("open count file");
    f.write_all(line.as_bytes()).expect("append to count file");
}

fn run_worker(spec: &WorkerSpec) -> i32 {
    let cache = match larder_cache::config::parse(&spec.cache_spec).and_then(|b| {
        b.lease_ttl(Duration::from_millis(spec.lease_ttl_ms))
            .lease_wait(Duration::from_millis(spec.lease_wait_ms))
            .build()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker {}: cannot build cache: {e}", spec.index);
            return 2;
        }
    };
    let space = KeySpace::new("seed_calc", 1).expect("namespace");
    let wait = spec.start_at_ms.saturating_sub(unix_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let threads = spec.threads.max(1);
    let bad = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cache = &cache;
                let space = &space;
                s.spawn(move || {
                    let mut bad = 0u32;
                    for k in (t..spec.calls).step_by(threads as usize) {
                        let input = spec.input_of(k);
                        let v = compute_through(cache, space, spec, input);
                        if v != expected_value(input) {
                            bad += 1;
                        }
                    }
                    bad
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(1)).sum::<u32>()
    });
    let st = cache.stats();
    eprintln!(
        "worker {} done: computations={} local_hits={} shared_hits={} lease_waits={} lease_timeouts={} store_errors={}",
        spec.index, st.computations, st.local_hits, st.shared_hits, st.lease_waits, st.lease_timeouts, st.store_errors
    );
    if bad == 0 {
        0
    } else {
        eprintln!("worker {}: {bad} wrong values", spec.index);
        3
    }
}

fn compute_through(cache: &Cache, space: &KeySpace, spec: &WorkerSpec, input: u32) -> u64 {
    cache.get_or_compute_blocking(space, &input, Duration::from_secs(600), || {
        record(&spec.count_file, input);
        std::thread::sleep(Duration::from_millis(spec.compute_ms));
        expected_value(input)
    })
}

/// Spawns this test binary as a worker running `test_name` (which must call
/// [`worker_main_if_requested`] first).
pub fn spawn_worker(test_name: &str, spec: &WorkerSpec) -> Child {
    spawn_self(test_name, WORKER_ENV, &spec.encode())
}

/// Spawns this test binary running only `test_name` (a [`test_path`]), with `env` set to
/// `value`: the test looks for `env` first and, when set, plays the child's part and exits.
/// The child's stdout is dropped, its stderr shown.
pub fn spawn_self(test_name: &str, env: &str, value: &str) -> Child {
    let exe = std::env::current_exe().expect("current test executable");
    Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child process of this test binary")
}

/// Computations recorded in `count_file`, per input.
pub fn computations_per_input(count_file: &Path) -> BTreeMap<u32, usize> {
    let text = std::fs::read_to_string(count_file).unwrap_or_default();
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if let Some(Ok(input)) = line.split(' ').next().map(str::parse::<u32>) {
            *m.entry(input).or_insert(0) += 1;
        }
    }
    m
}

/// Several worker processes making calls over distinct inputs, all starting together.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Cache configuration string for every worker.
    pub cache_spec: String,
    /// Directory for the count file.
    pub dir: PathBuf,
    /// Worker processes.
    pub workers: u32,
    /// Calls per worker.
    pub calls_per_worker: u32,
    /// Distinct inputs.
    pub distinct: u32,
    /// Time one computation takes.
    pub compute: Duration,
    /// Threads per worker.
    pub threads: u32,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// Lease wait.
    pub lease_wait: Duration,
}

/// What a scenario run observed.
#[derive(Debug, Clone)]
pub struct Report {
    /// Total computations over all workers.
    pub computations: usize,
    /// Computations per input.
    pub per_input: BTreeMap<u32, usize>,
    /// Whether every worker exited 0 (every value correct).
    pub all_workers_ok: bool,
    /// Wall time from the start line to the last worker's exit.
    pub elapsed: Duration,
}

impl Scenario {
    /// The seed's scenario: 4 workers × 250 calls over 50 inputs of a 100 ms function.
    pub fn seed(cache_spec: &str, dir: &Path) -> Self {
        Scenario {
            cache_spec: cache_spec.to_owned(),
            dir: dir.to_path_buf(),
            workers: 4,
            calls_per_worker: 250,
            distinct: 50,
            compute: Duration::from_millis(100),
            threads: 1,
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(5),
        }
    }

    /// Runs the workers (re-invoking this test binary as `test_name`) and collects counts.
    pub fn run(&self, test_name: &str) -> Report {
        let count_file = self.dir.join(format!("computations-{}-{}.log", std::process::id(), unix_ms()));
        let start_at_ms = unix_ms() + 1_500;
        let mut children: Vec<Child> = (0..self.workers)
            .map(|i| {
                spawn_worker(
                    test_name,
                    &WorkerSpec {
                        cache_spec: self.cache_spec.clone(),
                        count_file: count_file.clone(),
                        start_at_ms,
                        index: i,
                        calls: self.calls_per_worker,
                        distinct: self.distinct,
                        compute_ms: u64::try_from(self.compute.as_millis()).unwrap_or(u64::MAX),
                        threads: self.threads,
                        lease_ttl_ms: u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX),
                        lease_wait_ms: u64::try_from(self.lease_wait.as_millis()).unwrap_or(u64::MAX),
                    },
                )
            })
            .collect();
        let mut all_ok = true;
        for c in &mut children {
            let status = c.wait().expect("wait for worker");
            all_ok &= status.success();
        }
        let elapsed = Duration::from_millis(unix_ms().saturating_sub(start_at_ms));
        let per_input = computations_per_input(&count_file);
        Report { computations: per_input.values().sum(), per_input, all_workers_ok: all_ok, elapsed }
    }
}

/// Waits until `count_file` has at least `n` lines, up to `timeout`; returns whether it did.
pub fn wait_for_lines(count_file: &Path, n: usize, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let lines = std::fs::read_to_string(count_file).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_inputs_cover_everything() {
        let spec = WorkerSpec {
            cache_spec: "local:10,sqlite:/tmp/x.db".into(),
            count_file: "/tmp/c.log".into(),
            start_at_ms: 5,
            index: 3,
            calls: 250,
            distinct: 50,
            compute_ms: 100,
            threads: 2,
            lease_ttl_ms: 10_000,
            lease_wait_ms: 5_000,
        };
        assert_eq!(WorkerSpec::decode(&spec.encode()), Some(spec.clone()));
        let seen: std::collections::BTreeSet<u32> = (0..50).map(|k| spec.input_of(k)).collect();
        assert_eq!(seen.len(), 50);
    }
}
