//! `rediss://`: the Redis tier over TLS (rustls) against a real `redis-server` with a TLS port
//! and a throwaway CA. The conformance suite runs unchanged over TLS; a server whose CA is not
//! trusted is an error, never a silent plaintext fallback.
//!
//! Its own binary, with one test, because it sets `SSL_CERT_FILE` (where rustls-native-certs finds
//! trusted roots) for the whole process.
#![cfg(feature = "redis")]

#[path = "it/common/redis.rs"]
mod redis_common;

use std::time::{Duration, Instant};

use larder_cache::redis::{connect, RedisOptions};
use larder_cache::SharedTier;
use larder_testkit::redis::RedisServer;
use redis_common::{conformance, raw_single};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_conformance_and_untrusted_servers_refused() {
    let server = RedisServer::start_tls();
    let url = server.tls_url().unwrap();
    assert!(url.starts_with("rediss://"));

    // Not trusted yet (an empty trust store): the handshake fails, within the timeout.
    let empty = tempfile::NamedTempFile::new().unwrap();
    std::env::set_var("SSL_CERT_FILE", empty.path());
    let untrusted = connect(&url, RedisOptions::default().timeout(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let err = untrusted.get("k").await.expect_err("an untrusted TLS server was accepted");
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");

    // Trust the test CA: everything works over TLS.
    std::env::set_var("SSL_CERT_FILE", server.ca_cert().unwrap());
    let raw = raw_single(&server);
    conformance(&url, &raw).await;

    // The TLS listener and the plaintext one are the same server.
    let tier = connect(&url, RedisOptions::default()).unwrap();
    tier.set("over:tls", b"yes", Duration::from_secs(60)).await.unwrap();
    assert_eq!(server.command(&["GET", &tier.value_key("over:tls")]), "yes");
}
