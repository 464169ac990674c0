//! `larder cache stats|get|invalidate` against a real SQLite file and a real Redis server
//! (with a password), filled by the library the services use; and `-o json` on every
//! subcommand that prints data.

use crate::common;

use std::time::{Duration, Instant};

use common::{stdout_text, Sandbox};
use larder::cache::{Cache, KeySpace};
use larder_testkit::redis::{RedisOptions, RedisServer};
use serde_json::{json, Value};

const TTL: Duration = Duration::from_secs(600);

fn json_out(cmd: &mut assert_cmd::Command) -> Value {
    let out = cmd.output().expect("run larder");
    assert!(out.status.success(), "larder failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout_text(&out)).expect("stdout is one JSON document")
}

/// 3 entries in `loan_calc` v1 (keyed by the JSON values 7, 8, 9) and 2 in `other` v2.
fn fill(cache: &Cache) {
    let loan = KeySpace::new("loan_calc", 1).unwrap();
    let other = KeySpace::new("other", 2).unwrap();
    for i in 7..10u64 {
        cache.set_blocking(&loan, &json!(i), i * 1000, TTL);
    }
    for i in 0..2u64 {
        cache.set_blocking(&other, &json!(i), format!("value {i}"), TTL);
    }
}

#[test]
fn sqlite_stats_get_invalidate() {
    let sb = Sandbox::new();
    let db = sb.path("cache.db");
    let store = format!("sqlite:{}", db.display());
    fill(&Cache::from_url(&store).unwrap());

    let stats = json_out(sb.larder().args(["cache", "stats", "--store", &store, "-o", "json"]));
    assert_eq!(stats["tier"], "sqlite");
    assert_eq!(stats["entries"], 5);
    assert_eq!(stats["leases"], 0);
    assert_eq!(stats["expired"], 0);
    assert_eq!(stats["namespaces"]["loan_calc:v1"]["entries"], 3);
    assert_eq!(stats["namespaces"]["other:v2"]["entries"], 2);

    // The key `larder key` prints is the one `cache get` reads.
    let key = json_out(sb.larder().args(["key", "--namespace", "loan_calc", "--value", "7", "-o", "json"]));
    let text = key["key"].as_str().unwrap().to_owned();
    assert!(text.starts_with("loan_calc:v1:"), "{text}");
    let got = json_out(sb.larder().args([
        "cache",
        "get",
        "--store",
        &store,
        "--namespace",
        "loan_calc",
        "--value",
        "7",
        "--output",
        "json",
    ]));
    assert_eq!(got["key"], text.as_str());
    assert_eq!(got["state"], "fresh");
    // postcard's varint of 7000: 0xd8 0x36.
    assert_eq!(got["payload_hex"], "d836");
    assert!(got["expires_ms"].as_u64().unwrap() > got["written_ms"].as_u64().unwrap());
    let by_key =
        json_out(sb.larder().args(["cache", "get", "--store", &store, "--key", &text, "-o", "json"]));
    assert_eq!(by_key["payload_hex"], "d836");
    let missing = json_out(sb.larder().args([
        "cache",
        "get",
        "--store",
        &store,
        "--namespace",
        "loan_calc",
        "--value",
        "99",
        "-o",
        "json",
    ]));
    assert_eq!(missing["state"], "missing");
    // Another deployment's secret: the MAC does not verify, the entry is refused (and the
    // secret changes the key text, so look it up by the key text).
    let forged = json_out(
        sb.larder()
            .env("LARDER_KEY_SECRET", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .args(["cache", "get", "--store", &store, "--key", &text, "-o", "json"]),
    );
    assert_eq!(forged["state"], "refused", "{forged}");

    // Text output for people.
    let out = sb.larder().args(["cache", "get", "--store", &store, "--key", &text]).output().unwrap();
    assert!(stdout_text(&out).contains("state     fresh"), "{}", stdout_text(&out));

    // Invalidate, by namespace + value; a LARDER_CACHE-style value works as --store too.
    let spec = format!("local:100,{store}");
    let inv = json_out(sb.larder().args([
        "cache",
        "invalidate",
        "--store",
        &spec,
        "--namespace",
        "loan_calc",
        "--value",
        "7",
        "-o",
        "json",
    ]));
    assert_eq!(inv, json!({ "key": text, "existed": true }));
    let again = json_out(sb.larder().env("LARDER_CACHE", &spec).args([
        "cache",
        "invalidate",
        "--key",
        &text,
        "-o",
        "json",
    ]));
    assert_eq!(again["existed"], false);
    let stats = json_out(sb.larder().env("LARDER_CACHE", &spec).args(["cache", "stats", "-o", "json"]));
    assert_eq!(stats["entries"], 4);
    assert_eq!(stats["namespaces"]["loan_calc:v1"]["entries"], 2);
    // A service reading the file now misses.
    let cache = Cache::from_url(&store).unwrap();
    assert_eq!(cache.get_blocking::<_, u64>(&KeySpace::new("loan_calc", 1).unwrap(), &json!(7)), None);
    assert_eq!(cache.get_blocking::<_, u64>(&KeySpace::new("loan_calc", 1).unwrap(), &json!(8)), Some(8000));
}

#[test]
fn usage_errors() {
    let sb = Sandbox::new();
    let db = sb.path("cache.db");
    let store = format!("sqlite:{}", db.display());
    fill(&Cache::from_url(&store).unwrap());
    // No entry named.
    sb.larder().args(["cache", "get", "--store", &store]).assert().code(2);
    // Both ways at once.
    sb.larder()
        .args(["cache", "get", "--store", &store, "--key", "a:v1:b", "--namespace", "a", "--value", "1"])
        .assert()
        .code(2);
    // Not a shared tier.
    sb.larder().args(["cache", "stats", "--store", "local:100"]).assert().code(2);
    // No such file: an operational error, not a new empty cache.
    sb.larder()
        .args(["cache", "stats", "--store", &format!("sqlite:{}", sb.path("nope.db").display())])
        .assert()
        .code(1);
    assert!(!sb.path("nope.db").exists());
    // A format that does not exist.
    sb.larder().args(["cache", "stats", "--store", &store, "-o", "yaml"]).assert().code(2);
}

#[test]
fn redis_stats_get_invalidate_reach_other_processes() {
    let server =
        RedisServer::start_with(RedisOptions { password: Some("cli-pw".into()), ..RedisOptions::default() });
    let port = server.port().unwrap();
    // The value-MAC secret rides in the URL: the service and the CLI read the same one.
    let store = format!(
        "redis://:cli-pw@127.0.0.1:{port}?prefix=cli:&secret=6c61726465722074657374206d6163207365637265742c203332206279746573"
    );
    let service = Cache::from_url(&format!("local:100,{store}")).unwrap();
    fill(&service);
    let loan = KeySpace::new("loan_calc", 1).unwrap();
    // The service holds a local copy of 8 (the set put it there).
    assert_eq!(service.get_blocking::<_, u64>(&loan, &json!(8)), Some(8000));

    let sb = Sandbox::new();
    let stats = json_out(sb.larder().args(["cache", "stats", "--store", &store, "-o", "json"]));
    assert_eq!(stats["tier"], "redis");
    assert_eq!(stats["entries"], 5);
    assert_eq!(stats["namespaces"]["loan_calc:v1"]["entries"], 3);
    let got = json_out(sb.larder().args([
        "cache",
        "get",
        "--store",
        &store,
        "--namespace",
        "loan_calc",
        "--value",
        "8",
        "-o",
        "json",
    ]));
    assert_eq!(got["state"], "fresh");
    assert_eq!(got["payload_hex"], "c03e", "postcard's varint of 8000");

    let before = service.stats().invalidations_received;
    let inv = json_out(sb.larder().args([
        "cache",
        "invalidate",
        "--store",
        &store,
        "--namespace",
        "loan_calc",
        "--value",
        "8",
        "-o",
        "json",
    ]));
    assert_eq!(inv["existed"], true);
    assert_eq!(server.command(&["KEYS", "cli:*"]).lines().count(), 4);
    // The running service dropped its local copy through the backplane.
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.stats().invalidations_received == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(service.stats().invalidations_received > before, "the service never heard of the invalidation");
    assert_eq!(service.get_blocking::<_, u64>(&loan, &json!(8)), None);

    // Wrong password: refused with the server's reason.
    let out = sb
        .larder()
        .args(["cache", "stats", "--store", &format!("redis://:nope@127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn output_json_on_every_data_subcommand() {
    let sb = Sandbox::new();
    // key: the value stays `--json` (its input) or `--value`; the format is -o.
    let a = json_out(sb.larder().args(["key", "--namespace", "n", "--json", "{\"a\":1}", "-o", "json"]));
    let b = json_out(sb.larder().args(["key", "--namespace", "n", "--value", "{\"a\":1}", "-o", "json"]));
    assert_eq!(a, b);
    assert_eq!(a["namespace"], "n");
    assert_eq!(a["version"], 1);
    // mask
    let m = json_out(sb.larder().args(["mask", "phone", "010-1234-5678", "-o", "json"]));
    assert_eq!(m, json!([{ "masked": "010-****-5678" }]));
    let out = sb.larder().args(["mask", "phone", "010-1234-5678", "nope", "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let bad: Value = serde_json::from_str(&stdout_text(&out)).unwrap();
    assert_eq!(bad[0]["masked"], "010-****-5678");
    assert!(bad[1]["error"].is_string() && bad[1]["masked"].is_null());
    // keys init / list / rotate
    let ring = sb.path("ring");
    let init = json_out(sb.larder().arg("--keyring").arg(&ring).args(["keys", "init", "-o", "json"]));
    let first = init["primary"].as_str().unwrap().to_owned();
    let rotated = json_out(sb.larder().arg("--keyring").arg(&ring).args(["keys", "rotate", "-o", "json"]));
    let list = json_out(sb.larder().arg("--keyring").arg(&ring).args(["keys", "list", "-o", "json"]));
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["primary"] == true).count(), 1);
    assert!(keys.iter().any(|k| k["id"] == first.as_str() && k["primary"] == false));
    assert!(keys.iter().any(|k| k["id"] == rotated["primary"] && k["primary"] == true));
    // inspect: -o json and the older --json print the same document.
    let enc = sb
        .larder()
        .arg("--keyring")
        .arg(&ring)
        .args(["encrypt", "--text"])
        .write_stdin("010-1234-5678")
        .output()
        .unwrap();
    assert!(enc.status.success());
    let ct = stdout_text(&enc);
    let new = json_out(sb.larder().args(["inspect", "-o", "json"]).write_stdin(ct.clone()));
    let old = json_out(sb.larder().args(["inspect", "--json"]).write_stdin(ct));
    assert_eq!(new, old);
    assert_eq!(new["plaintext_bytes"], 13);
}

/// Reads `k` from `cache` the way a tagged service call does (tag `user:{k % 2}`, none for
/// k ≥ 10), counting computations.
fn tagged_call(cache: &Cache, k: u64, computed: &std::sync::atomic::AtomicU64) -> u64 {
    let space = KeySpace::new("tagged", 1).unwrap();
    match cache.lookup::<u64, u64>(&space, &k, TTL) {
        larder::cache::Lookup::Hit(v) => v,
        larder::cache::Lookup::Miss(p) => {
            let p = if k < 10 { p.tags([format!("user:{}", k % 2)]) } else { p };
            p.compute_blocking(|| {
                computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                k * 3
            })
        }
    }
}

/// `larder cache invalidate --tag`: a SQLite file (per-store secret) and a Redis server
/// (secret in the URL). A running service stops serving the tag's entries; entries under
/// other tags and untagged ones keep hitting.
#[test]
fn invalidate_tag_retires_entries_in_running_services() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let sb = Sandbox::new();
    let server = RedisServer::start();
    let sqlite = format!("sqlite:{}", sb.path("tags.db").display());
    let redis = format!("{}?secret={}", server.url(), "42".repeat(32));
    for store in [sqlite, redis] {
        // Local tier with a short tag_recheck (SQLite has no backplane).
        let service = larder::cache::config::parse(&format!("local:100,{store}"))
            .unwrap()
            .tag_recheck(Duration::from_millis(100))
            .build()
            .unwrap();
        let computed = AtomicU64::new(0);
        for k in [0, 1, 2, 3, 10] {
            tagged_call(&service, k, &computed);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 5, "{store}");
        let out = json_out(sb.larder().args([
            "cache",
            "invalidate",
            "--tag",
            "user:0",
            "--store",
            &store,
            "-o",
            "json",
        ]));
        assert_eq!(out["tag"], "user:0");
        assert!(out["record"].as_str().unwrap().starts_with("#tag:v1:"), "{out}");
        std::thread::sleep(Duration::from_millis(250));
        for k in [0, 1, 2, 3, 10] {
            assert_eq!(tagged_call(&service, k, &computed), k * 3);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 7, "{store}: exactly keys 0 and 2 (user:0) again");
        // A bad tag is a usage error.
        let bad = sb.larder().args(["cache", "invalidate", "--tag", "", "--store", &store]).output().unwrap();
        assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    }
}
