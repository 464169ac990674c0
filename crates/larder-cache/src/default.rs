//! The process-wide default cache of `#[memoize]` without `cache = …`.

use std::sync::OnceLock;

use larder_key::KeySecret;

use crate::cache::Cache;
use crate::config::DEFAULT_LOCAL_ENTRIES;
use crate::local::LocalTier;
use crate::options::{Options, SharedSpec};

/// The process-wide default cache used by `#[memoize]` without `cache = …`: configured from
/// `LARDER_CACHE` on first use, or local-only (10,000 entries) when it is unset or invalid
/// (the error is logged with `tracing`).
pub fn default_cache() -> &'static Cache {
    static DEFAULT: OnceLock<Cache> = OnceLock::new();
    DEFAULT.get_or_init(|| match Cache::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "LARDER_CACHE is invalid; using a local-only cache");
            local_only()
        }
    })
}

/// The fallback when `LARDER_CACHE` is invalid: a local tier of the default size, every other
/// setting at its default (the same constructor as [`CacheBuilder::build`](crate::CacheBuilder::build)).
fn local_only() -> Cache {
    let local = LocalTier::new(DEFAULT_LOCAL_ENTRIES, false);
    Cache::assemble(Some(local), SharedSpec::None, None, &KeySecret::default_key(), Options::default())
}
