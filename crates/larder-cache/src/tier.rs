//! The shared tier interface: what the SQLite, Redis and Redis Cluster stores implement.
//!
//! A shared tier stores opaque frames (see `docs/cache-value-format.md`) under key texts and
//! coordinates workers: leases let one worker compute a value while others wait for it, and
//! invalidation messages keep other processes' local tiers honest. The cache core
//! (single-flight, XFetch, circuit breaker, framing and MACs) lives above this trait, so a
//! tier never interprets the bytes it stores.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Tunables shared by the core and handed to tiers when they are opened.
#[derive(Debug, Clone)]
pub struct TierOptions {
    /// Longest any one tier call may take.
    pub op_timeout: Duration,
    /// How often a tier without notifications polls while waiting for a value.
    pub poll_interval: Duration,
    /// A runtime handle for background work (connections, subscriptions, blocking calls).
    pub runtime: tokio::runtime::Handle,
}

/// A boxed, sendable future (keeps [`SharedTier`] usable as `dyn SharedTier`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of the shared tier. The cache treats every one of them as "tier unavailable":
/// it answers by computing (fail-open) and feeds its circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TierError {
    /// The server could not be reached, the connection broke, or the database is locked.
    Unavailable(String),
    /// The call did not finish within its timeout.
    Timeout,
    /// The server answered with an error.
    Server(String),
    /// The tier was configured wrongly (bad URL, unusable path).
    Config(String),
    /// The server refused this client's credentials or permissions (wrong password, unknown
    /// ACL user, a command or key the user may not use).
    Auth(String),
    /// The TLS handshake failed: the server's certificate is not trusted (or not for this
    /// host), or the server refused the client certificate.
    Tls(String),
}

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TierError::Unavailable(d) => write!(f, "cache tier unavailable: {d}"),
            TierError::Timeout => write!(f, "cache tier call timed out"),
            TierError::Server(d) => write!(f, "cache tier server error: {d}"),
            TierError::Config(d) => write!(f, "cache tier configuration error: {d}"),
            TierError::Auth(d) => write!(f, "cache tier refused the credentials: {d}"),
            TierError::Tls(d) => write!(f, "cache tier TLS handshake failed: {d}"),
        }
    }
}

impl std::error::Error for TierError {}

/// What a shared tier holds (for operators: `larder cache stats`), counted by namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inventory {
    /// Stored values (on SQLite, expired ones not swept yet included).
    pub entries: u64,
    /// Bytes of the stored frames.
    pub bytes: u64,
    /// Entries past their expiry, not yet swept (SQLite; Redis drops them itself: 0).
    pub expired: u64,
    /// Compute leases held right now.
    pub leases: u64,
    /// By `namespace:vN` (the key text before its digest).
    pub namespaces: std::collections::BTreeMap<String, NamespaceInventory>,
}

/// One namespace version's share of an [`Inventory`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceInventory {
    /// Stored values.
    pub entries: u64,
    /// Bytes of their frames.
    pub bytes: u64,
}

impl Inventory {
    /// Counts one stored value under key text `key`.
    pub fn add(&mut self, key: &str, bytes: u64, expired: bool) {
        self.entries += 1;
        self.bytes += bytes;
        self.expired += u64::from(expired);
        let space = key.rsplit_once(':').map_or(key, |(space, _digest)| space);
        let ns = self.namespaces.entry(space.to_owned()).or_default();
        ns.entries += 1;
        ns.bytes += bytes;
    }
}

/// The outcome of asking for a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This caller holds the lease and should compute the value.
    Acquired,
    /// Another worker holds it; wait for the value (or for the lease to expire).
    HeldByOther,
}

/// Receives invalidations published by other processes (key texts).
pub type InvalidationHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// A store shared by every worker process: SQLite on one host, Redis beyond.
///
/// Every method must return within the tier's configured timeout. Implementations must be
/// safe to call from many tasks and threads at once.
pub trait SharedTier: Send + Sync + 'static {
    /// A short name for metrics and logs (`sqlite`, `redis`, `redis-cluster`).
    fn name(&self) -> &'static str;

    /// The bound this tier itself puts on each call (`get`, `set`, `delete`, leases,
    /// `publish_invalidation`), answering [`TierError::Timeout`] past it. `None` (the
    /// default): the cache bounds every call with its `op_timeout`. A tier that answers `Some`
    /// is not timed out a second time — one timer per call (the SQLite and Redis tiers, whose
    /// timeout is the cache's `op_timeout` when opened from a URL).
    fn call_timeout(&self) -> Option<Duration> {
        None
    }

    /// The frame stored under `key`, if any (expired entries may be returned; the frame
    /// carries its own expiry and the core checks it).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>>;

    /// Stores `frame` under `key`; the store may drop it after `ttl`.
    fn set<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), TierError>>;

    /// Stores `frame` under `key` only if nothing (unexpired) is stored there; `true` if it
    /// was stored. Tag records are created with it, so workers that see a new tag together
    /// agree on one generation token. The default (a `get`, then a `set`) is not atomic: two
    /// workers may then both create one, which costs a recomputation, never a wrong value.
    /// The SQLite and Redis tiers do it atomically.
    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, TierError>> {
        Box::pin(async move {
            if self.get(key).await?.is_some() {
                return Ok(false);
            }
            self.set(key, frame, ttl).await.map(|()| true)
        })
    }

    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TierError>>;

    /// Tries to take the compute lease for `key` with a random `token`, held for at most
    /// `ttl` (a holder that dies loses it when it expires).
    fn try_lease<'a>(
        &'a self,
        key: &'a str,
        token: &'a [u8; 16],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, TierError>>;

    /// Releases the lease if, and only if, it is still held with `token`.
    fn release_lease<'a>(&'a self, key: &'a str, token: &'a [u8; 16])
        -> BoxFuture<'a, Result<(), TierError>>;

    /// Waits up to `timeout` for a value to appear under `key` while another worker holds its
    /// lease (by notification or bounded polling), returning it, or `None` when the timeout
    /// passes or the lease disappears without a value.
    fn wait_for_value<'a>(
        &'a self,
        key: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>>;

    /// Tells other processes that `key` changed, so they drop it from their local tiers.
    /// Tiers without a backplane return `Ok(())` and do nothing.
    fn publish_invalidation<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TierError>>;

    /// Registers `handler` to be called with the key text of every invalidation published by
    /// any process (including this one). Returns `false` if the tier has no backplane.
    fn subscribe_invalidations(&self, handler: InvalidationHandler) -> bool;

    /// A tier for a child process made by `fork()` from the process that opened this one:
    /// its own connections, file handles and background tasks (the inherited ones belong to
    /// the parent; the cache never uses or drops them in the child). Tiers the cache opened
    /// from a URL are simply opened again from it and never reach this method; it is for tiers
    /// handed to [`CacheBuilder::shared`](crate::CacheBuilder::shared).
    ///
    /// The default refuses: the child then runs without a shared tier (it computes, like
    /// during an outage) and logs the error.
    fn reopen_after_fork(&self) -> Result<Arc<dyn SharedTier>, TierError> {
        Err(TierError::Config(format!(
            "the {} tier does not implement reopen_after_fork; it cannot be used in a forked child",
            self.name()
        )))
    }
}
