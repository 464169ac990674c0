//! Blind index vs full decrypt scan on a real PostgreSQL (a plain harness, not criterion: one
//! table load takes tens of seconds).
//!
//! ```sh
//! cargo bench -p larder-envelope --bench blind_index_pg            # 1,000,000 rows, 16 bits
//! LARDER_BIDX_ROWS=100000 LARDER_BIDX_BITS=12 cargo bench -p larder-envelope --bench blind_index_pg
//! ```
//!
//! Prints: load time (encrypt + index + COPY + CREATE INDEX), the median and p99 of 200
//! lookups of stored numbers through the index (btree lookup, fetch the candidates, decrypt
//! them, drop false positives), candidates per lookup, and the time of full decrypt scans
//! (stream every row, decrypt it, compare), measured in the same run.

#[path = "../tests/it/pg_phones.rs"]
mod pg_phones;

use std::time::{Duration, Instant};

use larder_testkit::postgres::PgServer;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a quick
    // run: do a tiny one then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rows = if quick { 2_000 } else { env_u64("LARDER_BIDX_ROWS", 1_000_000) };
    let bits = env_u64("LARDER_BIDX_BITS", 16) as u16;
    let lookups = if quick { 10 } else { 200 };
    let scans = if quick { 1 } else { 3 };

    let pg = PgServer::start();
    let mut w = pg_phones::load(&pg.conn_str(), rows, bits);
    println!(
        "blind_index_pg: {} rows, {bits}-bit index; load {:.1} s (encrypt + blind index {:.1} s)",
        rows + 3,
        w.load_time.as_secs_f64(),
        w.encrypt_time.as_secs_f64()
    );
    let sample: Vec<String> = w.sample.iter().cycle().take(lookups).cloned().collect();
    let mut times = Vec::with_capacity(lookups);
    let mut candidates = 0u64;
    for phone in &sample {
        let t = Instant::now();
        let found = w.find_by_index(phone);
        times.push(t.elapsed());
        assert!(!found.ids.is_empty());
        candidates += found.candidates;
    }
    times.sort();
    let median = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    let mut scan_times = Vec::new();
    for _ in 0..scans {
        let t = Instant::now();
        let found = w.find_by_scan(pg_phones::TARGET);
        scan_times.push(t.elapsed());
        assert_eq!(found.ids, w.target_ids);
    }
    scan_times.sort();
    let scan = scan_times[scan_times.len() / 2];
    println!(
        "  index lookup: median {:.2} ms, p99 {:.2} ms, {:.1} candidates per lookup ({} lookups)",
        ms(median),
        ms(p99),
        candidates as f64 / lookups as f64,
        lookups
    );
    println!(
        "  full decrypt scan: median {:.0} ms of {scans} ({:.0} ns per row)",
        ms(scan),
        scan.as_nanos() as f64 / (rows + 3) as f64
    );
    println!("  ratio: the index lookup is {:.0}x faster", scan.as_secs_f64() / median.as_secs_f64());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
