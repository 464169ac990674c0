//! `larder demo` end to end at small sizes: real worker processes sharing a real SQLite file,
//! real threads sharing one envelope on a real keyring file.

use crate::common;

use common::{check_workers, stderr_text, stdout_text, Sandbox, SMALL};
use serde_json::Value;

#[test]
fn demo_json_numbers_are_consistent() {
    let sb = Sandbox::new();
    let out = sb.larder().args(["demo", "--json"]).args(SMALL).output().unwrap();
    assert!(out.status.success(), "demo failed:\n{}\n{}", stdout_text(&out), stderr_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON document");
    assert!(v["store"].as_str().unwrap().starts_with("sqlite:"), "{}", v["store"]);
    check_workers(&v);

    let p = &v["phones"];
    let on = &p["cache_on"];
    let off = &p["cache_off"];
    assert_eq!(on["phones"].as_u64(), Some(3000));
    assert_eq!(on["errors"].as_u64(), Some(0), "{on}");
    assert_eq!(off["errors"].as_u64(), Some(0), "{off}");
    let on_calls = on["generate_calls"].as_u64().unwrap() + on["decrypt_calls"].as_u64().unwrap();
    // 100 threads on a cold cache: one data key, opened once (single flight on both sides).
    assert!((1..=4).contains(&on_calls), "cache on made {on_calls} keyring calls: {on}");
    // Without the cache every encrypt generates and every decrypt opens a data key.
    assert_eq!(off["generate_calls"].as_u64(), Some(300), "{off}");
    assert_eq!(off["decrypt_calls"].as_u64(), Some(300), "{off}");
    assert_eq!(p["cache_off_extrapolated"]["keyring_calls"].as_u64(), Some(6000));
    assert!(on_calls * 100 < 6000);
    let cost = &p["cost"];
    assert!(cost["monthly_usd_cache_on"].as_f64().unwrap() < cost["monthly_usd_cache_off"].as_f64().unwrap());
    let samples = p["masked_samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "{p}");
    for s in samples {
        let s = s.as_str().unwrap();
        assert!(s.starts_with("010-****-") && s.len() == 13, "{s}");
    }
    assert_eq!(p["simulated_kms_latency_ms"].as_u64(), Some(5));
}

#[test]
fn demo_tables_are_plain_text_when_piped() {
    let sb = Sandbox::new();
    let out = sb.larder().arg("demo").args(SMALL).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = stdout_text(&out);
    assert!(!text.contains('\u{1b}'), "escape codes in piped stdout");
    assert!(!stderr_text(&out).contains('\u{1b}'), "progress bar drawn on a non-terminal stderr");
    for needle in [
        "shared cache tier: sqlite:",
        "local keyring",
        "(a) std RandomState keys",
        "(b) larder keys + single-flight",
        "computations",
        "hit ratio",
        "p99 latency",
        "data-key cache on",
        "cache off, extrapolated",
        "simulated KMS latency 5 ms",
        "Monthly KMS cost",
        "010-****-",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The temporary store and keyring are gone afterwards.
    let line = text.lines().find(|l| l.contains("shared cache tier: sqlite:")).unwrap();
    let path = line.split("sqlite:").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(!std::path::Path::new(path).exists(), "{path} left behind");
}

#[test]
fn demo_usage_errors() {
    let sb = Sandbox::new();
    sb.larder().args(["demo", "--workers", "0"]).assert().code(2);
    sb.larder().args(["demo", "--requests", "many"]).assert().code(2);
    sb.larder().args(["demo", "--kms", "nope"]).assert().code(2);
}

/// A build without the `kms` feature (the default, what the README's first command builds)
/// refuses `--kms aws:…` up front, saying how to get it, instead of running half the demo.
#[cfg(not(feature = "kms"))]
#[test]
fn kms_needs_the_kms_feature() {
    let sb = Sandbox::new();
    for cmd in [&["demo", "--kms", "aws:alias/x"][..], &["encrypt", "--kms", "aws:alias/x"][..]] {
        let out = sb.larder().args(cmd).write_stdin("010-1234-5678").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--features kms"), "{cmd:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{cmd:?} printed before failing: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn demo_with_an_unusable_store_fails_clearly() {
    let sb = Sandbox::new();
    let out = sb
        .larder()
        .args(["demo", "--only", "workers", "--store", "memcached://127.0.0.1:1"])
        .args(SMALL)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("memcached"), "{}", stderr_text(&out));
}
