//! larder keeps what services compute, and the keys they encrypt with, correctly across
//! threads, worker processes and hosts. This facade re-exports the workspace's crates.
#![forbid(unsafe_code)]

/// Stable, injective cache keys (`larder-key`).
pub mod key {
    pub use larder_key::*;
}
// `StableKey` names both the trait and `#[derive(StableKey)]`; this one `use` re-exports both.
// The derive finds the trait at `::larder::key` when the user's crate depends on `larder` only.
pub use larder_key::{CacheKey, KeyError, KeySecret, KeySpace, StableKey};

/// The memo cache (`larder-cache`): tiers, single-flight, leases, XFetch, fail-open.
#[cfg(feature = "cache")]
pub mod cache {
    pub use larder_cache::*;
}
/// `#[memoize]`: caches a function's results in a [`cache::Cache`].
#[cfg(feature = "cache")]
pub use larder_cache::memoize;
