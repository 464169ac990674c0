//! Redis Cluster with a password and over TLS (`rediss+cluster://`, `--tls-cluster yes`, a
//! throwaway CA given in the URL): values shared between two caches and spread over the
//! nodes, invalidations reaching the other cache's local tier through the backplane, and
//! wrong credentials or an untrusted certificate refused when the cache is built.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use larder_cache::{Cache, CacheError, KeySpace, TierError};
use larder_testkit::redis::{ClusterOptions, RedisCluster};

/// The value-MAC secret these tests give every Redis cache (larder refuses a Redis tier
/// without one): appended to the tier URL as `secret=`.
fn with_secret(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}secret=6c61726465722074657374206d6163207365637265742c203332206279746573")
}

const PW: &str = "cluster-pw";

/// Two caches over `url`: 30 inputs computed once in all; returns the caches.
fn share(url: &str) -> (Cache, Cache) {
    let a = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("cache A");
    let b = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("cache B");
    assert_eq!(a.shared_tier_name(), Some("redis-cluster"));
    let space = KeySpace::new("secure_cluster", 1).unwrap();
    let calls = AtomicU32::new(0);
    for cache in [&a, &b] {
        for i in 0..30u32 {
            let v = cache.get_or_compute_blocking(&space, &i, Duration::from_secs(60), || {
                calls.fetch_add(1, Ordering::SeqCst);
                i * 3
            });
            assert_eq!(v, i * 3);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 30);
    assert_eq!(b.stats().shared_hits, 30);
    (a, b)
}

/// An invalidation in `a` drops `b`'s local copy (pub/sub over the same secured connections).
fn backplane_reaches(a: &Cache, b: &Cache) {
    let space = KeySpace::new("secure_cluster", 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = b.stats().invalidations_received;
    a.invalidate_blocking(&space, &5u32);
    while b.stats().invalidations_received == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(b.stats().invalidations_received > before, "the invalidation never reached the other cache");
    assert_eq!(b.get_blocking::<_, u32>(&space, &5u32), None);
}

#[test]
fn cluster_with_password_and_over_tls() {
    let _alone = crate::common::alone();
    // Password, plaintext.
    let plain = RedisCluster::start_with(3, ClusterOptions { password: Some(PW.into()), tls: false });
    let hosts = plain.url().strip_prefix("redis+cluster://").unwrap().to_owned();
    let (a, b) = share(&format!("redis+cluster://:{PW}@{hosts}?prefix=pc:"));
    backplane_reaches(&a, &b);
    let stored: Vec<u64> =
        plain.nodes().iter().map(|n| n.command(&["KEYS", "pc:*"]).lines().count() as u64).collect();
    assert!(stored.iter().all(|&n| n > 0), "values spread over every node: {stored:?}");
    match Cache::from_url(&with_secret(&format!("local:10,redis+cluster://:wrong@{hosts}"))) {
        Err(CacheError::Tier(TierError::Auth(_))) => {}
        Err(e) => panic!("expected an auth refusal, got {e}"),
        Ok(_) => panic!("a wrong cluster password was accepted"),
    }
    drop((a, b, plain));

    // Password and TLS, the CA in the URL.
    let tls = RedisCluster::start_with(3, ClusterOptions { password: Some(PW.into()), tls: true });
    let url = tls.tls_url().expect("tls url");
    let hosts = url.strip_prefix("rediss+cluster://").unwrap().to_owned();
    let ca = tls.ca_cert().unwrap().display().to_string();
    let (a, b) = share(&format!("rediss+cluster://:{PW}@{hosts}?ca={ca}&prefix=tc:"));
    backplane_reaches(&a, &b);
    let stored: u64 = tls.nodes().iter().map(|n| n.command(&["KEYS", "tc:*"]).lines().count() as u64).sum();
    assert_eq!(stored, 29, "30 values, one invalidated");
    match Cache::from_url(&with_secret(&format!("local:10,rediss+cluster://:{PW}@{hosts}"))) {
        Err(CacheError::Tier(TierError::Tls(_))) => {}
        Err(e) => panic!("expected a TLS refusal, got {e}"),
        Ok(_) => panic!("an untrusted cluster was accepted"),
    }
    match Cache::from_url(&with_secret(&format!("local:10,rediss+cluster://:wrong@{hosts}?ca={ca}"))) {
        Err(CacheError::Tier(TierError::Auth(_))) => {}
        Err(e) => panic!("expected an auth refusal, got {e}"),
        Ok(_) => panic!("a wrong cluster password was accepted over TLS"),
    }
}
