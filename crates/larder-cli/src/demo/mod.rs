//! `larder demo`: both stories, end to end, with real processes, threads and numbers.

pub mod cache;
mod gen;
mod phones;
mod table;
pub mod workers;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{DemoArgs, DemoPart, KeyMode};
use crate::util::{self, Usage};
use table::{duration_ms, thousands};
use workers::RunResult;

/// Everything the demo measured (`--json` prints this).
#[derive(Serialize)]
struct Report {
    /// The shared cache tier URL the workers used.
    store: String,
    /// Where the keys came from (`local keyring at PATH` or the KMS key).
    keyring: String,
    workers: Option<WorkersReport>,
    phones: Option<phones::PhonesReport>,
}

#[derive(Serialize)]
struct WorkersReport {
    requests: u32,
    inputs: u32,
    distinct_inputs_requested: usize,
    zipf_exponent: f64,
    seed: u64,
    workers: u32,
    threads_per_worker: u32,
    compute_ms: u64,
    std_hasher: RunResult,
    larder: RunResult,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let human = !args.json;
    let say = |s: String| {
        if human {
            println!("{s}");
        }
    };

    // Embedded defaults live in temporary directories removed when the demo ends.
    let scratch = tempfile::Builder::new()
        .prefix("larder-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let store = match &args.store {
        Some(url) => url.clone(),
        None => format!("sqlite:{}", scratch.path().join("cache.sqlite").display()),
    };
    let keyring = phones::KeyringSetup::new(&args, scratch.path())?;
    say("larder demo".to_string());
    say(format!(
        "  shared cache tier: {store}{}",
        if args.store.is_none() { "  (embedded default, temporary)" } else { "" }
    ));
    say(format!("  keyring:           {}", keyring.describe()));
    say(String::new());

    let run_workers = args.only.is_none_or(|p| p == DemoPart::Workers);
    let run_phones = args.only.is_none_or(|p| p == DemoPart::Phones);

    let mut report =
        Report { store: store.clone(), keyring: keyring.describe(), workers: None, phones: None };

    if run_workers {
        let all = gen::zipf_requests(args.seed, args.requests, args.inputs, args.zipf);
        let distinct = gen::distinct(&all);
        say(table::wrap(
            &format!(
            "Story A: the cache that never hit. {} requests for a {} ms calculation, spread over {} worker \
             processes x {} threads; inputs drawn from {} (Zipf s={}, seed {}), {} distinct requested.",
            thousands(u64::from(args.requests)),
            args.compute_ms,
            args.workers,
            args.threads,
            args.inputs,
            args.zipf,
            args.seed,
            distinct
        ),
            100,
        ));
        // A fresh namespace per demo run: a persistent store (Redis) must not answer from an
        // earlier run.
        // A shared tier needs a MAC secret (a Redis tier without one is refused): when the user
        // set none, the demo makes one for this run and hands it to its workers only. The
        // embedded SQLite store creates its own per-store secret.
        let run_secret = demo_secret(args.store.as_deref())?;
        let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let mut results = Vec::new();
        for (mode, label) in [
            (KeyMode::StdHasher, "(a) std RandomState keys"),
            (KeyMode::Larder, "(b) larder keys + single-flight"),
        ] {
            let bar = util::progress(Some(u64::from(args.requests)), label.split(' ').next().unwrap_or(""));
            bar.set_message(label.to_string());
            let ns =
                format!("larder-demo.{run_id}.{}", if mode == KeyMode::Larder { "larder" } else { "std" });
            let r = workers::run(&args, &store, &ns, mode, run_secret.as_deref(), &bar);
            bar.finish_and_clear();
            results.push(r.with_context(|| format!("run {label} failed"))?);
        }
        let (Some(std_run), Some(larder_run)) = (results.first().cloned(), results.get(1).cloned()) else {
            anyhow::bail!("internal error: a worker run is missing");
        };
        let rows: Vec<Vec<String>> = [
            ("(a) std RandomState keys (the bug)", &std_run),
            ("(b) larder keys + single-flight", &larder_run),
        ]
        .iter()
        .map(|(label, r)| {
            vec![
                label.to_string(),
                thousands(r.computations),
                format!("{:.1}%", r.hit_ratio * 100.0),
                duration_ms(r.wall_ms),
                duration_ms(r.p50_ms),
                duration_ms(r.p99_ms),
                thousands(r.wrong),
            ]
        })
        .collect();
        say(String::new());
        say(table::render(
            &["run", "computations", "hit ratio", "wall time", "p50 latency", "p99 latency", "wrong answers"],
            &rows,
        ));
        let factor = std_run.computations as f64 / larder_run.computations.max(1) as f64;
        say(table::wrap(&format!(
            "larder computed {} times for {} distinct inputs across all {} workers; the per-process seeded \
             hasher made every worker miss the others' entries: {:.1}x the computations, {:.1}x the wall time.",
            larder_run.computations,
            distinct,
            args.workers,
            factor,
            std_run.wall_ms / larder_run.wall_ms.max(0.001)
        ), 100));
        say(format!(
            "Cache keys for the same input across the {} workers: (a) {} different, (b) {}.",
            args.workers, std_run.distinct_keys_for_one_input, larder_run.distinct_keys_for_one_input
        ));
        say(format!(
            "Run (b) coordination: {} waits on another worker's lease, {} lease timeouts, {} shared-tier errors.",
            larder_run.lease_waits, larder_run.lease_timeouts, larder_run.store_errors
        ));
        say(String::new());
        report.workers = Some(WorkersReport {
            requests: args.requests,
            inputs: args.inputs,
            distinct_inputs_requested: distinct,
            zipf_exponent: args.zipf,
            seed: args.seed,
            workers: args.workers,
            threads_per_worker: args.threads,
            compute_ms: args.compute_ms,
            std_hasher: std_run,
            larder: larder_run,
        });
    }

    if run_phones {
        let p = phones::run(&args, &keyring)?;
        if human {
            print!("{}", phones::render(&args, &keyring, &p));
        }
        report.phones = Some(p);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let failed = report.workers.as_ref().is_some_and(|w| w.std_hasher.wrong + w.larder.wrong > 0)
        || report.phones.as_ref().is_some_and(|p| p.errors() > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn validate(args: &DemoArgs) -> anyhow::Result<()> {
    let positive = [
        ("--requests", u64::from(args.requests)),
        ("--inputs", u64::from(args.inputs)),
        ("--workers", u64::from(args.workers)),
        ("--threads", u64::from(args.threads)),
        ("--phones", u64::from(args.phones)),
        ("--phones-uncached", u64::from(args.phones_uncached)),
        ("--phone-threads", u64::from(args.phone_threads)),
    ];
    for (flag, v) in positive {
        if v == 0 {
            return Err(Usage::err(format!("{flag} must be at least 1")));
        }
    }
    if args.workers > 64 || args.threads > 256 || args.phone_threads > 1024 {
        return Err(Usage::err("at most 64 --workers, 256 --threads and 1024 --phone-threads"));
    }
    if !(args.zipf.is_finite() && args.zipf >= 0.0 && args.zipf <= 10.0) {
        return Err(Usage::err("--zipf must be between 0 and 10"));
    }
    if args.compute_ms > 10_000 {
        return Err(Usage::err("--compute-ms must be at most 10000"));
    }
    Ok(())
}

/// A fresh 32-byte secret (hex) for a demo run on a user-given store that has none configured
/// (`LARDER_KEY_SECRET` unset, no `secret=` in the URL); `None` otherwise.
fn demo_secret(store: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(url) = store else { return Ok(None) };
    let configured = std::env::var_os("LARDER_KEY_SECRET").is_some_and(|v| !v.is_empty())
        || url.contains("secret=")
        || url.starts_with("sqlite:");
    if configured {
        return Ok(None);
    }
    let mut raw = [0u8; 32];
    larder_fork::fill_os(&mut raw).map_err(|e| anyhow::anyhow!("the OS RNG failed: {e}"))?;
    Ok(Some(raw.iter().map(|b| format!("{b:02x}")).collect()))
}
