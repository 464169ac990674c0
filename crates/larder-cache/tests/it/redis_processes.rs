//! Real worker processes sharing Redis: the seed's scenario on a single server and on a
//! 3-node cluster (exactly one computation per distinct input across 4 processes), a
//! `kill -9` of Redis in the middle of a load (every call still right; the same workers use
//! Redis again after the restart), and the invalidation backplane between processes.
//!
//! Each test re-invokes this binary as workers: the seed scenario through the shared harness
//! in `tests/it/common`, the other roles through [`role_main_if_requested`].

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, expected_value, test_path, unix_ms, Scenario};
use larder_cache::redis::value_key;
use larder_cache::{Cache, KeySpace};
use larder_testkit::redis::{RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(600);
const ROLE_ENV: &str = "LARDER_REDIS_TEST_ROLE";

/// The tier URL with the deployment secret every process of these tests shares (a Redis
/// tier without a secret is refused: docs/cache.md, "Who can do what to a shared tier").
fn with_secret(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}secret={}", "5a".repeat(32))
}

fn worker_entry() {
    common::worker_main_if_requested();
    role_main_if_requested();
}

fn check_seed_report(what: &str, report: &common::Report) {
    eprintln!(
        "{what}: {} computations for 50 inputs, 1000 calls in 4 processes, {:?}",
        report.computations, report.elapsed
    );
    assert!(report.all_workers_ok, "{what}: a worker got a wrong value or failed");
    assert_eq!(report.per_input.len(), 50, "{what}: inputs never computed: {:?}", report.per_input);
    assert!(
        report.per_input.values().all(|&n| n == 1),
        "{what}: inputs computed more than once: {:?}",
        report.per_input.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert_eq!(report.computations, 50, "{what}");
}

#[test]
fn seed_scenario_on_redis_computes_each_input_once() {
    worker_entry();
    let _alone = common::alone();
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("local:1000,{}", with_secret(&server.url()));
    let report = Scenario::seed(&spec, dir.path())
        .run(&test_path(module_path!(), "seed_scenario_on_redis_computes_each_input_once"));
    check_seed_report("redis", &report);
}

#[test]
fn seed_scenario_on_redis_cluster_computes_each_input_once() {
    worker_entry();
    let _alone = common::alone();
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("local:1000,{}", with_secret(&cluster.url()));
    let report = Scenario::seed(&spec, dir.path())
        .run(&test_path(module_path!(), "seed_scenario_on_redis_cluster_computes_each_input_once"));
    check_seed_report("redis cluster", &report);
    // The 50 values are spread over every node.
    let sizes = cluster.dbsizes();
    assert_eq!(sizes.iter().sum::<u64>(), 50, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 0), "a node holds none of the values: {sizes:?}");
}

// ---------------------------------------------------------------------------------------
// Roles other than the seed worker.

/// In a role process: runs the role described by [`ROLE_ENV`] and exits. Elsewhere: returns.
fn role_main_if_requested() {
    let Ok(raw) = std::env::var(ROLE_ENV) else { return };
    let parts: Vec<&str> = raw.split('\n').collect();
    let code = match parts.as_slice() {
        ["load", url, count_file, stop_file, index] => {
            load_worker(url, Path::new(count_file), Path::new(stop_file), index.parse().unwrap())
        }
        ["invalidate", url] => {
            let cache = Cache::from_url(&format!("local:100,{}", with_secret(url))).unwrap();
            cache.invalidate_blocking(&backplane_space(), &5u32);
            0
        }
        ["overwrite", url] => {
            let cache = Cache::from_url(&format!("local:100,{}", with_secret(url))).unwrap();
            cache.set_blocking(&backplane_space(), &5u32, 999u64, TTL);
            0
        }
        _ => {
            eprintln!("unknown role {raw:?}");
            2
        }
    };
    std::process::exit(code);
}

fn spawn_role(test_name: &str, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn role process")
}

fn record(count_file: &Path, input: u32) {
    let line = format!("{input} {} {}\n", std::process::id(), unix_ms());
    let mut f = OpenOptions::new().create(true).append(true).open(count_file).unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

const LOAD_INPUTS: u32 = 50;

/// Calls over 50 inputs of a 50 ms function from 2 threads until `stop_file` exists, through a cache
/// with Redis only (no local tier, so every call goes to Redis and an outage is felt by every
/// call). Exits 0 if every call returned the right value.
fn load_worker(url: &str, count_file: &Path, stop_file: &Path, index: u32) -> i32 {
    let cache = Cache::builder()
        .shared_url(&with_secret(url))
        .op_timeout(Duration::from_millis(200))
        .breaker(2, Duration::from_millis(300))
        .lease_ttl(Duration::from_secs(3))
        .lease_wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let space = KeySpace::new("outage_load", 1).unwrap();
    let (bad, calls) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u32)
            .map(|t| {
                let (cache, space) = (&cache, &space);
                s.spawn(move || {
                    let (mut bad, mut calls) = (0u64, 0u64);
                    let mut k = t;
                    while !stop_file.exists() {
                        let input = (k.wrapping_mul(7) + index * 11) % LOAD_INPUTS;
                        let v = cache.get_or_compute_blocking(space, &input, TTL, || {
                            record(count_file, input);
                            std::thread::sleep(Duration::from_millis(50));
                            expected_value(input)
                        });
                        if v != expected_value(input) {
                            bad += 1;
                        }
                        calls += 1;
                        k += 2;
                    }
                    (bad, calls)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let st = cache.stats();
    eprintln!(
        "load worker {index}: calls={calls} wrong={bad} computations={} shared_hits={} store_errors={} breaker_skips={}",
        st.computations, st.shared_hits, st.store_errors, st.breaker_skips
    );
    i32::from(bad != 0) * 3
}

/// Computation timestamps (unix ms) from a count file written by [`record`].
fn computation_times(count_file: &Path) -> Vec<u64> {
    std::fs::read_to_string(count_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(2)?.parse().ok())
        .collect()
}

#[test]
fn redis_killed_mid_load_every_call_right_and_cache_used_again_after_restart() {
    worker_entry();
    let _alone = common::alone();
    let test_name = &test_path(
        module_path!(),
        "redis_killed_mid_load_every_call_right_and_cache_used_again_after_restart",
    );
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let count_file: PathBuf = dir.path().join("computations.log");
    let stop_file: PathBuf = dir.path().join("stop");
    let mut workers: Vec<_> = (0..4)
        .map(|i| {
            let role =
                format!("load\n{}\n{}\n{}\n{i}", server.url(), count_file.display(), stop_file.display());
            spawn_role(test_name, &role)
        })
        .collect();
    // Let the load get going, then crash Redis under it.
    assert!(common::wait_for_lines(&count_file, 20, Duration::from_secs(30)), "load never started");
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = unix_ms();
    server.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let restarted_at = unix_ms();
    // Keep the load going well past the restart, then stop the workers.
    std::thread::sleep(Duration::from_millis(5_000));
    std::fs::write(&stop_file, b"stop").unwrap();
    for w in &mut workers {
        assert!(w.wait().unwrap().success(), "a worker got a wrong value or failed");
    }
    let times = computation_times(&count_file);
    let before = times.iter().filter(|&&t| t < killed_at).count();
    let during = times.iter().filter(|&&t| t >= killed_at && t < restarted_at).count();
    // After the restart, Redis is empty: each input is computed about once more, then served
    // from Redis. Past a settling window (breaker cooldown, first recomputations), a cache
    // still in use computes at most once per input, while calls keep coming by hundreds.
    let late = times.iter().filter(|&&t| t >= restarted_at + 2_000).count();
    eprintln!(
        "outage load: {} computations ({before} before the kill, {during} during the outage, {late} from 2 s after the restart)",
        times.len()
    );
    assert!(before <= LOAD_INPUTS as usize, "single-flight failed before the outage: {before}");
    assert!(during > 0, "the outage was not felt (no computation while Redis was down)");
    assert!(
        late <= LOAD_INPUTS as usize,
        "{late} computations late after the restart: Redis is not used again"
    );
    let stored: u64 = server.command(&["DBSIZE"]).parse().unwrap();
    assert!(stored >= u64::from(LOAD_INPUTS), "only {stored} keys on the restarted server");
}

fn backplane_space() -> KeySpace {
    KeySpace::new("backplane", 1).unwrap()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Process B (this one) holds a value in its local tier; process A invalidates, then
/// overwrites; B must stop serving its local copy each time. `del` deletes a Redis name.
fn backplane_between_processes(test_name: &str, url: &str, del: &dyn Fn(&str) -> String) {
    let space = backplane_space();
    // This process is "B": a local tier in front of Redis.
    let b = Cache::from_url(&format!("local:100,{}", with_secret(url))).unwrap();
    assert_eq!(b.get_or_compute_blocking(&space, &5u32, TTL, || 100u64), 100);
    assert_eq!(b.get_or_compute_blocking(&space, &5u32, TTL, || 0u64), 100);
    assert_eq!(b.stats().local_hits, 1);
    // Remove the Redis copy behind B's back: B keeps serving its local copy (so what follows
    // tests the local tier, not a Redis read).
    let text = space.key(&5u32).unwrap().as_str().to_owned();
    assert_eq!(del(&value_key("larder:", &text)), "1");
    assert_eq!(b.get_blocking::<_, u64>(&space, &5u32), Some(100));

    // Process A invalidates.
    let mut a = spawn_role(test_name, &format!("invalidate\n{url}"));
    assert!(a.wait().unwrap().success());
    wait_until("B's local tier drops the invalidated key", || {
        b.get_blocking::<_, u64>(&space, &5u32).is_none()
    });
    assert!(b.stats().invalidations_received >= 1);
    assert_eq!(
        b.get_or_compute_blocking(&space, &5u32, TTL, || 200u64),
        200,
        "recomputed after invalidation"
    );

    // Process A overwrites: B sees the new value, not its local 200.
    let mut a = spawn_role(test_name, &format!("overwrite\n{url}"));
    assert!(a.wait().unwrap().success());
    wait_until("B sees A's overwrite", || b.get_blocking::<_, u64>(&space, &5u32) == Some(999));
}

#[test]
fn invalidation_in_one_process_clears_another_process_local_tier() {
    worker_entry();
    let _alone = common::alone();
    let server = RedisServer::start();
    backplane_between_processes(
        &test_path(module_path!(), "invalidation_in_one_process_clears_another_process_local_tier"),
        &server.url(),
        &|name| server.command(&["DEL", name]),
    );
}

#[test]
fn invalidation_across_processes_on_the_cluster() {
    worker_entry();
    let _alone = common::alone();
    let cluster = RedisCluster::start(3);
    // DEL on whichever node owns the slot (the others answer MOVED).
    let del = |name: &str| {
        cluster
            .nodes()
            .iter()
            .map(|n| n.command(&["DEL", name]))
            .find(|r| !r.starts_with("ERR:MOVED"))
            .unwrap_or_default()
    };
    backplane_between_processes(
        &test_path(module_path!(), "invalidation_across_processes_on_the_cluster"),
        &cluster.url(),
        &del,
    );
}

#[test]
fn killed_lease_holder_on_redis_is_taken_over_within_lease_ttl() {
    worker_entry();
    let _alone = common::alone();
    let name = &test_path(module_path!(), "killed_lease_holder_on_redis_is_taken_over_within_lease_ttl");
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let count_file = dir.path().join("count.log");
    let lease_ttl_ms = 2_000;
    let base = common::WorkerSpec {
        cache_spec: format!("local:100,{}", with_secret(&server.url())),
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
    let mut holder = common::spawn_worker(name, &base);
    assert!(
        common::wait_for_lines(&count_file, 1, Duration::from_secs(20)),
        "holder never started computing"
    );
    let holder_started = Instant::now();
    // The lease is in Redis, held by the holder.
    let text = KeySpace::new("seed_calc", 1).unwrap().key(&0u32).unwrap().as_str().to_owned();
    let lease = larder_cache::redis::lease_key("larder:", &text);
    assert_eq!(server.command(&["EXISTS", &lease]), "1", "no lease in Redis while computing");
    let mut waiter = common::spawn_worker(
        name,
        &common::WorkerSpec { compute_ms: 100, start_at_ms: unix_ms(), ..base.clone() },
    );
    std::thread::sleep(Duration::from_millis(300));
    holder.kill().unwrap(); // SIGKILL: the lease is never released, only expires
    holder.wait().unwrap();
    let status = waiter.wait().unwrap();
    let took = holder_started.elapsed();
    assert!(status.success(), "the waiting worker failed");
    assert!(
        took < Duration::from_millis(lease_ttl_ms + 1_500),
        "took over after {took:?}, lease TTL {lease_ttl_ms} ms"
    );
    assert_eq!(common::computations_per_input(&count_file).get(&0), Some(&2), "holder + taker");
    // The value is now in Redis: a third worker does not compute.
    let third =
        common::spawn_worker(name, &common::WorkerSpec { compute_ms: 100, start_at_ms: unix_ms(), ..base })
            .wait()
            .unwrap();
    assert!(third.success());
    assert_eq!(common::computations_per_input(&count_file).get(&0), Some(&2));
    eprintln!("redis lease takeover after the holder's start: {took:?}");
}
