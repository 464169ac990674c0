//! `larder demo --store redis://…` and `redis+cluster://…` against real servers started by the
//! test (larder-testkit).

use crate::common;

use common::{check_workers, stderr_text, stdout_text, Sandbox, SMALL};
use larder_testkit::redis::{RedisCluster, RedisServer};
use serde_json::Value;

fn run_against(url: &str) {
    let sb = Sandbox::new();
    let out = sb
        .larder()
        .args(["demo", "--json", "--only", "workers", "--store", url])
        .args(SMALL)
        .output()
        .unwrap();
    assert!(out.status.success(), "demo on {url} failed:\n{}\n{}", stdout_text(&out), stderr_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["store"].as_str(), Some(url));
    assert!(v["phones"].is_null());
    check_workers(&v);
}

#[test]
fn demo_on_redis() {
    let server = RedisServer::start();
    run_against(&server.url());
}

#[test]
fn demo_on_redis_cluster() {
    let cluster = RedisCluster::start(3);
    run_against(&cluster.url());
}
