//! larder keeps what services compute, and the keys they encrypt with, correctly across
//! threads, worker processes and hosts. This facade re-exports the workspace's crates.
#![forbid(unsafe_code)]

/// Stable, injective cache keys (`larder-key`).
pub mod key {
    pub use larder_key::*;
}
pub use larder_key::{CacheKey, KeyError, KeySecret, KeySpace, StableKey};
