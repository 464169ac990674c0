//! Model checks of larder's concurrency core with [loom](https://docs.rs/loom): every
//! interleaving (up to a preemption bound) of the data-key cache's locks and usage counters,
//! for the claims the envelope makes under concurrency — one keyring call per cold data key,
//! exact usage limits, every waiter gets the result or the error, no lost wake-ups.
//!
//! The models are the integration tests in `tests/loom_*.rs`; they compile to nothing unless
//! the build sets the `larder_loom` cfg, which switches the envelope's `Mutex`, `RwLock` and
//! atomics to loom's (`larder-envelope/src/sync.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg larder_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p larder-loom --release
//! ```
//!
//! This crate has no code of its own and does not model what loom cannot see: Tokio's
//! primitives, or the internals of `futures::future::Shared` (std locks that loom runs as
//! plain locks).
//!
//! The models share one envelope between loom threads, which relies on this:
//!
//! ```
//! fn shared_by_threads<T: Send + Sync + Clone + 'static>() {}
//! shared_by_threads::<larder_envelope::Envelope>();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
