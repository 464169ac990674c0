//! The Redis tier conformance suite, shared by `it/redis_tier.rs` (TCP, unix socket, cluster) and
//! the separate `tests/redis_tls.rs` binary (`rediss://`, which includes this file by path): one
//! function every deployment mode must pass unchanged. Everything here is used by both.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use larder_cache::redis::{connect, listener_subscribed, RedisOptions, RedisTier};
use larder_cache::{Lease, SharedTier};
use larder_testkit::redis::RedisServer;

/// Sends a raw command to whichever node owns the key (a single server has just one).
pub type Raw<'a> = &'a dyn Fn(&[&str]) -> String;

/// Raw commands for a single server. It has no `CLUSTER KEYSLOT`: that check (a value and its
/// lease share a slot) only means something on a cluster, so it answers the same for any key.
pub fn raw_single(server: &RedisServer) -> impl Fn(&[&str]) -> String + '_ {
    move |args| {
        if args.first() == Some(&"CLUSTER") {
            "single server: one slot space".to_string()
        } else {
            server.command(args)
        }
    }
}

pub fn tier(url: &str) -> RedisTier {
    connect(url, RedisOptions::default().timeout(Duration::from_secs(2))).expect("redis tier")
}

pub async fn wait_subscribed(t: &RedisTier) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listener_subscribed(t) {
        assert!(Instant::now() < deadline, "pub/sub listener never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one conformance suite: every Redis deployment mode must pass it unchanged.
pub async fn conformance(url: &str, raw: Raw<'_>) {
    let t = tier(url);
    let other = tier(url); // a second client, as another process would have

    // --- get / set / delete, binary-safe, with key texts as the core builds them.
    let key = "loan_calc:v1:6f1d2a";
    assert_eq!(t.get(key).await.unwrap(), None);
    let frame: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    t.set(key, &frame, Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.get(key).await.unwrap().as_deref(), Some(&frame[..]));
    assert_eq!(other.get(key).await.unwrap().as_deref(), Some(&frame[..]), "visible to other clients");
    t.set(key, b"second", Duration::from_secs(60)).await.unwrap();
    assert_eq!(other.get(key).await.unwrap().as_deref(), Some(&b"second"[..]), "overwrite");
    // The documented layout, seen from outside.
    assert_eq!(raw(&["GET", &t.value_key(key)]), "second");
    other.delete(key).await.unwrap();
    assert_eq!(t.get(key).await.unwrap(), None);
    t.delete("never:stored").await.unwrap();

    // Awkward key texts: braces (which steer cluster hash tags), spaces, unicode.
    for k in ["a}b{c:d", "{x}", "}", "ns:v1:키 with space", ""] {
        t.set(k, k.as_bytes(), Duration::from_secs(60)).await.unwrap();
        assert_eq!(other.get(k).await.unwrap().as_deref(), Some(k.as_bytes()), "key {k:?}");
        assert_eq!(
            raw(&["CLUSTER", "KEYSLOT", &t.value_key(k)]),
            raw(&["CLUSTER", "KEYSLOT", &t.lease_key(k)]),
            "value and lease of {k:?} must share a slot"
        );
    }

    // --- TTL: the store drops entries after their ttl.
    t.set("ttl:short", b"v", Duration::from_millis(150)).await.unwrap();
    let pttl: i64 = raw(&["PTTL", &t.value_key("ttl:short")]).parse().unwrap();
    assert!((1..=150).contains(&pttl), "PTTL {pttl}");
    t.set("ttl:long", b"v", Duration::from_secs(3600)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.get("ttl:short").await.unwrap(), None, "expired entry still served by the store");
    assert!(t.get("ttl:long").await.unwrap().is_some());
    // A zero ttl is clamped to the smallest valid one, never a server error.
    t.set("ttl:zero", b"v", Duration::ZERO).await.unwrap();

    // --- leases: exclusive, released by the token holder only, expiring.
    let (t1, t2, t3) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    let lk = "lease:k";
    assert_eq!(t.try_lease(lk, &t1, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    assert_eq!(other.try_lease(lk, &t2, Duration::from_secs(30)).await.unwrap(), Lease::HeldByOther);
    assert_eq!(
        t.try_lease(lk, &t1, Duration::from_secs(30)).await.unwrap(),
        Lease::HeldByOther,
        "not re-entrant"
    );
    other.release_lease(lk, &t2).await.unwrap(); // not the holder: no effect
    assert_eq!(other.try_lease(lk, &t3, Duration::from_secs(30)).await.unwrap(), Lease::HeldByOther);
    // Tokens that share a prefix with the holder's are still different tokens.
    let mut almost = t1;
    almost[15] ^= 1;
    other.release_lease(lk, &almost).await.unwrap();
    assert_eq!(other.try_lease(lk, &t3, Duration::from_secs(30)).await.unwrap(), Lease::HeldByOther);
    t.release_lease(lk, &t1).await.unwrap();
    assert_eq!(other.try_lease(lk, &t3, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    // The old holder releasing again must not free the new holder's lease.
    t.release_lease(lk, &t1).await.unwrap();
    assert_eq!(t.try_lease(lk, &t1, Duration::from_secs(30)).await.unwrap(), Lease::HeldByOther);
    other.release_lease(lk, &t3).await.unwrap();
    // A dead holder's lease expires.
    assert_eq!(t.try_lease("lease:exp", &t1, Duration::from_millis(100)).await.unwrap(), Lease::Acquired);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.try_lease("lease:exp", &t2, Duration::from_secs(5)).await.unwrap(), Lease::Acquired);

    // --- wait_for_value.
    // Nothing there and no lease: returns None at once, not after the timeout.
    let started = Instant::now();
    assert_eq!(t.wait_for_value("wait:none", Duration::from_secs(30)).await.unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(10), "waited with no lease held");
    // A value already there is returned.
    t.set("wait:present", b"here", Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        t.wait_for_value("wait:present", Duration::from_secs(5)).await.unwrap().as_deref(),
        Some(&b"here"[..])
    );

    // A holder stores then releases: every waiter gets the value. The waiters poll only every
    // 60 s, so getting it at all proves the release notification arrives.
    let slow_poll = |u: &str| {
        connect(
            u,
            RedisOptions::default().timeout(Duration::from_secs(2)).poll_interval(Duration::from_secs(60)),
        )
        .unwrap()
    };
    let waiter_tier = Arc::new(slow_poll(url));
    assert_eq!(t.try_lease("wait:k", &t1, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let w = Arc::clone(&waiter_tier);
        waiters.push(tokio::spawn(async move { w.wait_for_value("wait:k", Duration::from_secs(50)).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.set("wait:k", b"computed", Duration::from_secs(60)).await.unwrap();
    t.release_lease("wait:k", &t1).await.unwrap();
    for w in waiters {
        let got = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("waiter not woken by the release notification")
            .unwrap()
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"computed"[..]));
    }
    // A holder that gives up (releases without a value): waiters return None, promptly.
    assert_eq!(t.try_lease("wait:giveup", &t1, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    let w = Arc::clone(&waiter_tier);
    let waiter = tokio::spawn(async move { w.wait_for_value("wait:giveup", Duration::from_secs(50)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.release_lease("wait:giveup", &t1).await.unwrap();
    let got =
        tokio::time::timeout(Duration::from_secs(20), waiter).await.expect("waiter hung").unwrap().unwrap();
    assert_eq!(got, None);
    // A holder that never finishes: the waiter gives up after its timeout.
    assert_eq!(t.try_lease("wait:stuck", &t1, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    let started = Instant::now();
    assert_eq!(other.wait_for_value("wait:stuck", Duration::from_millis(300)).await.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Polling alone (no release notification: the holder died) finds the value too.
    assert_eq!(t.try_lease("wait:poll", &t1, Duration::from_secs(30)).await.unwrap(), Lease::Acquired);
    let o = tier(url);
    let poller = tokio::spawn(async move { o.wait_for_value("wait:poll", Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.set("wait:poll", b"late", Duration::from_secs(60)).await.unwrap();
    let got =
        tokio::time::timeout(Duration::from_secs(20), poller).await.expect("poller hung").unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"late"[..]));

    // --- backplane: an invalidation published by one client reaches every subscriber,
    // including the publisher itself.
    let seen_b: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_a: Arc<Mutex<Vec<String>>> = Arc::default();
    let sb = Arc::clone(&seen_b);
    assert!(other.subscribe_invalidations(Arc::new(move |k: &str| sb.lock().unwrap().push(k.to_string()))));
    let sa = Arc::clone(&seen_a);
    assert!(t.subscribe_invalidations(Arc::new(move |k: &str| sa.lock().unwrap().push(k.to_string()))));
    wait_subscribed(&other).await;
    wait_subscribed(&t).await;
    t.publish_invalidation("loan_calc:v1:aa").await.unwrap();
    t.publish_invalidation("a}b{c:d").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = seen_b.lock().unwrap().clone();
        let a = seen_a.lock().unwrap().clone();
        if b.len() >= 2 && a.len() >= 2 {
            assert_eq!(b, ["loan_calc:v1:aa", "a}b{c:d"]);
            assert_eq!(a, ["loan_calc:v1:aa", "a}b{c:d"]);
            break;
        }
        assert!(Instant::now() < deadline, "invalidations not delivered: a={a:?} b={b:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
