//! `larder key`: the key text a service would use for a JSON value, checked against the
//! format's test vectors (docs/key-vectors.json), and its errors.
//!
//! Exit codes follow the CLI's contract (crates/larder-cli/src/main.rs): 0 success, 1 an
//! operational error, 2 a usage error — which for this command includes an argument whose
//! value is bad (JSON that does not parse, a namespace outside `[a-z0-9_.-]{1,64}`), as well as
//! clap's own errors (missing or unknown flags).

use crate::common;

use common::Sandbox;
use predicates::prelude::*;
use serde_json::Value;

fn vector(name: &str) -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/key-vectors.json"))
        .expect("docs/key-vectors.json");
    let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
    doc["vectors"].as_array().unwrap().iter().find(|v| v["name"] == name).cloned().expect("vector exists")
}

#[test]
fn prints_the_documented_key() {
    let v = vector("json_loan_calc");
    let expected = v["key_default"].as_str().unwrap();
    assert_eq!(expected, "loan_calc:v1:k643e2wvx7rcsfyuy3tqyfbuykeoyfkm");
    let sb = Sandbox::new();
    sb.larder()
        .args([
            "key",
            "--namespace",
            "loan_calc",
            "--version",
            "1",
            "--json",
            r#"{"user_id":7,"amount_won":5000000}"#,
        ])
        .assert()
        .success()
        .stdout(format!("{expected}\n"))
        .stderr("");
    // Member order and whitespace in the JSON text do not matter.
    sb.larder()
        .args([
            "key",
            "--namespace",
            "loan_calc",
            "--json",
            " { \"amount_won\" : 5000000 , \"user_id\" : 7 } ",
        ])
        .assert()
        .success()
        .stdout(format!("{expected}\n"));
    // Another version is another key text, with the same digest.
    let out = sb
        .larder()
        .args([
            "key",
            "--namespace",
            "loan_calc",
            "--version",
            "2",
            "--json",
            r#"{"user_id":7,"amount_won":5000000}"#,
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.trim_end(), expected.replace(":v1:", ":v2:"));
}

#[test]
fn secret_from_the_environment() {
    let v = vector("json_mixed");
    let sb = Sandbox::new();
    let json = serde_json::to_string(&v["json"]).unwrap();
    sb.larder()
        .args(["key", "--namespace", "vectors", "--json", &json])
        .env("LARDER_KEY_SECRET", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        .assert()
        .success()
        .stdout(format!("{}\n", v["key_sample_secret"].as_str().unwrap()));
    sb.larder()
        .args(["key", "--namespace", "vectors", "--json", &json])
        .assert()
        .success()
        .stdout(format!("{}\n", v["key_default"].as_str().unwrap()));
    // A malformed secret is an operational error (exit 1) naming the problem.
    sb.larder()
        .args(["key", "--namespace", "vectors", "--json", "1"])
        .env("LARDER_KEY_SECRET", "not hex")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("invalid key secret"));
}

#[test]
fn bad_json_is_refused_with_a_message() {
    let sb = Sandbox::new();
    for bad in [r#"{"user_id":7"#, "", "nan", "{'a':1}"] {
        sb.larder()
            .args(["key", "--namespace", "loan_calc", "--json", bad])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("--json is not valid JSON"));
    }
}

#[test]
fn invalid_namespace_names_the_problem() {
    let sb = Sandbox::new();
    let cases = [
        ("Loan_Calc", "only lowercase ASCII letters"),
        ("loan:calc", "only lowercase ASCII letters"),
        ("", "it is empty"),
        (&"x".repeat(65), "longer than 64 bytes"),
    ];
    for (ns, why) in cases {
        sb.larder()
            .args(["key", "--namespace", ns, "--json", "1"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("invalid key namespace").and(predicate::str::contains(why)));
    }
}

#[test]
fn clap_usage_errors_exit_2() {
    let sb = Sandbox::new();
    // Missing --json.
    sb.larder()
        .args(["key", "--namespace", "loan_calc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--json"));
    // A version that is not a u32 (negative, or too large).
    sb.larder()
        .args(["key", "--namespace", "a", "--version=-1", "--json", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--version"));
    sb.larder()
        .args(["key", "--namespace", "a", "--version", "4294967296", "--json", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--version"));
    // An unknown flag.
    sb.larder()
        .args(["key", "--namespace", "a", "--json", "1", "--frobnicate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--frobnicate"));
}

/// JSON floats must be read correctly rounded, or `larder key` names a different key than a
/// service (or another language) that parses the same text exactly. serde_json's default
/// fast path is one unit in the last place off for this value (found by the key_json fuzzer).
#[test]
fn json_floats_are_parsed_correctly_rounded() {
    let text = "-9.223372036875459e+18";
    let exact: f64 = text.parse().unwrap();
    let expected = larder_key::KeySpace::new("t", 1).unwrap().key(&exact).unwrap();
    let sb = Sandbox::new();
    sb.larder()
        .args(["key", "--namespace", "t", "--version", "1", "--json", text])
        .assert()
        .success()
        .stdout(format!("{expected}\n"));
}
