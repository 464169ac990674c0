//! The seed's scenario with real worker processes sharing one SQLite file, and a lease holder
//! killed with SIGKILL in the middle of its computation.
//!
//! The multi-process harness lives in `tests/it/common/mod.rs` (reused by the Redis tests).

use std::time::{Duration, Instant};

use crate::common::{self, spawn_worker, test_path, unix_ms, wait_for_lines, Scenario, WorkerSpec};

#[test]
fn seed_scenario_sqlite_computes_each_input_once_across_4_processes() {
    common::worker_main_if_requested();
    let _alone = common::alone();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("local:1000,sqlite:{}", dir.path().join("cache.db").display());
    let report = Scenario::seed(&spec, dir.path())
        .run(&test_path(module_path!(), "seed_scenario_sqlite_computes_each_input_once_across_4_processes"));
    eprintln!("sqlite seed scenario: {report:?}");
    assert!(report.all_workers_ok, "a worker returned a wrong value or failed");
    assert_eq!(report.per_input.len(), 50, "every input computed");
    assert!(
        report.per_input.values().all(|&n| n == 1),
        "an input was computed twice: {:?}",
        report.per_input
    );
    assert_eq!(report.computations, 50);
}

#[test]
fn seed_scenario_local_only_computes_per_process() {
    common::worker_main_if_requested();
    let _alone = common::alone();
    let dir = tempfile::tempdir().unwrap();
    let report = Scenario::seed("local:1000", dir.path())
        .run(&test_path(module_path!(), "seed_scenario_local_only_computes_per_process"));
    eprintln!("local-only seed scenario: {report:?}");
    assert!(report.all_workers_ok);
    assert!(report.computations >= 4 * 50, "process-local caches: {} computations", report.computations);
    // Each process still computes each input only once (in-process single-flight + local tier).
    assert_eq!(report.computations, 200);
}

#[test]
fn seed_scenario_sqlite_with_threads_in_each_process() {
    common::worker_main_if_requested();
    let _alone = common::alone();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("local:1000,sqlite:{}", dir.path().join("cache.db").display());
    let mut scenario = Scenario::seed(&spec, dir.path());
    scenario.threads = 4;
    let report =
        scenario.run(&test_path(module_path!(), "seed_scenario_sqlite_with_threads_in_each_process"));
    eprintln!("sqlite seed scenario, 4 threads per process: {report:?}");
    assert!(report.all_workers_ok);
    assert_eq!(report.computations, 50, "{:?}", report.per_input);
}

#[test]
fn killed_lease_holder_is_taken_over_within_lease_ttl() {
    common::worker_main_if_requested();
    let _alone = common::alone();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("local:100,sqlite:{}", dir.path().join("cache.db").display());
    let count_file = dir.path().join("count.log");
    let lease_ttl_ms = 2_000;
    let base = WorkerSpec {
        cache_spec: spec,
        count_file: count_file.clone(),
        start_at_ms: unix_ms(),
        index: 0,
        calls: 1,
        distinct: 1,
        compute_ms: 60_000, // the holder "hangs" until it is killed
        threads: 1,
        lease_ttl_ms,
        lease_wait_ms: 20_000,
    };
    let name = &test_path(module_path!(), "killed_lease_holder_is_taken_over_within_lease_ttl");
    let mut holder = spawn_worker(name, &base);
    assert!(wait_for_lines(&count_file, 1, Duration::from_secs(20)), "holder never started computing");
    let holder_started = Instant::now();
    // Three workers wait for the holder's value.
    let mut waiters: Vec<_> = (1..=3)
        .map(|i| {
            spawn_worker(
                name,
                &WorkerSpec { index: i, compute_ms: 100, start_at_ms: unix_ms(), ..base.clone() },
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    for w in &mut waiters {
        assert!(w.wait().unwrap().success(), "a waiting worker failed");
    }
    let took = holder_started.elapsed();
    assert!(
        took < Duration::from_millis(lease_ttl_ms + 1_500),
        "took over after {took:?}, lease TTL {lease_ttl_ms} ms"
    );
    // The dead holder's computation, then exactly one takeover: the waiters saw the lease
    // expire, one took it, the other two waited for its value.
    assert_eq!(common::computations_per_input(&count_file).get(&0), Some(&2), "holder + one taker");
    // The value is now shared: a third worker does not compute.
    let third = spawn_worker(name, &WorkerSpec { compute_ms: 100, start_at_ms: unix_ms(), ..base.clone() })
        .wait()
        .unwrap();
    assert!(third.success());
    assert_eq!(common::computations_per_input(&count_file).get(&0), Some(&2));
    eprintln!("lease takeover after the holder's start: {took:?}");
}
