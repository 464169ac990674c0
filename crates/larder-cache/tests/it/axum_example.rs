//! The example service (`examples/axum_prometheus.rs`) as a real process: three requests for
//! one quote, then a scrape of `/metrics`, whose `larder_cache_*` series must say what
//! happened — one computation, one local miss then two local hits, one shared-tier miss, one
//! `call_seconds` sample — labelled by the handler's namespace, `quote`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example's binary, built beside this test binary by `cargo test` (which builds a
/// package's examples) or `cargo build -p larder-cache --example axum_prometheus`.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/debug");
    let bin = dir.join("examples").join("axum_prometheus");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p larder-cache --example axum_prometheus` \
         (a plain `cargo test -p larder-cache` builds it too)",
        bin.display()
    );
    bin
}

/// Kills the service when the test ends, passed or not.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET; returns the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {raw:?}"));
    let status =
        head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("status in {head:?}"));
    (status, body.to_owned())
}

/// The samples of a Prometheus text exposition: `name{k="v",…}` (labels sorted) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value.parse().unwrap_or_else(|_| panic!("value in {line:?}")));
    }
    out
}

#[test]
fn three_requests_for_one_quote_scrape_as_one_computation_and_two_hits() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(example_binary())
        .arg("127.0.0.1:0")
        .env("LARDER_CACHE", format!("local:1000,sqlite:{}", dir.path().join("quotes.db").display()))
        .env_remove("LARDER_KEY_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example service");
    let stdout = child.stdout.take().unwrap();
    let service = Service(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line {line:?}")).to_owned();

    for _ in 0..3 {
        assert_eq!(get(&addr, "/quote/42"), (200, "42007".to_owned()));
    }
    let (status, text) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    let m = samples(&text);
    let at = |series: &str| m.get(series).copied().unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(at(r#"larder_cache_computations_total{namespace="quote"}"#), 1.0);
    assert_eq!(at(r#"larder_cache_misses_total{namespace="quote",tier="local"}"#), 1.0);
    assert_eq!(at(r#"larder_cache_hits_total{namespace="quote",tier="local"}"#), 2.0);
    assert_eq!(at(r#"larder_cache_misses_total{namespace="quote",tier="sqlite"}"#), 1.0);
    assert_eq!(at(r#"larder_cache_call_seconds_count{namespace="quote",outcome="computed"}"#), 1.0);
    assert_eq!(at(r#"larder_cache_compute_seconds_count{namespace="quote"}"#), 1.0);
    assert_eq!(at(r#"larder_cache_breaker_open{tier="sqlite"}"#), 0.0);
    // Nothing went wrong, and no other namespace was counted.
    let errors = m.get(r#"larder_cache_compute_errors_total{namespace="quote"}"#).copied().unwrap_or(0.0);
    assert_eq!(errors, 0.0, "{text}");
    assert!(
        m.keys().filter(|k| k.contains("namespace=")).all(|k| k.contains(r#"namespace="quote""#)),
        "{text}"
    );
    drop(service);
}
