//! SQLite tier hits per second with 1 and 4 worker processes on one file (no local tier, so
//! every call is a SQLite read + MAC check + decode). Not criterion: it re-invokes itself as
//! worker processes and prints the totals. The workers of a run open the cache, then wait on
//! stdin and start together; 1-process and 4-process runs alternate (7 of each) and the
//! medians are compared, so load drift on a shared machine hits both sides.
//!
//! `cargo bench -p larder-cache --bench sqlite_processes`

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use larder_cache::{Cache, KeySpace};

const WORKER_ENV: &str = "LARDER_SQLITE_BENCH_WORKER";
const KEYS: u32 = 50;
const CALLS: u32 = 100_000;
const ROUNDS: usize = 7;

fn cache(path: &str) -> Cache {
    Cache::builder().shared_url(&format!("sqlite:{path}")).xfetch_beta(0.0).build().expect("cache")
}

fn worker(path: &str) {
    let cache = cache(path);
    let space = KeySpace::new("bench_procs", 1).expect("space");
    // Ready: wait for the parent's go (one byte on stdin), so every worker runs at once.
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).expect("start signal");
    let start = Instant::now();
    for i in 0..CALLS {
        let k = i % KEYS;
        let v = cache.get_or_compute_blocking(&space, &k, Duration::from_secs(3600), || u64::MAX);
        assert_eq!(v, u64::from(k) * 3, "every call must be a hit with the stored value");
    }
    let elapsed = start.elapsed();
    let st = cache.stats();
    assert_eq!(st.computations, 0);
    println!("{} {}", st.shared_hits, elapsed.as_nanos());
}

fn run(path: &str, procs: usize) -> f64 {
    let exe = std::env::current_exe().expect("exe");
    let mut children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .env(WORKER_ENV, path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // every worker has opened its cache
    for c in &mut children {
        c.stdin.take().expect("stdin").write_all(b"g").expect("start worker");
    }
    let mut hits = 0u64;
    let mut slowest = 0u128;
    for c in children {
        let out = c.wait_with_output().expect("worker output");
        assert!(out.status.success(), "worker failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        hits += it.next().and_then(|s| s.parse::<u64>().ok()).expect("hits");
        slowest = slowest.max(it.next().and_then(|s| s.parse::<u128>().ok()).expect("ns"));
    }
    hits as f64 / (slowest as f64 / 1e9)
}

fn main() {
    if let Ok(path) = std::env::var(WORKER_ENV) {
        worker(&path);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db").display().to_string();
    let c = cache(&path);
    let space = KeySpace::new("bench_procs", 1).expect("space");
    for k in 0..KEYS {
        c.get_or_compute_blocking(&space, &k, Duration::from_secs(3600), || u64::from(k) * 3);
    }
    let (mut ones, mut fours) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ones.push(run(&path, 1));
        fours.push(run(&path, 4));
    }
    for v in [&mut ones, &mut fours] {
        v.sort_by(f64::total_cmp);
    }
    let (one, four) = (ones[ROUNDS / 2], fours[ROUNDS / 2]);
    println!("sqlite tier hits/s, {CALLS} calls per process over {KEYS} keys, medians of {ROUNDS} alternating runs:");
    println!("  1 process : {one:>10.0} hits/s (runs: {:.0} .. {:.0})", ones[0], ones[ROUNDS - 1]);
    println!(
        "  4 processes: {four:>10.0} hits/s (total; {:.2}x one process; runs: {:.0} .. {:.0})",
        four / one,
        fours[0],
        fours[ROUNDS - 1]
    );
}
