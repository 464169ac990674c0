//! [`CacheBuilder`]: every setting of a cache, its defaults, and `build()` (resolve the MAC
//! secret, open the shared tier, assemble the [`Cache`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use larder_key::KeySecret;

use crate::cache::Cache;
use crate::error::CacheError;
use crate::local::LocalTier;
use crate::open::open_url;
use crate::options::{Options, SharedSpec};
use crate::store_secret::TierKind;
use crate::tier::SharedTier;

/// Builds a [`Cache`]. Every setting has a default; see each method.
#[must_use]
pub struct CacheBuilder {
    local: Option<(u64, bool)>,
    shared: SharedSpec,
    secret: Option<KeySecret>,
    insecure_public_mac: bool,
    opts: Options,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder").field("local", &self.local).field("opts", &self.opts).finish()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            local: None,
            shared: SharedSpec::None,
            secret: None,
            insecure_public_mac: false,
            opts: Options::default(),
        }
    }
}

impl CacheBuilder {
    /// An in-process tier holding at most `entries` values (default: none; a cache with no
    /// tier at all still coalesces concurrent calls but stores nothing).
    pub fn local(mut self, entries: u64) -> Self {
        self.local = Some((entries, false));
        self
    }

    /// An in-process tier bounded by approximate bytes (payload + key + 64 per entry).
    pub fn local_bytes(mut self, bytes: u64) -> Self {
        self.local = Some((bytes, true));
        self
    }

    /// A shared tier given by URL: `sqlite:PATH`, `redis://…`, `rediss://…`,
    /// `redis+unix://…`, `redis+cluster://host:port,host:port`.
    pub fn shared_url(mut self, url: &str) -> Self {
        self.shared = SharedSpec::Url(url.to_owned());
        self
    }

    /// A shared tier you opened yourself.
    pub fn shared(mut self, tier: Arc<dyn SharedTier>) -> Self {
        self.shared = SharedSpec::Tier(tier);
        self
    }

    /// The deployment secret that keys the value MAC. Every process sharing a tier must use
    /// the same secret. Without one: `secret=HEX` in the tier URL, else `LARDER_KEY_SECRET`,
    /// else a per-store secret created beside a SQLite file (`PATH.secret`, mode 0600), else
    /// — Redis, or a tier given to [`shared`](Self::shared) — `build()` fails with
    /// [`CacheError::Secret`] (see `docs/cache.md`, "Who can do what to a shared tier").
    pub fn secret(mut self, secret: &KeySecret) -> Self {
        self.secret = Some(secret.clone());
        self
    }

    /// Accepts the fixed, public default MAC key when no secret is configured (also
    /// `insecure_public_mac=true` in the tier URL). **Anyone who can write to the shared tier
    /// can then forge entries that every worker serves.** Only for throw-away setups.
    pub fn insecure_public_mac(mut self, yes: bool) -> Self {
        self.insecure_public_mac = yes;
        self
    }

    /// Longest any one shared-tier call may take (default 250 ms). A call that takes longer
    /// counts as a tier error and the cache answers without the tier.
    pub fn op_timeout(mut self, t: Duration) -> Self {
        self.opts.op_timeout = t;
        self
    }

    /// How long a compute lease is held at most (default 10 s): a holder that dies stops
    /// blocking others after this long. Make it longer than your slowest computation.
    pub fn lease_ttl(mut self, t: Duration) -> Self {
        self.opts.lease_ttl = t;
        self
    }

    /// How long a worker waits for another worker's lease before computing itself (default 5 s).
    pub fn lease_wait(mut self, t: Duration) -> Self {
        self.opts.lease_wait = t;
        self
    }

    /// XFetch's β (default 1.0; 0 disables early recomputation; larger refreshes earlier).
    pub fn xfetch_beta(mut self, beta: f64) -> Self {
        self.opts.xfetch_beta = if beta.is_finite() && beta > 0.0 { beta } else { 0.0 };
        self
    }

    /// TTL jitter as a fraction (default 0.1: each stored TTL is shortened by up to 10%, so
    /// entries written together do not expire together).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.opts.ttl_jitter = if fraction.is_finite() { fraction.clamp(0.0, 0.9) } else { 0.0 };
        self
    }

    /// Largest serialized value stored (default 1 MiB). Larger values are computed and
    /// returned but not stored (counted as `oversize_values`).
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.opts.max_value_bytes = n;
        self
    }

    /// Fail-safe: when the function fails, serve the last value for up to `window` past its
    /// expiry (default off). Entries are kept in the shared tier that much longer.
    pub fn fail_safe(mut self, window: Duration) -> Self {
        self.opts.fail_safe = Some(window);
        self
    }

    /// Stale-while-revalidate: for up to `window` past its expiry, a value is returned at once
    /// by the detached API (`Pending::compute_detached`, `#[memoize(detach)]`, …) while one
    /// worker refreshes it in the background under the lease (default off). Entries are kept
    /// in the shared tier that much longer. XFetch's early refresh before expiry is detached
    /// too, with or without this window.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.opts.stale_window = Some(window).filter(|w| !w.is_zero());
        self
    }

    /// Soft timeout of the detached API's function (default none): past it, a caller that has
    /// a fail-safe value ([`fail_safe`](Self::fail_safe)) gets it while the function goes on in
    /// the background and stores its value when it ends. Without such a value the caller
    /// keeps waiting (up to the hard timeout). Per call: `Pending::soft_timeout`.
    pub fn soft_timeout(mut self, after: Duration) -> Self {
        self.opts.soft_timeout = Some(after).filter(|d| !d.is_zero());
        self
    }

    /// Hard timeout of the detached API's fallible function (default none): past it, the
    /// caller gets [`FactoryTimeout`](crate::FactoryTimeout) (as its own error type), nothing
    /// is stored and the lease is released. Per call: `Pending::hard_timeout`.
    pub fn hard_timeout(mut self, after: Duration) -> Self {
        self.opts.hard_timeout = Some(after).filter(|d| !d.is_zero());
        self
    }

    /// Caps how long the local tier keeps a value (default: no cap beyond the entry's TTL when
    /// the shared tier has an invalidation backplane, 30 s when it has none, such as SQLite, so
    /// an invalidation in another process is seen within that time).
    pub fn local_max_ttl(mut self, t: Duration) -> Self {
        self.opts.local_max_ttl = Some(t);
        self
    }

    /// Circuit breaker: open once shared-tier errors outnumber successes by `failures`, skip
    /// the tier for `cooldown`, then probe with one call (default 5, 1 s).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.opts.breaker_threshold = failures;
        self.opts.breaker_cooldown = cooldown;
        self
    }

    /// Poll interval for tiers that wait by polling (SQLite; default 10 ms).
    pub fn poll_interval(mut self, t: Duration) -> Self {
        self.opts.poll_interval = t.max(Duration::from_millis(1));
        self
    }

    /// How values are serialized in shared-tier frames (default postcard; `ValueCodec::Cbor`
    /// with feature `cbor` for caches shared with other languages). Reads follow each frame's
    /// own flag, whatever this is set to.
    pub fn value_codec(mut self, codec: crate::codec::ValueCodec) -> Self {
        self.opts.codec = codec;
        self
    }

    /// How many namespaces get a `namespace` label of their own in this cache's metrics
    /// (default [`DEFAULT_METRIC_NAMESPACES`](crate::DEFAULT_METRIC_NAMESPACES), 50): the
    /// first `n` seen, in order of first use; every later one is counted under
    /// [`OTHER_NAMESPACES`](crate::OTHER_NAMESPACES). Bounds the series a scrape returns when
    /// namespaces are made at run time. `0`: every namespace is `(other)`.
    pub fn metric_namespaces(mut self, n: usize) -> Self {
        self.opts.metric_namespaces = n;
        self
    }

    /// How long a process serves a tagged local entry before confirming its tags against the
    /// shared tier again (default 1 s): the bound on how late another process's
    /// [`Cache::invalidate_tag`] reaches this process's local tier when the backplane message
    /// is lost or there is no backplane (SQLite). The calling process sees it at once.
    pub fn tag_recheck(mut self, t: Duration) -> Self {
        self.opts.tag_recheck = t;
        self
    }

    /// Opens the tiers and builds the cache.
    pub fn build(self) -> Result<Cache, CacheError> {
        // The MAC secret: never a silent public default for a shared tier (store_secret.rs).
        let (shared_spec, url_opts) = match self.shared {
            SharedSpec::Url(url) => {
                let (url, o) = crate::store_secret::take_url_options(&url)?;
                (SharedSpec::Url(url), o)
            }
            other => (other, Default::default()),
        };
        let tier_kind = match &shared_spec {
            SharedSpec::None => TierKind::None,
            SharedSpec::Url(url) => crate::store_secret::sqlite_path(url)
                .map_or(TierKind::Other(url.split(':').next().unwrap_or("shared")), TierKind::Sqlite),
            SharedSpec::Tier(t) => TierKind::Other(t.name()),
        };
        let secret = crate::store_secret::resolve(
            self.secret,
            url_opts.secret,
            self.insecure_public_mac || url_opts.insecure_public_mac,
            tier_kind,
        )?;
        let shared: Option<Arc<dyn SharedTier>> = match &shared_spec {
            SharedSpec::None => None,
            SharedSpec::Tier(t) => Some(t.clone()),
            SharedSpec::Url(url) => Some(open_url(url, &self.opts)?),
        };
        let local = self.local.map(|(n, by_bytes)| LocalTier::new(n, by_bytes));
        Ok(Cache::assemble(local, shared_spec, shared, &secret, self.opts))
    }
}

impl Cache {
    /// A builder with every default (no tiers).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
}
