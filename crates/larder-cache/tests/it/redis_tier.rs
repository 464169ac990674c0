//! The Redis tiers against real servers: one conformance suite run on a single server over
//! TCP, over a unix socket, and on a 3-node Redis Cluster; plus cluster key placement.

use std::time::{Duration, Instant};

use crate::common::redis::{conformance, raw_single, tier, wait_subscribed};
use larder_cache::redis::{connect, RedisOptions};
use larder_cache::{Lease, SharedTier};
use larder_testkit::redis::{RedisCluster, RedisServer};

/// Raw commands for a cluster: sent to whichever node owns the key.
pub fn raw_cluster(cluster: &RedisCluster) -> impl Fn(&[&str]) -> String + '_ {
    move |args| {
        let mut last = String::new();
        for node in cluster.nodes() {
            let reply = node.command(args);
            if !reply.starts_with("ERR:MOVED") {
                return reply;
            }
            last = reply;
        }
        panic!("no node accepted {args:?}: {last}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_single_server_tcp() {
    let _timed = crate::common::timed();
    let server = RedisServer::start();
    let raw = raw_single(&server);
    conformance(&server.url(), &raw).await;
    assert_eq!(tier(&server.url()).name(), "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_single_server_unix_socket() {
    let _timed = crate::common::timed();
    let server = RedisServer::start_unix();
    assert!(server.url().starts_with("redis+unix://"));
    let raw = raw_single(&server);
    conformance(&server.url(), &raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cluster() {
    let _timed = crate::common::timed();
    let cluster = RedisCluster::start(3);
    let raw = raw_cluster(&cluster);
    conformance(&cluster.url(), &raw).await;
    assert_eq!(tier(&cluster.url()).name(), "redis-cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_spreads_keys_over_every_node_and_keeps_leases_with_values() {
    let _timed = crate::common::timed();
    let cluster = RedisCluster::start(3);
    let t = tier(&cluster.url());
    let raw = raw_cluster(&cluster);
    let n: u64 = 300;
    for i in 0..n {
        // Key texts as the core builds them: namespace, version, digest.
        let key = format!("loan_calc:v1:{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        t.set(&key, b"v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(t.try_lease(&key, &[7; 16], Duration::from_secs(60)).await.unwrap(), Lease::Acquired);
        assert_eq!(
            raw(&["CLUSTER", "KEYSLOT", &t.value_key(&key)]),
            raw(&["CLUSTER", "KEYSLOT", &t.lease_key(&key)])
        );
    }
    let sizes = cluster.dbsizes();
    assert_eq!(sizes.iter().sum::<u64>(), 2 * n, "every value and lease stored once: {sizes:?}");
    for (i, s) in sizes.iter().enumerate() {
        // 2 × 300 keys over 3 nodes: about 200 each; a tag that collapsed keys onto one node
        // would leave the others empty.
        assert!(*s >= 100, "node {i} holds only {s} keys: {sizes:?}");
        assert_eq!(s % 2, 0, "a value and its lease were split across nodes: {sizes:?}");
    }
}

#[test]
fn bad_urls_and_options_are_config_errors() {
    let _timed = crate::common::timed();
    for url in ["", "http://localhost", "memcached://x", "redis+cluster://", "redis://[::1"] {
        match connect(url, RedisOptions::default()) {
            Err(larder_cache::TierError::Config(_)) => {}
            other => panic!("{url:?}: expected a config error, got {other:?}"),
        }
    }
    assert!(matches!(
        connect("redis://127.0.0.1:1", RedisOptions::default().prefix("a{b")),
        Err(larder_cache::TierError::Config(_))
    ));
    assert!(matches!(
        connect("redis://127.0.0.1:1", RedisOptions::default().timeout(Duration::ZERO)),
        Err(larder_cache::TierError::Config(_))
    ));
}

#[test]
fn created_outside_a_runtime_and_used_from_one() {
    let _timed = crate::common::timed();
    // Building the tier needs no runtime (it starts its own for background work).
    let server = RedisServer::start();
    let t = tier(&server.url());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        t.set("k", b"v", Duration::from_secs(5)).await.unwrap();
        assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    });
    drop(t); // must not panic or block (owned runtime shut down in the background)
}

#[tokio::test]
async fn unreachable_server_is_an_error_within_the_timeout() {
    let _timed = crate::common::timed();
    // A port nobody listens on: refused at once, or timed out — never a hang, never Ok.
    let port = larder_testkit::free_port();
    let t = connect(&format!("redis://127.0.0.1:{port}"), RedisOptions::default()).unwrap();
    let started = Instant::now();
    assert!(t.get("k").await.is_err());
    assert!(t.set("k", b"v", Duration::from_secs(1)).await.is_err());
    assert!(t.try_lease("k", &[1; 16], Duration::from_secs(1)).await.is_err());
    assert!(t.wait_for_value("k", Duration::from_secs(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backplane_listener_moves_to_another_node_when_its_node_dies() {
    let _timed = crate::common::timed();
    let mut cluster = RedisCluster::start(3);
    let t = tier(&cluster.url());
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let s2 = std::sync::Arc::clone(&seen);
    assert!(
        t.subscribe_invalidations(std::sync::Arc::new(move |k: &str| s2.lock().unwrap().push(k.to_string())))
    );
    wait_subscribed(&t).await;
    // Which node holds the listener's connection (a client subscribed to 2 channels)?
    let listener_node = cluster
        .nodes()
        .iter()
        .position(|n| n.command(&["PUBSUB", "NUMSUB", "larder:invalidate"]).ends_with("\n1"))
        .expect("no node has the listener's subscription");
    cluster.nodes_mut()[listener_node].kill9();
    // Publish on a surviving node until the listener, reconnected elsewhere, receives it
    // (a message sent while it is between connections is lost, as pub/sub is).
    let other = (listener_node + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        cluster.nodes()[other].command(&["PUBLISH", "larder:invalidate", "after:failover"]);
        if seen.lock().unwrap().iter().any(|k| k == "after:failover") {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not move to a live node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_invalidation_handler_does_not_stop_the_backplane() {
    let _timed = crate::common::timed();
    let server = RedisServer::start();
    let t = tier(&server.url());
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    t.subscribe_invalidations(std::sync::Arc::new(|k: &str| {
        if k == "boom" {
            panic!("handler bug");
        }
    }));
    let s2 = std::sync::Arc::clone(&seen);
    t.subscribe_invalidations(std::sync::Arc::new(move |k: &str| s2.lock().unwrap().push(k.to_string())));
    wait_subscribed(&t).await;
    t.publish_invalidation("boom").await.unwrap();
    t.publish_invalidation("after").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().unwrap().iter().any(|k| k == "after") {
        assert!(Instant::now() < deadline, "the listener died with the handler: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock().unwrap(), ["boom", "after"]);
}
