//! Production Redis URLs against real servers: a password (`requirepass`), ACL users, a key
//! prefix, a connection pool and timeouts in the URL; wrong credentials or a missing
//! permission fail the build with a typed error, a server that is only down does not.
//! (TLS: `tests/it/redis_tls_url.rs`.)

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

const ADMIN_PW: &str = "p@ss:w/rd ok";
/// `ADMIN_PW` percent-encoded for the URL's userinfo.
const ADMIN_PW_URL: &str = "p%40ss%3Aw%2Frd%20ok";

fn server_with_password() -> RedisServer {
    RedisServer::start_with(RedisOptions { password: Some(ADMIN_PW.into()), ..RedisOptions::default() })
}

fn port(s: &RedisServer) -> u16 {
    s.port().expect("tcp server")
}

/// Two caches built from `url` (two "workers"): 10 inputs, each asked by both → 10
/// computations; returns the key names the server holds under `prefix`.
fn share_through(url: &str, server: &RedisServer, prefix: &str) -> Vec<String> {
    let a = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("cache A");
    let b = Cache::from_url(&with_secret(&format!("local:100,{url}"))).expect("cache B");
    let space = KeySpace::new("auth_test", 1).unwrap();
    let calls = AtomicU32::new(0);
    for cache in [&a, &b] {
        for i in 0..10u32 {
            let v = cache.get_or_compute_blocking(&space, &i, Duration::from_secs(60), || {
                calls.fetch_add(1, Ordering::SeqCst);
                u64::from(i) * 7
            });
            assert_eq!(v, u64::from(i) * 7);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10, "the second cache got every value from Redis");
    assert_eq!(b.stats().shared_hits, 10);
    assert_eq!(a.stats().store_errors + b.stats().store_errors, 0);
    let keys = server.command(&["KEYS", &format!("{prefix}*")]);
    keys.lines().map(str::to_owned).collect()
}

fn expect_refused(url: &str, what: &str) -> TierError {
    let started = Instant::now();
    let err = Cache::from_url(&with_secret(&format!("local:10,{url}"))).expect_err(what);
    assert!(started.elapsed() < Duration::from_secs(3), "{what}: refused only after {:?}", started.elapsed());
    eprintln!("{what}: {err}");
    match err {
        CacheError::Tier(e @ (TierError::Auth(_) | TierError::Tls(_))) => e,
        other => panic!("{what}: expected an auth/TLS refusal, got {other}"),
    }
}

#[test]
fn requirepass_password_in_url_prefix_pool_and_timeout() {
    let _timed = crate::common::timed();
    let server = server_with_password();
    let p = port(&server);
    let url = format!("redis://:{ADMIN_PW_URL}@127.0.0.1:{p}?prefix=app1:&connections=3&timeout=500ms");
    let keys = share_through(&url, &server, "app1:");
    assert_eq!(keys.len(), 10, "every value under the URL's prefix: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("app1:{#auth_test:v1:")), "{keys:?}");
    assert_eq!(server.command(&["KEYS", "larder:*"]), "", "nothing under the default prefix");

    // Wrong or missing password: refused at build time, with the server's reason.
    let e = expect_refused(&format!("redis://:wrong@127.0.0.1:{p}"), "a wrong password");
    assert!(e.to_string().contains("WRONGPASS") || e.to_string().contains("auth"), "{e}");
    let e = expect_refused(&format!("redis://127.0.0.1:{p}"), "no password");
    assert!(e.to_string().contains("NOAUTH") || e.to_string().contains("auth"), "{e}");
}

#[test]
fn acl_users_and_their_key_patterns() {
    let _timed = crate::common::timed();
    let server = server_with_password();
    let p = port(&server);
    // A user that may only touch keys and channels under `app2:`.
    let set =
        server.command(&["ACL", "SETUSER", "cacheuser", "on", ">user-pw", "~app2:*", "&app2:*", "+@all"]);
    assert_eq!(set, "OK");
    let url = format!("redis://cacheuser:user-pw@127.0.0.1:{p}?prefix=app2:");
    let keys = share_through(&url, &server, "app2:");
    assert_eq!(keys.len(), 10, "{keys:?}");

    // The same user with a prefix outside its key pattern: NOPERM at build time.
    let e = expect_refused(
        &format!("redis://cacheuser:user-pw@127.0.0.1:{p}?prefix=other:"),
        "a forbidden prefix",
    );
    assert!(e.to_string().contains("NOPERM") || e.to_string().contains("permission"), "{e}");
    expect_refused(&format!("redis://cacheuser:nope@127.0.0.1:{p}?prefix=app2:"), "a wrong user password");
    expect_refused(&format!("redis://nobody:user-pw@127.0.0.1:{p}?prefix=app2:"), "an unknown user");
    // A disabled user.
    assert_eq!(server.command(&["ACL", "SETUSER", "cacheuser", "off"]), "OK");
    expect_refused(&url, "a disabled user");
}

#[test]
fn a_server_that_is_down_does_not_stop_the_build() {
    let _timed = crate::common::timed();
    let mut server = RedisServer::start();
    let url = format!("{}?timeout=300ms", server.url());
    server.kill9();
    let started = Instant::now();
    let cache = Cache::from_url(&with_secret(&format!("local:10,{url}")))
        .expect("a down server is an outage, not a misconfiguration");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let space = KeySpace::new("down", 1).unwrap();
    assert_eq!(cache.get_or_compute_blocking(&space, &1u8, Duration::from_secs(5), || 9u8), 9, "fail-open");
    // Back up: the same cache uses it.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.set_blocking(&space, &2u8, 5u8, Duration::from_secs(60));
        if server.command(&["KEYS", "larder:*"]).lines().count() == 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.command(&["KEYS", "larder:*"]).lines().count(), 1, "the restarted server is used");
}

#[test]
fn bad_url_parameters_are_config_errors() {
    let _timed = crate::common::timed();
    for (url, why) in [
        ("redis://127.0.0.1:1?timeout=banana", "timeout"),
        ("redis://127.0.0.1:1?timeout=0ms", "timeout"),
        ("redis://127.0.0.1:1?connections=0", "connections"),
        ("redis://127.0.0.1:1?connections=lots", "connections"),
        ("redis://127.0.0.1:1?prefix=a{b}", "prefix"),
        ("redis://127.0.0.1:1?colour=blue", "colour"),
        ("redis://127.0.0.1:1?ca=/etc/hosts", "TLS"),
        ("rediss://127.0.0.1:1?ca=/nonexistent/ca.pem", "ca"),
        ("rediss://127.0.0.1:1?client_cert=/etc/hosts", "client_key"),
        ("redis+cluster://?prefix=x", "host"),
    ] {
        match Cache::from_url(&with_secret(&format!("local:10,{url}"))) {
            Err(e @ (CacheError::Config(_) | CacheError::Tier(TierError::Config(_)))) => {
                assert!(e.to_string().contains(why), "{url}: {e}");
            }
            Err(e) => panic!("{url}: expected a configuration error, got {e}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }
}

#[test]
fn unix_socket_with_password_parameter() {
    let _timed = crate::common::timed();
    let server = RedisServer::start_with(RedisOptions {
        unix_socket: true,
        password: Some(ADMIN_PW.into()),
        ..RedisOptions::default()
    });
    let url = format!("{}?pass={ADMIN_PW_URL}&prefix=sock:", server.url());
    assert!(url.starts_with("redis+unix:///"));
    let keys = share_through(&url, &server, "sock:");
    assert_eq!(keys.len(), 10, "{keys:?}");
    expect_refused(&format!("{}?pass=wrong", server.url()), "a wrong password on a unix socket");
}
