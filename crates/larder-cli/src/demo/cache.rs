//! The demo workers' view of the memo cache: one `larder_cache::Cache` opened from the store
//! URL, one key space per run, and the blocking `get_or_compute`.

use std::time::Duration;

use anyhow::Context as _;
use larder::cache::{Cache, CacheStats};
use larder::{KeySpace, StableKey};

/// How long the demo's entries live (long enough for a run; a shared Redis forgets them).
const TTL: Duration = Duration::from_secs(600);

pub struct DemoCache {
    cache: Cache,
    space: KeySpace,
}

impl DemoCache {
    pub fn open(store: &str, namespace: &str) -> anyhow::Result<Self> {
        let cache = Cache::from_url(store).with_context(|| format!("cannot open the cache {store:?}"))?;
        let space = KeySpace::new(namespace, 1)?;
        Ok(DemoCache { cache, space })
    }

    /// The cached value for `args`, or `compute()` run once for the whole fleet. The cache never
    /// fails a call (a broken tier means computing), so neither does this.
    pub fn get_or_compute<A: StableKey + ?Sized>(&self, args: &A, compute: impl FnOnce() -> u64) -> u64 {
        self.cache.get_or_compute_blocking(&self.space, args, TTL, compute)
    }

    /// The key text this cache stores `args` under.
    pub fn key_text<A: StableKey + ?Sized>(&self, args: &A) -> anyhow::Result<String> {
        Ok(self.space.key(args)?.as_str().to_string())
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}
