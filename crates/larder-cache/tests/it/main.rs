//! larder-cache's integration tests, in one binary (one link instead of one per file; the
//! layout ripgrep uses): one module per area, shared helpers in `common`.
//!
//! Tests that must run in a process of their own stay separate binaries, each saying why in
//! its header: `tests/fork.rs` (real `fork()`: other test threads could hold locks at the
//! fork), `tests/compile_fail.rs` (trybuild), `tests/runtime_blocking.rs` (asserts a
//! process-wide count), `tests/redis_tls.rs` (sets `SSL_CERT_FILE` for the whole process).
//!
//! Tests that need child processes re-run this binary with `--exact MODULE::TEST`
//! ([`common::test_path`]).

mod common;

mod axum_example;
#[cfg(all(feature = "cbor", feature = "sqlite"))]
mod cbor_codec;
mod core;
mod frame_vectors;
mod handles;
mod memoize;
mod metrics;
#[cfg(feature = "redis")]
mod redis_auth;
#[cfg(feature = "redis")]
mod redis_cache;
#[cfg(feature = "redis")]
mod redis_cluster_secure;
#[cfg(feature = "redis")]
mod redis_outage;
#[cfg(feature = "redis")]
mod redis_processes;
#[cfg(feature = "redis")]
mod redis_tier;
#[cfg(feature = "redis")]
mod redis_tls_url;
mod refresh;
mod result_ttl;
mod secret_invalidate;
mod spans;
mod sqlite_processes;
mod store_secret;
mod sync_async;
#[cfg(all(feature = "sqlite", feature = "redis"))]
mod tags;
