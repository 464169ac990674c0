//! The Redis tier when its server dies or stalls: every call returns a `TierError` within the
//! timeout (never a hang), and once the server is back the same tier object works again —
//! commands and the pub/sub backplane — without being rebuilt.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use larder_cache::redis::{connect, listener_subscribed, RedisOptions, RedisTier};
use larder_cache::{Lease, SharedTier, TierError};
use larder_testkit::redis::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(300);
/// A call may overrun its timeout by scheduling noise, never by seconds.
const BOUND: Duration = Duration::from_millis(300 + 1500);

fn tier(url: &str) -> RedisTier {
    connect(url, RedisOptions::default().timeout(TIMEOUT)).expect("redis tier")
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every tier call against a server that is not answering; each must fail within BOUND.
/// (It uses its own key: writes sent to a stalled server still land once it resumes.)
async fn every_call_fails_fast(t: &RedisTier, expect_timeout: bool) {
    let token = [9u8; 16];
    let check = |what: &str, started: Instant, err: Option<TierError>| {
        let took = started.elapsed();
        let err = err.unwrap_or_else(|| panic!("{what} succeeded against a dead server"));
        assert!(took < BOUND, "{what} took {took:?} (bound {BOUND:?})");
        if expect_timeout {
            assert_eq!(err, TierError::Timeout, "{what}");
        }
    };
    let s = Instant::now();
    check("get", s, t.get("dead:k").await.err());
    let s = Instant::now();
    check("set", s, t.set("dead:k", b"v", Duration::from_secs(5)).await.err());
    let s = Instant::now();
    check("delete", s, t.delete("dead:k").await.err());
    let s = Instant::now();
    check("try_lease", s, t.try_lease("dead:k", &token, Duration::from_secs(5)).await.err());
    let s = Instant::now();
    check("release_lease", s, t.release_lease("dead:k", &token).await.err());
    let s = Instant::now();
    check("publish_invalidation", s, t.publish_invalidation("dead:k").await.err());
    // wait_for_value's own timeout is long; a dead server must still end it within BOUND.
    let s = Instant::now();
    check("wait_for_value", s, t.wait_for_value("dead:k", Duration::from_secs(30)).await.err());
}

async fn outage_and_recovery(mut server: RedisServer) {
    let t = tier(&server.url());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = Arc::clone(&seen);
    t.subscribe_invalidations(Arc::new(move |k: &str| s2.lock().unwrap().push(k.to_string())));
    t.set("k", b"before", Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"before"[..]));
    until("listener subscribed", async || listener_subscribed(&t)).await;

    // Crash: kill -9.
    server.kill9();
    every_call_fails_fast(&t, false).await;
    // Many concurrent callers on the dead server: all fail, none hangs.
    let t = Arc::new(t);
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..64 {
        let t = Arc::clone(&t);
        calls.push(tokio::spawn(async move { t.get(&format!("k{i}")).await }));
    }
    for c in calls {
        assert!(c.await.unwrap().is_err());
    }
    assert!(started.elapsed() < BOUND * 2, "64 concurrent calls took {:?}", started.elapsed());

    // Back (empty: no persistence). The same tier object recovers by itself.
    server.restart();
    until("tier answers again after restart", async || t.get("k").await.is_ok()).await;
    assert_eq!(t.get("k").await.unwrap(), None, "restarted server is empty");
    t.set("k", b"after", Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"after"[..]));
    assert_eq!(t.try_lease("k", &[1; 16], Duration::from_secs(5)).await.unwrap(), Lease::Acquired);
    t.release_lease("k", &[1; 16]).await.unwrap();
    assert_eq!(t.try_lease("k", &[2; 16], Duration::from_secs(5)).await.unwrap(), Lease::Acquired);

    // The backplane listener reconnected: an invalidation from another client arrives.
    until("listener resubscribed", async || listener_subscribed(&t)).await;
    let other = tier(&server.url());
    other.publish_invalidation("after:restart").await.unwrap();
    until("invalidation delivered after restart", async || {
        seen.lock().unwrap().iter().any(|k| k == "after:restart")
    })
    .await;

    // Stall: SIGSTOP keeps the socket open but nothing answers — only timeouts save callers.
    server.pause();
    every_call_fails_fast(&t, true).await;
    server.resume();
    until("tier answers again after the stall", async || t.get("k").await.is_ok()).await;
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_server_killed_stalled_and_restarted() {
    let _timed = crate::common::timed();
    outage_and_recovery(RedisServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_server_killed_stalled_and_restarted() {
    let _timed = crate::common::timed();
    outage_and_recovery(RedisServer::start_unix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_built_while_the_server_is_down_works_once_it_is_up() {
    let _timed = crate::common::timed();
    let mut server = RedisServer::start();
    server.kill9();
    let t = tier(&server.url());
    assert!(t.get("k").await.is_err());
    server.restart();
    until("tier connects once the server is up", async || t.get("k").await.is_ok()).await;
    t.set("k", b"v", Duration::from_secs(5)).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}
