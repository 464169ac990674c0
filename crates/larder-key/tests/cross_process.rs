//! Regression test for the bug larder exists to prevent (PRODUCT.md, story A): a cache key
//! computed from a per-process-seeded hash differs between worker processes, so a shared cache
//! misses whenever a request lands on another worker.
//!
//! The parent test re-runs this very test binary (`std::env::current_exe`) as 5 child
//! processes, each selected into child mode by the `LARDER_KEY_CHILD` variable and given a
//! different environment: different `RUST_MIN_STACK`, `RUST_BACKTRACE`, `RUST_TEST_THREADS`,
//! `RUST_LOG`, unrelated variables, an empty environment, and a `RandomState`-keyed `HashMap`
//! filled in a child-specific order before the keys are computed. Each child prints, for the
//! same values:
//!
//! * the larder key texts (must be identical in every child), and
//! * the hash of the same values through `RandomState::new().build_hasher()` — a
//!   `DefaultHasher` (SipHash-1-3) keyed with this process's random seed, exactly what a
//!   `HashMap` uses — which must differ between children: that is the bug, real in Rust too.
//!
//! Precisely: `DefaultHasher::new()` on its own is *not* randomly seeded (it uses fixed zero
//! keys; its output is merely unspecified across Rust releases). The per-process seed lives in
//! `RandomState::new()`, which draws random keys once per thread (then increments them per
//! instance). Code that persists `RandomState` hashes — or `HashMap` iteration order — across
//! processes has the Python `hash()` bug.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::process::Command;

use larder_key::{KeySecret, KeySpace, StableKey};

const CHILD_VAR: &str = "LARDER_KEY_CHILD";

#[derive(Hash, StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(Hash, StableKey)]
enum Query {
    ByPhone(String),
    Range { from: i64, to: i64 },
}

/// Computes one line per value: `name <larder key> <RandomState hash> <DefaultHasher::new hash>`.
fn child_report(order_seed: u64) -> String {
    // A RandomState-keyed HashMap in use, filled in a child-specific order: its iteration order
    // differs from child to child, and it is part of the values keyed below.
    let mut tags: HashSet<String> = HashSet::new();
    let mut weights: HashMap<String, u32> = HashMap::new();
    let n = 64u64;
    for i in 0..n {
        let j = (i * 17 + order_seed * 29) % n;
        tags.insert(format!("tag-{j}"));
        weights.insert(format!("w-{j}"), j as u32);
    }
    let first_tags: Vec<&String> = tags.iter().take(8).collect();

    let space = KeySpace::new("loan_calc", 1).unwrap();
    let secret = KeySecret::from_hex(&"5a".repeat(32)).unwrap();
    let secret_space = space.with_secret(&secret);
    let quote = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let phone = Query::ByPhone("010-1234-5678".into());
    let range = Query::Range { from: -5, to: 5 };
    let tuple = ("calc", 42u64, vec![1u8, 2, 3]);

    let mut lines = Vec::new();
    let mut line = |name: &str, key: String, seeded: u64, fixed: u64| {
        lines.push(format!("{name} {key} {seeded:016x} {fixed:016x}"));
    };
    fn seeded<T: Hash + ?Sized>(v: &T) -> u64 {
        // `hash_one` = `build_hasher()`, `hash`, `finish`: a DefaultHasher with this
        // process's random keys.
        RandomState::new().hash_one(v)
    }
    fn fixed<T: Hash + ?Sized>(v: &T) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }
    line("quote", space.key(&quote).unwrap().to_string(), seeded(&quote), fixed(&quote));
    line("quote_secret", secret_space.key(&quote).unwrap().to_string(), seeded(&quote), fixed(&quote));
    line("phone", space.key(&phone).unwrap().to_string(), seeded(&phone), fixed(&phone));
    line("range", space.key(&range).unwrap().to_string(), seeded(&range), fixed(&range));
    line("tuple", space.key(&tuple).unwrap().to_string(), seeded(&tuple), fixed(&tuple));
    // Hash collections: the larder key ignores iteration order. (For the std hashers, hash the
    // sorted contents: HashSet has no Hash impl.)
    let sorted_tags: Vec<&String> =
        tags.iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    line("tags", space.key(&tags).unwrap().to_string(), seeded(&sorted_tags), fixed(&sorted_tags));
    let sorted_weights: BTreeMap<&String, &u32> = weights.iter().collect();
    line(
        "weights",
        space.key(&weights).unwrap().to_string(),
        seeded(&sorted_weights),
        fixed(&sorted_weights),
    );
    // The iteration order itself, which differs between children (printed for the parent to
    // check that the HashMap really was seeded differently).
    let order: Vec<&str> = first_tags.iter().map(|s| s.as_str()).collect();
    lines.push(format!("order {}", order.join(",")));
    lines.join("\n")
}

struct Child {
    label: &'static str,
    env: Vec<(&'static str, String)>,
    clear_env: bool,
}

fn run_child(exe: &std::path::Path, seed: u64, child: &Child) -> Vec<String> {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"]);
    if child.clear_env {
        cmd.env_clear();
    }
    cmd.env(CHILD_VAR, seed.to_string());
    for (k, v) in &child.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("spawning child {}: {e}", child.label));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {} failed: {}\n{stdout}\n{}",
        child.label,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let body = stdout
        .split("BEGIN-REPORT\n")
        .nth(1)
        .and_then(|rest| rest.split("\nEND-REPORT").next())
        .unwrap_or_else(|| panic!("child {} printed no report:\n{stdout}", child.label));
    body.lines().map(str::to_owned).collect()
}

const TEST_NAME: &str = "keys_agree_across_processes_while_seeded_hashes_do_not";

/// In the parent: spawns the children and compares. In a child (`LARDER_KEY_CHILD` set, and
/// only this test selected with `--exact`): prints the report between markers (the test
/// harness prints its own lines around it) and returns.
#[test]
fn keys_agree_across_processes_while_seeded_hashes_do_not() {
    if let Ok(seed) = std::env::var(CHILD_VAR) {
        let seed: u64 = seed.parse().expect("LARDER_KEY_CHILD is a number");
        println!("BEGIN-REPORT\n{}\nEND-REPORT", child_report(seed));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let children = [
        Child { label: "plain", env: vec![], clear_env: false },
        Child {
            label: "rust-vars",
            env: vec![
                ("RUST_MIN_STACK", "16777216".into()),
                ("RUST_BACKTRACE", "full".into()),
                ("RUST_LOG", "trace".into()),
            ],
            clear_env: false,
        },
        Child {
            label: "other-rust-vars",
            env: vec![
                ("RUST_MIN_STACK", "65536".into()),
                ("RUST_BACKTRACE", "0".into()),
                ("RUST_TEST_THREADS", "1".into()),
            ],
            clear_env: false,
        },
        Child {
            label: "big-env",
            env: (0..200)
                .map(|i| (Box::leak(format!("LARDER_NOISE_{i}").into_boxed_str()) as &str, "x".repeat(i)))
                .collect(),
            clear_env: false,
        },
        Child { label: "empty-env", env: vec![("LANG", "C".into())], clear_env: true },
    ];
    let reports: Vec<Vec<String>> =
        children.iter().enumerate().map(|(i, c)| run_child(&exe, i as u64 + 1, c)).collect();

    // Parse "name key seeded fixed" lines.
    let parse = |r: &Vec<String>| -> Vec<(String, String, String, String)> {
        r.iter()
            .filter(|l| !l.starts_with("order "))
            .map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                assert_eq!(p.len(), 4, "bad line {l:?}");
                (p[0].into(), p[1].into(), p[2].into(), p[3].into())
            })
            .collect()
    };
    let parsed: Vec<_> = reports.iter().map(parse).collect();
    let here = parse(&child_report(0).lines().map(str::to_owned).collect());
    assert_eq!(parsed[0].len(), 7);

    for (i, p) in parsed.iter().enumerate() {
        for (row, (mine, theirs)) in here.iter().zip(p).enumerate() {
            // 1. larder keys: identical in every process (and in this one).
            assert_eq!(
                mine.1, theirs.1,
                "row {row} ({}): larder key differs in child {}",
                mine.0, children[i].label
            );
            // DefaultHasher::new() is fixed-keyed: equal across processes of one binary.
            assert_eq!(mine.3, theirs.3, "DefaultHasher::new() is not seeded, so it should agree");
        }
    }
    // 2. RandomState hashes: every child's differs from every other's, for every value.
    for row in 0..here.len() {
        let mut seen: HashSet<&str> = HashSet::new();
        seen.insert(&here[row].2);
        for p in &parsed {
            assert!(
                seen.insert(&p[row].2),
                "row {row} ({}): two processes produced the same RandomState hash — the seed should differ",
                p[row].0
            );
        }
    }
    // 3. The hash collections really iterated in different orders in different children.
    let orders: HashSet<&String> =
        reports.iter().filter_map(|r| r.iter().find(|l| l.starts_with("order "))).collect();
    assert!(orders.len() >= 2, "all children iterated their HashSet alike: {orders:?}");
    // 4. The expected key (docs/key-vectors.json, derive_loan_quote).
    assert_eq!(here[0].1, "loan_calc:v1:t7dwkt76eywwroughfmdhxoja6v7vhp6");
}
