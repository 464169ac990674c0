//! Part 1 of the demo: worker processes sharing one cache (story A, "the cache that never hit").
//!
//! The parent spawns `--workers` copies of this very binary in the hidden `__worker` mode. Each
//! worker opens the shared tier, says it is ready, waits for "go" on stdin (so process start-up
//! is not timed), then serves its share of the requests with `--threads` threads. It reports on
//! stdout, one JSON object per line: every request's latency, every computation it ran (counted
//! outside the cache, in the compute closure itself) and a final summary.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};

use super::gen;
use crate::cli::{DemoArgs, KeyMode, WorkerArgs};

/// One line of a worker's report.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Event {
    /// The cache is open; waiting for "go". `probe` is the cache key this worker uses for
    /// the demo's most requested input (shows whether the workers agree on keys).
    Ready { pid: u32, probe: String },
    /// One request answered, in this many microseconds.
    Req { us: u64 },
    /// The computation ran (outside the cache) for this input.
    Computed { input: u32 },
    /// All requests served.
    Done {
        requests: u64,
        computations: u64,
        wrong: u64,
        store_errors: u64,
        lease_waits: u64,
        lease_timeouts: u64,
    },
    /// The worker failed before finishing.
    Failed { message: String },
}

/// The loan quote the demo's "slow calculation" prices: the structured key of the seed's
/// lessons (`loan_calc:{user_id}:{amount}:{rate}:{term}`). `Hash` is derived only to
/// reproduce the bug with the std hasher.
#[derive(larder::StableKey, Hash, Clone, Copy, Debug)]
pub struct LoanQuote {
    pub user_id: u64,
    pub amount_won: u64,
    pub rate_bp: u32,
    pub term_months: u32,
}

impl LoanQuote {
    /// The demo input of rank `r`.
    pub fn for_rank(r: u32) -> Self {
        LoanQuote {
            user_id: 10_000 + u64::from(r),
            amount_won: 1_000_000 + u64::from(r) * 250_000,
            rate_bp: 300 + (r % 40) * 10,
            term_months: 12 * (1 + r % 5),
        }
    }

    /// The monthly payment in won (annuity formula), the value being cached.
    pub fn monthly_payment(&self) -> u64 {
        let p = self.amount_won as f64;
        let i = f64::from(self.rate_bp) / 10_000.0 / 12.0;
        let n = f64::from(self.term_months);
        (p * i / (1.0 - (1.0 + i).powf(-n))).round() as u64
    }
}

/// The outcome of one run (all workers).
#[derive(Serialize, Debug, Clone)]
pub struct RunResult {
    pub mode: KeyMode,
    /// Computations counted outside the cache, summed over workers.
    pub computations: u64,
    /// Requests answered.
    pub requests: u64,
    /// (requests − computations) / requests.
    pub hit_ratio: f64,
    pub wall_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers that differed from the right value (must be 0).
    pub wrong: u64,
    /// Shared-tier calls that failed or timed out (the cache then computes: fail-open).
    pub store_errors: u64,
    /// Times a worker waited for another worker's lease (cross-process single-flight).
    pub lease_waits: u64,
    /// Lease waits that gave up and computed themselves.
    pub lease_timeouts: u64,
    /// Process ids of the worker processes.
    pub worker_pids: Vec<u32>,
    /// How many different cache keys the workers made for the same input (1 is right).
    pub distinct_keys_for_one_input: usize,
}

/// Runs the requests through `workers` processes with key mode `mode`.
pub fn run(
    args: &DemoArgs,
    store: &str,
    namespace: &str,
    mode: KeyMode,
    secret: Option<&str>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<RunResult> {
    let exe = std::env::current_exe().context("cannot find the larder binary to start workers")?;
    let (tx, rx) = mpsc::channel::<(u32, Option<Event>)>();
    let mut children: Vec<(Child, ChildStdin)> = Vec::new();
    let mut stderr_bufs: Vec<Arc<Mutex<String>>> = Vec::new();
    for index in 0..args.workers {
        let mut child = Command::new(&exe)
            .arg("__worker")
            .args(["--store", store, "--namespace", namespace])
            .args(["--mode", mode_name(mode)])
            .args(["--index", &index.to_string(), "--workers", &args.workers.to_string()])
            .args(["--requests", &args.requests.to_string(), "--inputs", &args.inputs.to_string()])
            .args(["--zipf", &args.zipf.to_string(), "--seed", &args.seed.to_string()])
            .args(["--threads", &args.threads.to_string(), "--compute-ms", &args.compute_ms.to_string()])
            .envs(secret.map(|s| ("LARDER_KEY_SECRET", s)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start worker process {}", exe.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("worker process {index} has no pipes");
        };
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ev = serde_json::from_str::<Event>(&line).unwrap_or_else(|e| Event::Failed {
                    message: format!("unreadable report line {line:?}: {e}"),
                });
                if tx.send((index, Some(ev))).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, None));
        });
        let buf = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&buf);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        stderr_bufs.push(buf);
        children.push((child, stdin));
    }
    drop(tx);

    let result = collect(args, mode, &rx, &mut children, &stderr_bufs, bar);
    for (child, _) in &mut children {
        if result.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    result
}

fn collect(
    args: &DemoArgs,
    mode: KeyMode,
    rx: &mpsc::Receiver<(u32, Option<Event>)>,
    children: &mut [(Child, ChildStdin)],
    stderr_bufs: &[Arc<Mutex<String>>],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<RunResult> {
    let worker_failed = |index: u32, what: String| {
        let stderr = stderr_bufs
            .get(index as usize)
            .and_then(|b| b.lock().ok().map(|s| s.trim().to_string()))
            .unwrap_or_default();
        if stderr.is_empty() {
            anyhow!("worker process {index} {what}")
        } else {
            anyhow!("worker process {index} {what}; its stderr:\n{stderr}")
        }
    };
    let deadline = Duration::from_secs(120);

    // Phase 1: every worker has opened the cache.
    let mut ready = 0;
    let (mut pids, mut probes) = (Vec::new(), Vec::new());
    while ready < children.len() {
        match rx.recv_timeout(deadline) {
            Ok((_, Some(Event::Ready { pid, probe }))) => {
                ready += 1;
                pids.push(pid);
                probes.push(probe);
            }
            Ok((i, Some(Event::Failed { message }))) => {
                return Err(worker_failed(i, format!("failed: {message}")))
            }
            Ok((i, None)) => return Err(worker_failed(i, "exited before it was ready".into())),
            Ok((i, Some(other))) => {
                return Err(worker_failed(i, format!("sent {other:?} before it was ready")))
            }
            Err(_) => bail!("worker processes did not open the cache within {} s", deadline.as_secs()),
        }
    }

    // Phase 2: all start together.
    let start = Instant::now();
    for (_, stdin) in children.iter_mut() {
        stdin.write_all(b"go\n").context("cannot signal a worker process to start")?;
        stdin.flush().context("cannot signal a worker process to start")?;
    }
    let mut latencies_us: Vec<u64> = Vec::with_capacity(args.requests as usize);
    let (mut done, mut computations, mut requests, mut wrong, mut counted) = (0, 0, 0, 0, 0u64);
    let (mut store_errors, mut lease_waits, mut lease_timeouts) = (0, 0, 0);
    let mut wall = Duration::ZERO;
    let mut finished = vec![false; children.len()];
    while done < children.len() {
        match rx.recv_timeout(deadline) {
            Ok((_, Some(Event::Req { us }))) => {
                latencies_us.push(us);
                bar.inc(1);
            }
            Ok((_, Some(Event::Computed { .. }))) => counted += 1,
            Ok((
                i,
                Some(Event::Done {
                    requests: r,
                    computations: c,
                    wrong: w,
                    store_errors: se,
                    lease_waits: lw,
                    lease_timeouts: lt,
                }),
            )) => {
                done += 1;
                if let Some(f) = finished.get_mut(i as usize) {
                    *f = true;
                }
                requests += r;
                computations += c;
                wrong += w;
                store_errors += se;
                lease_waits += lw;
                lease_timeouts += lt;
                wall = start.elapsed();
            }
            Ok((i, Some(Event::Failed { message }))) => {
                return Err(worker_failed(i, format!("failed: {message}")))
            }
            // A worker that already sent its summary closes its pipe: fine.
            Ok((i, None)) if finished.get(i as usize).copied().unwrap_or(false) => {}
            Ok((i, None)) => return Err(worker_failed(i, "exited before finishing its requests".into())),
            Ok((i, Some(Event::Ready { .. }))) => return Err(worker_failed(i, "said ready twice".into())),
            Err(_) => bail!("worker processes did not finish within {} s", deadline.as_secs()),
        }
    }
    // Lines are written before the summary, on the same pipe, so the counts must agree.
    if counted != computations {
        bail!("workers reported {computations} computations in summaries but {counted} individually");
    }
    latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p * latencies_us.len() as f64).ceil() as usize).clamp(1, latencies_us.len());
        latencies_us.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok(RunResult {
        mode,
        computations,
        requests,
        hit_ratio: if requests == 0 {
            0.0
        } else {
            requests.saturating_sub(computations) as f64 / requests as f64
        },
        wall_ms: wall.as_secs_f64() * 1000.0,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        wrong,
        store_errors,
        lease_waits,
        lease_timeouts,
        distinct_keys_for_one_input: {
            let mut p = probes.clone();
            p.sort();
            p.dedup();
            p.len()
        },
        worker_pids: pids,
    })
}

fn mode_name(mode: KeyMode) -> &'static str {
    match mode {
        KeyMode::StdHasher => "std-hasher",
        KeyMode::Larder => "larder",
    }
}

/// Writes report lines from many threads, one whole line at a time.
struct Reporter(Mutex<std::io::Stdout>);

impl Reporter {
    fn send(&self, ev: &Event) {
        // A parent that went away cannot be told anything; the worker simply finishes.
        if let (Ok(line), Ok(mut out)) = (serde_json::to_string(ev), self.0.lock()) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// The hidden `__worker` mode.
pub fn worker_main(args: WorkerArgs) -> anyhow::Result<std::process::ExitCode> {
    let reporter = Reporter(Mutex::new(std::io::stdout()));
    match serve(&args, &reporter) {
        Ok(()) => Ok(std::process::ExitCode::SUCCESS),
        Err(e) => {
            reporter.send(&Event::Failed { message: format!("{e:#}") });
            Ok(std::process::ExitCode::from(1))
        }
    }
}

fn serve(args: &WorkerArgs, reporter: &Reporter) -> anyhow::Result<()> {
    let all = gen::zipf_requests(args.seed, args.requests, args.inputs, args.zipf);
    let mine = gen::share(&all, args.index, args.workers.max(1));
    let cache = super::cache::DemoCache::open(&args.store, &args.namespace)?;
    // The seed's bug: one randomly keyed hasher per process, like Python's per-process hash().
    let hasher = RandomState::new();

    let probe_input = LoanQuote::for_rank(0);
    let probe = match args.mode {
        KeyMode::StdHasher => format!("{:016x}", hasher.hash_one(probe_input)),
        KeyMode::Larder => cache.key_text(&probe_input)?,
    };
    reporter.send(&Event::Ready { pid: std::process::id(), probe });
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).context("waiting for the start signal")?;

    let next = AtomicUsize::new(0);
    let computations = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    let compute_time = Duration::from_millis(args.compute_ms);
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&rank) = mine.get(i) else { break };
                let quote = LoanQuote::for_rank(rank);
                let compute = || {
                    computations.fetch_add(1, Ordering::Relaxed);
                    reporter.send(&Event::Computed { input: rank });
                    std::thread::sleep(compute_time);
                    quote.monthly_payment()
                };
                let t0 = Instant::now();
                let answer = match args.mode {
                    KeyMode::StdHasher => cache.get_or_compute(&hasher.hash_one(quote), compute),
                    KeyMode::Larder => cache.get_or_compute(&quote, compute),
                };
                let us = t0.elapsed().as_micros() as u64;
                if answer != quote.monthly_payment() {
                    wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "request for input {rank} answered {answer}, expected {}",
                        quote.monthly_payment()
                    );
                }
                reporter.send(&Event::Req { us });
            });
        }
    });
    let stats = cache.stats();
    reporter.send(&Event::Done {
        requests: mine.len() as u64,
        computations: computations.load(Ordering::Relaxed),
        wrong: wrong.load(Ordering::Relaxed),
        store_errors: stats.store_errors,
        lease_waits: stats.lease_waits,
        lease_timeouts: stats.lease_timeouts,
    });
    Ok(())
}
