//! `rediss://` with the CA given in the URL (`?ca=PATH`), a password on top, and an untrusted
//! server refused when the cache is built (never a silent plaintext fallback, never a cache
//! that computes forever). The server is a real `redis-server --tls-port` with a certificate
//! from a throwaway CA the test makes (`larder_testkit::redis::RedisServer::start_tls_with`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use larder_cache::{Cache, CacheError, KeySpace, TierError};
use larder_testkit::redis::{RedisOptions, RedisServer};

/// The value-MAC secret these tests give every Redis cache (larder refuses a Redis tier
/// without one): appended to the tier URL as `secret=`.
fn with_secret(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}secret=6c61726465722074657374206d6163207365637265742c203332206279746573")
}

#[test]
fn rediss_with_ca_in_url_and_password_shares_values_and_untrusted_is_refused() {
    let _alone = crate::common::alone();
    let server = RedisServer::start_tls_with(RedisOptions {
        password: Some("tls-pw".into()),
        ..RedisOptions::default()
    });
    let tls_url = server.tls_url().expect("tls url");
    let hostport = tls_url.strip_prefix("rediss://").unwrap();
    let ca = server.ca_cert().unwrap().display().to_string();

    let url = format!("rediss://:tls-pw@{hostport}?ca={ca}&prefix=tls:&connections=2");
    let a = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("cache over TLS");
    let b = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("second cache over TLS");
    assert_eq!(a.shared_tier_name(), Some("redis"));
    let space = KeySpace::new("tls_test", 1).unwrap();
    let calls = AtomicU32::new(0);
    for cache in [&a, &b] {
        for i in 0..8u32 {
            let v = cache.get_or_compute_blocking(&space, &i, Duration::from_secs(60), || {
                calls.fetch_add(1, Ordering::SeqCst);
                i + 100
            });
            assert_eq!(v, i + 100);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    assert_eq!(b.stats().shared_hits, 8);
    assert_eq!(server.command(&["KEYS", "tls:*"]).lines().count(), 8, "stored through the TLS port");

    // No `ca`: the system roots do not know the test CA → refused at build time.
    let started = Instant::now();
    match Cache::from_url(&with_secret(&format!("local:10,rediss://:tls-pw@{hostport}"))) {
        Err(CacheError::Tier(TierError::Tls(why))) => eprintln!("untrusted: {why}"),
        Err(e) => panic!("expected a TLS refusal, got {e}"),
        Ok(_) => panic!("an untrusted TLS server was accepted"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Trusted, but the wrong password: an auth refusal, over TLS.
    match Cache::from_url(&with_secret(&format!("local:10,rediss://:nope@{hostport}?ca={ca}"))) {
        Err(CacheError::Tier(TierError::Auth(_))) => {}
        Err(e) => panic!("expected an auth refusal, got {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    // A plaintext client on the TLS port is not a working cache either, but it is
    // indistinguishable from an outage (the server just closes): it builds and fails open.
}

#[test]
fn mutual_tls_with_client_certificate_in_url() {
    let _alone = crate::common::alone();
    let server = RedisServer::start_tls_with(RedisOptions {
        extra_args: vec!["--tls-auth-clients".into(), "yes".into()],
        ..RedisOptions::default()
    });
    let hostport = server.tls_url().unwrap().strip_prefix("rediss://").unwrap().to_owned();
    let ca = server.ca_cert().unwrap().display().to_string();
    let (cert, key) = server.client_cert_and_key().unwrap();
    let url =
        format!("rediss://{hostport}?ca={ca}&client_cert={}&client_key={}", cert.display(), key.display());
    let cache = Cache::from_url(&with_secret(&format!("local:10,{url}"))).expect("mutual TLS");
    let space = KeySpace::new("mtls", 1).unwrap();
    cache.set_blocking(&space, &1u8, 11u32, Duration::from_secs(60));
    assert_eq!(server.command(&["KEYS", "larder:*"]).lines().count(), 1, "stored over mutual TLS");
    // Without a client certificate the server refuses the handshake: a TLS error at build time.
    match Cache::from_url(&with_secret(&format!("local:10,rediss://{hostport}?ca={ca}"))) {
        Err(CacheError::Tier(TierError::Tls(why))) => eprintln!("no client certificate: {why}"),
        Err(e) => panic!("expected a TLS refusal, got {e}"),
        Ok(_) => panic!("a server requiring client certificates accepted none"),
    }
}
