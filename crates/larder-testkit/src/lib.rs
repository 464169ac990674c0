//! Test support for larder: starts real servers (redis-server, a Redis Cluster, moto's KMS
//! server) on loopback ports or unix sockets that the tests own, and stops them on drop.
//!
//! Nothing here mocks a server. When a server binary is missing, the helpers panic with a
//! message naming what to install (tests must fail, never skip silently).
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;

pub mod moto;
pub mod postgres;
pub mod redis;

/// Finds a server binary: the environment variable `env` (set by `scripts/test.sh`), else
/// `name` on `PATH`. Panics with an install hint when neither exists.
pub fn find_binary(env: &str, name: &str, install_hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from).filter(|p| p.is_file()) {
        return p;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "`{name}` was not found (neither ${env} nor PATH). {install_hint} \
         — or simply run `bash scripts/test.sh`, which installs it."
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local addr of ephemeral listener").port()
}
