//! The cache core: tiers, single-flight, leases, XFetch, fail-open.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use larder_key::{KeySecret, KeySpace, StableKey};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::breaker::{Breaker, Permit};
use crate::flight::{Flights, Joined, LeaderGuard, Outcome, Waited};
use crate::frame::{self, FrameMeta, MacKey};
use crate::local::{self as local_clock, LocalEntry, LocalKey, LocalTier};
use crate::stats::{bump, CacheStats, Counters};
use crate::store_secret::TierKind;
use crate::tags::{Stamp, Stamped, TagSet, TagTable};
use crate::tier::{Lease, SharedTier, TierError};

/// Why a cache could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// The configuration string or a builder setting is invalid.
    Config(String),
    /// A shared tier could not be opened.
    Tier(TierError),
    /// The cache's background runtime could not be started.
    Runtime(String),
    /// The shared tier has no secret to authenticate its entries (and the public default
    /// was not opted into), or the per-store secret file is unusable. The message says how
    /// to set one.
    Secret(String),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Config(d) => write!(f, "invalid cache configuration: {d}"),
            CacheError::Tier(e) => write!(f, "cannot open cache tier: {e}"),
            CacheError::Runtime(d) => write!(f, "cannot start the cache runtime: {d}"),
            CacheError::Secret(d) => write!(f, "no usable cache secret: {d}"),
        }
    }
}

impl std::error::Error for CacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Tier(e) => Some(e),
            CacheError::Config(_) | CacheError::Runtime(_) | CacheError::Secret(_) => None,
        }
    }
}

impl From<TierError> for CacheError {
    fn from(e: TierError) -> Self {
        CacheError::Tier(e)
    }
}

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

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) op_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) xfetch_beta: f64,
    pub(crate) ttl_jitter: f64,
    pub(crate) max_value_bytes: usize,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) local_max_ttl: Option<Duration>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) codec: crate::codec::ValueCodec,
    pub(crate) tag_recheck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            op_timeout: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(5),
            xfetch_beta: 1.0,
            ttl_jitter: 0.1,
            max_value_bytes: 1 << 20,
            fail_safe: None,
            local_max_ttl: None,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            codec: crate::codec::ValueCodec::Postcard,
            tag_recheck: crate::tags::DEFAULT_RECHECK,
        }
    }
}

/// How the shared tier will be opened by `build()`.
pub(crate) enum SharedSpec {
    None,
    Url(String),
    Tier(Arc<dyn SharedTier>),
}

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
        let opts = self.opts;
        let shared_name = shared.as_ref().map_or("none", |t| t.name());
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| Inner {
            local: self.local.map(|(n, by_bytes)| LocalTier::new(n, by_bytes)),
            process: RwLock::new(Arc::new(ProcessState {
                generation: larder_fork::generation(),
                shared: shared.clone(),
                flights: Arc::new(Flights::default()),
            })),
            spec: shared_spec,
            me: me.clone(),
            breaker: Breaker::new(opts.breaker_threshold, opts.breaker_cooldown),
            mac: MacKey::from_secret(&secret),
            counters: Counters::new(shared_name),
            tags: TagTable::new(opts.tag_recheck, shared.is_none()),
            opts: opts.clone(),
        });
        let mut local_cap = opts.local_max_ttl;
        if let Some(tier) = &shared {
            if !subscribe(&inner.me, tier.as_ref()) && local_cap.is_none() {
                local_cap = Some(NO_BACKPLANE_LOCAL_TTL);
            }
        }
        Ok(Cache { inner, local_cap })
    }
}

/// Opens a shared tier from its URL on this process's runtime.
fn open_url(url: &str, opts: &Options) -> Result<Arc<dyn SharedTier>, CacheError> {
    let rt = runtime()?;
    let topts = TierOptions {
        op_timeout: opts.op_timeout,
        poll_interval: opts.poll_interval,
        runtime: rt.handle().clone(),
    };
    // Tiers that spawn background tasks when opened find the cache's runtime.
    let _entered = rt.enter();
    crate::config::open_shared(url, &topts)
}

/// Registers the backplane handler that drops other processes' invalidations from the local
/// tier. Returns whether the tier has a backplane.
fn subscribe(me: &Weak<Inner>, tier: &dyn SharedTier) -> bool {
    let weak = me.clone();
    tier.subscribe_invalidations(Arc::new(move |key_text: &str| {
        if let Some(inner) = weak.upgrade() {
            if inner.on_tag_message(key_text) {
                bump(&inner.counters.invalidations_received);
                return;
            }
            if let Some(local) = &inner.local {
                if local.remove_by_text(key_text) {
                    bump(&inner.counters.invalidations_received);
                }
            }
        }
    }))
}

/// The local tier's cap on an entry's life when the shared tier cannot broadcast
/// invalidations (SQLite): another process's `invalidate` is seen within this time.
pub const NO_BACKPLANE_LOCAL_TTL: Duration = Duration::from_secs(30);

/// The process-wide runtime that drives tier calls made from blocking code and tiers'
/// background work (one worker thread, started on first use).
///
/// One per process: in a child made by `fork()` the parent's runtime has no threads (only the
/// forking thread is copied), so the child starts its own on first use. The inherited one is
/// leaked, never shut down: its shutdown would wait for threads that do not exist.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, CacheError> {
    type Slot = Option<(u64, &'static tokio::runtime::Runtime)>;
    // Each thread remembers the runtime it last got, so the common path takes no lock (a
    // lock taken on every blocking call would also be one more lock a fork could catch held).
    thread_local! {
        static SEEN: std::cell::Cell<Slot> = const { std::cell::Cell::new(None) };
    }
    let generation = larder_fork::generation();
    if let Some((g, rt)) = SEEN.with(std::cell::Cell::get) {
        if g == generation {
            return Ok(rt);
        }
    }
    let rt = process_runtime(generation)?;
    SEEN.with(|s| s.set(Some((generation, rt))));
    Ok(rt)
}

#[cold]
fn process_runtime(generation: u64) -> Result<&'static tokio::runtime::Runtime, CacheError> {
    static RT: parking_lot::Mutex<Option<(u64, &'static tokio::runtime::Runtime)>> =
        parking_lot::Mutex::new(None);
    let mut slot = RT.lock();
    if let Some((g, rt)) = *slot {
        if g == generation {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(16)
        .thread_name("larder-cache")
        .on_thread_start(|| BLOCKING_OK.with(|b| b.set(true)))
        .enable_all()
        .build()
        .map_err(|e| CacheError::Runtime(e.to_string()))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    *slot = Some((generation, rt));
    Ok(rt)
}

/// What belongs to one process and must be rebuilt in a child after `fork()`: the shared tier
/// (its connections, background tasks and SQLite handles are the parent's) and the
/// in-process flights (a flight in progress at the fork is led by a thread the child does not
/// have). The local tier is kept: its values are as good in the child as in the parent.
struct ProcessState {
    generation: u64,
    shared: Option<Arc<dyn SharedTier>>,
    flights: Arc<Flights>,
}

pub(crate) struct Inner {
    local: Option<LocalTier>,
    /// This process's tier and flights; see [`Inner::process`].
    process: RwLock<Arc<ProcessState>>,
    /// How the shared tier was configured, to open it again in a forked child.
    spec: SharedSpec,
    me: Weak<Inner>,
    breaker: Breaker,
    pub(crate) mac: MacKey,
    pub(crate) counters: Counters,
    /// This process's view of tag tokens (`crate::tags`).
    pub(crate) tags: TagTable,
    opts: Options,
}

/// A memo cache: an optional in-process tier in front of an optional shared tier.
///
/// Cheap to clone (an `Arc` inside); clones share everything.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    local_cap: Option<Duration>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("local", &self.inner.local.is_some())
            .field("shared", &self.inner.shared().map(|t| t.name()))
            .finish()
    }
}

/// The bounds on cached values: serializable, cloneable, shareable.
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// The result of [`Cache::lookup`]: a fresh local hit, or what is needed to finish the call.
pub enum Lookup<V> {
    /// Found in the local tier.
    Hit(V),
    /// Not found locally: finish with [`Pending::compute`] or [`Pending::compute_blocking`].
    Miss(Pending),
}

/// A call that missed the local tier: the key, already encoded, and the cache.
pub struct Pending {
    cache: Cache,
    space: KeySpace,
    /// `None` when the arguments could not be encoded (NaN, too large): compute, store nothing.
    key: Option<LocalKey>,
    ttl: Duration,
    /// A still-fresh local value whose early refresh this caller claimed.
    fallback: Option<Box<dyn Any + Send + Sync>>,
    /// The TTL chosen from the value ([`Pending::ttl_by`]); `None`: `ttl` for every value.
    ttl_of: Option<TtlOf>,
    /// The tags the value is stored under ([`Pending::tags`]).
    tags: Option<Arc<TagSet>>,
}

/// A result-driven TTL, type-erased (it downcasts to the value type it was made for).
type TtlOf = Box<dyn Fn(&dyn Any) -> Option<Duration> + Send + Sync>;

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("space", &self.space).field("ttl", &self.ttl).finish()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A uniform random number in (0, 1] (XFetch samples, TTL jitter), from larder-fork's
/// per-thread generator: no system call per sample, and never the parent's stream in a child.
fn rand_unit() -> f64 {
    larder_fork::unit_f64()
}

/// A lease token. Tokens must differ between every two workers, forked siblings included,
/// which larder-fork's generator guarantees (it reseeds from the OS in a child).
fn random_token() -> [u8; 16] {
    let mut t = [0u8; 16];
    if larder_fork::fill(&mut t).is_err() {
        // Tokens only need to differ between workers; fall back to time, pid and counter.
        let n = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        t.copy_from_slice(&(n ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    t
}

/// XFetch (Vattani et al., VLDB 2015): recompute early when `now − δ·β·ln(rand) ≥ expiry`.
pub(crate) fn xfetch_due(now_ms: u64, expires_ms: u64, delta_ms: u32, beta: f64) -> bool {
    if beta <= 0.0 || delta_ms == 0 {
        return now_ms >= expires_ms;
    }
    let gap = -(f64::from(delta_ms)) * beta * rand_unit().ln(); // ≥ 0
    (now_ms as f64) + gap >= expires_ms as f64
}

/// A frame read from the shared tier: value, metadata, payload size, tags.
type Got<V> = (V, FrameMeta, u32, Option<Arc<Stamp>>);

enum Fetched<V> {
    /// A fresh value: done.
    Value(V),
    /// Compute; `lease` says whether we hold the shared lease; `stale` is a value to serve if
    /// the computation fails.
    Compute { key_text: Option<String>, lease: Option<[u8; 16]>, stale: Option<V> },
}

impl Cache {
    /// A builder with every default (no tiers).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Builds a cache from a configuration string, e.g. `local:10000,sqlite:/var/tmp/larder.db`
    /// (see [`crate::config`] for the grammar).
    pub fn from_url(spec: &str) -> Result<Cache, CacheError> {
        crate::config::parse(spec)?.build()
    }

    /// Builds a cache from `LARDER_CACHE`, or a local-only cache of 10,000 entries when it
    /// is unset or empty.
    pub fn from_env() -> Result<Cache, CacheError> {
        match std::env::var("LARDER_CACHE") {
            Ok(s) if !s.trim().is_empty() => Cache::from_url(&s),
            _ => Cache::builder().local(crate::config::DEFAULT_LOCAL_ENTRIES).build(),
        }
    }

    /// Counters since the cache was built.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Is the circuit breaker in front of the shared tier open (tier being skipped)?
    pub fn breaker_open(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// The shared tier's name (`sqlite`, `redis`, …), if there is one.
    pub fn shared_tier_name(&self) -> Option<&'static str> {
        self.inner.shared().map(|t| t.name())
    }

    /// Entries in the local tier of this process (0 without one).
    pub fn local_len(&self) -> usize {
        self.inner.local.as_ref().map_or(0, LocalTier::len)
    }

    /// Empties the local tier of this process.
    pub fn clear_local(&self) {
        if let Some(l) = &self.inner.local {
            l.clear();
        }
    }

    /// Looks `args` up in the local tier only. A hit costs an encoding, an in-process hash and
    /// a clone of the value — never a digest. On a miss, finish the call with the returned
    /// [`Pending`].
    #[inline]
    pub fn lookup<A, V>(&self, space: &KeySpace, args: &A, ttl: Duration) -> Lookup<V>
    where
        A: StableKey + ?Sized,
        V: Clone + Send + Sync + 'static,
    {
        let local = self.inner.local.as_ref();
        let tags = &self.inner.tags;
        let prefix = space.prefix();
        let r = larder_key::with_encoding(args, space.max_encoded_len(), |enc| {
            let hash = local_clock::hash_parts(prefix, enc);
            let found = local.map(|l| {
                l.with_entry(hash, prefix, enc, |entry| {
                    let entry = entry?;
                    let now = local_clock::now();
                    let v = entry.fresh::<V>(now)?;
                    if !tags.admits(entry.tags.as_deref(), now) {
                        return None;
                    }
                    Some((v, entry.claim_refresh(now)))
                })
            });
            match found.flatten() {
                Some((v, false)) => Ok(v),
                Some((v, true)) => Err((LocalKey::with_hash(hash, prefix, enc), Some(v))),
                None => Err((LocalKey::with_hash(hash, prefix, enc), None)),
            }
        });
        match r {
            Ok(Ok(v)) => {
                self.inner.counters.local_hits.incr();
                self.inner.counters.m.local_hit.increment(1);
                Lookup::Hit(v)
            }
            Ok(Err((key, fallback))) => {
                if local.is_some() {
                    bump(&self.inner.counters.local_misses);
                    self.inner.counters.m.local_miss.increment(1);
                }
                if fallback.is_some() {
                    bump(&self.inner.counters.early_refreshes);
                    self.inner.counters.m.early_refresh.increment(1);
                }
                Lookup::Miss(Pending {
                    cache: self.clone(),
                    space: space.clone(),
                    key: Some(key),
                    ttl,
                    fallback: fallback.map(|v| Box::new(v) as Box<dyn Any + Send + Sync>),
                    ttl_of: None,
                    tags: None,
                })
            }
            Err(e) => {
                tracing::debug!(namespace = space.namespace(), error = %e, "cache key refused; computing without the cache");
                Lookup::Miss(Pending {
                    cache: self.clone(),
                    space: space.clone(),
                    key: None,
                    ttl,
                    fallback: None,
                    ttl_of: None,
                    tags: None,
                })
            }
        }
    }

    /// Returns the cached value for `args` in `space`, or runs `f` once (across this
    /// process's concurrent callers, and across processes when the shared tier has leases),
    /// stores its result for `ttl`, and returns it.
    ///
    /// Never fails because of the cache: if the shared tier is down, slow or holds a corrupt
    /// entry, the value is computed. The arguments are encoded before this returns, so the
    /// future does not borrow them.
    pub fn get_or_compute<A, V, F, Fut>(
        &self,
        space: &KeySpace,
        args: &A,
        ttl: Duration,
        f: F,
    ) -> impl Future<Output = V> + use<A, V, F, Fut>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let looked = self.lookup::<A, V>(space, args, ttl);
        async move {
            match looked {
                Lookup::Hit(v) => v,
                Lookup::Miss(p) => p.compute(f).await,
            }
        }
    }

    /// Like [`get_or_compute`](Self::get_or_compute) for a fallible function: only `Ok` is
    /// cached; concurrent callers in this process share the leader's `Err` (hence `E: Clone`;
    /// wrap non-`Clone` errors in an `Arc`).
    pub fn try_get_or_compute<A, V, E, F, Fut>(
        &self,
        space: &KeySpace,
        args: &A,
        ttl: Duration,
        f: F,
    ) -> impl Future<Output = Result<V, E>> + use<A, V, E, F, Fut>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let looked = self.lookup::<A, V>(space, args, ttl);
        async move {
            match looked {
                Lookup::Hit(v) => Ok(v),
                Lookup::Miss(p) => p.try_compute(f).await,
            }
        }
    }

    /// The blocking twin of [`get_or_compute`](Self::get_or_compute), for sync code. `f` runs
    /// on the calling thread.
    pub fn get_or_compute_blocking<A, V, F>(&self, space: &KeySpace, args: &A, ttl: Duration, f: F) -> V
    where
        A: StableKey + ?Sized,
        V: CacheValue,
        F: FnOnce() -> V,
    {
        match self.lookup::<A, V>(space, args, ttl) {
            Lookup::Hit(v) => v,
            Lookup::Miss(p) => p.compute_blocking(f),
        }
    }

    /// The blocking twin of [`try_get_or_compute`](Self::try_get_or_compute).
    pub fn try_get_or_compute_blocking<A, V, E, F>(
        &self,
        space: &KeySpace,
        args: &A,
        ttl: Duration,
        f: F,
    ) -> Result<V, E>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<V, E>,
    {
        match self.lookup::<A, V>(space, args, ttl) {
            Lookup::Hit(v) => Ok(v),
            Lookup::Miss(p) => p.try_compute_blocking(f),
        }
    }

    fn owned_key<A: StableKey + ?Sized>(space: &KeySpace, args: &A) -> Option<(LocalKey, String)> {
        let enc = space.encode(args).ok()?;
        let text = space.key_from_encoding(&enc).as_str().to_owned();
        Some((LocalKey::new(space.prefix(), &enc), text))
    }

    /// The cached value, if a tier has a fresh one (no computation, no lease).
    pub fn get<A, V>(&self, space: &KeySpace, args: &A) -> impl Future<Output = Option<V>> + Send + use<A, V>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
    {
        let looked = self.lookup::<A, V>(space, args, Duration::ZERO);
        let owned = match &looked {
            Lookup::Hit(_) => None,
            Lookup::Miss(_) => Self::owned_key(space, args),
        };
        let this = self.clone();
        async move {
            let (key, text) = match looked {
                Lookup::Hit(v) => return Some(v),
                Lookup::Miss(_) => owned?,
            };
            let (v, meta, size, stamp) = this.inner.shared_get::<V>(&text).await?;
            if unix_ms() >= meta.expires_ms() {
                return None;
            }
            this.inner.insert_local(key, Some(&text), &v, &meta, size, this.local_cap, stamp);
            Some(v)
        }
    }

    /// Blocking twin of [`get`](Self::get).
    pub fn get_blocking<A, V>(&self, space: &KeySpace, args: &A) -> Option<V>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
    {
        block_on(self.get(space, args))
    }

    /// Stores `value` for `args` in every tier and tells other processes to drop their local
    /// copies.
    pub fn set<A, V>(
        &self,
        space: &KeySpace,
        args: &A,
        value: V,
        ttl: Duration,
    ) -> impl Future<Output = ()> + Send + use<A, V>
    where
        A: StableKey + ?Sized,
        V: CacheValue,
    {
        let owned = Self::owned_key(space, args);
        let this = self.clone();
        async move {
            let Some((key, text)) = owned else { return };
            this.inner.store(&key, Some(&text), &value, ttl, 0, this.local_cap, None).await;
            this.inner.publish(&text).await;
        }
    }

    /// Blocking twin of [`set`](Self::set).
    pub fn set_blocking<A, V>(&self, space: &KeySpace, args: &A, value: V, ttl: Duration)
    where
        A: StableKey + ?Sized,
        V: CacheValue,
    {
        block_on(self.set(space, args, value, ttl))
    }

    /// Removes the entry for `args` from the local tier, the shared tier, and (through the
    /// backplane) every other process's local tier.
    pub fn invalidate<A>(&self, space: &KeySpace, args: &A) -> impl Future<Output = ()> + Send + use<A>
    where
        A: StableKey + ?Sized,
    {
        let owned = Self::owned_key(space, args);
        let this = self.clone();
        async move {
            let Some((key, text)) = owned else { return };
            if let Some(l) = &this.inner.local {
                l.remove(&key);
            }
            if let Some(tier) = this.inner.shared() {
                let _ = this.inner.tier_call(tier.delete(&text)).await;
            }
            this.inner.publish(&text).await;
        }
    }

    /// Retires every entry stored under `tag` (see [`Pending::tags`]), in every tier and
    /// every process, by writing a new generation for the tag to the shared tier (one write,
    /// however many entries carry it) and announcing it on the backplane.
    ///
    /// When this returns `Ok`, no process serves an entry stored before it under `tag` from
    /// the shared tier, this process's local tier stops serving them at once, and other
    /// processes' local tiers within [`CacheBuilder::tag_recheck`] (sooner when the backplane
    /// delivers the announcement). A computation that read the tag before this call and
    /// stores its value after it is refused too. Errors: an invalid tag
    /// ([`CacheError::Config`]), or the shared tier did not take the write
    /// ([`CacheError::Tier`]: nothing was invalidated).
    pub fn invalidate_tag(&self, tag: &str) -> impl Future<Output = Result<(), CacheError>> + Send + use<> {
        let this = self.clone();
        let tag = tag.to_owned();
        async move { this.inner.invalidate_tag(&tag).await }
    }

    /// Blocking twin of [`invalidate_tag`](Self::invalidate_tag).
    pub fn invalidate_tag_blocking(&self, tag: &str) -> Result<(), CacheError> {
        if self.inner.shared().is_none() {
            return self.inner.invalidate_tag_local(tag);
        }
        block_on(self.invalidate_tag(tag))
    }

    /// Blocking twin of [`invalidate`](Self::invalidate).
    pub fn invalidate_blocking<A>(&self, space: &KeySpace, args: &A)
    where
        A: StableKey + ?Sized,
    {
        block_on(self.invalidate(space, args))
    }

    /// A [`Pending`] call for `args` that skips the local lookup: finish it with
    /// [`Pending::refresh`] (compute now and overwrite the entry everywhere) or, like a miss,
    /// with [`Pending::compute`]. The arguments are encoded here, so the function given to
    /// the `Pending` may take them by value.
    pub fn pending<A>(&self, space: &KeySpace, args: &A, ttl: Duration) -> Pending
    where
        A: StableKey + ?Sized,
    {
        let key = match larder_key::with_encoding(args, space.max_encoded_len(), |enc| {
            LocalKey::new(space.prefix(), enc)
        }) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::debug!(namespace = space.namespace(), error = %e, "cache key refused; computing without the cache");
                None
            }
        };
        Pending {
            cache: self.clone(),
            space: space.clone(),
            key,
            ttl,
            fallback: None,
            ttl_of: None,
            tags: None,
        }
    }
}

thread_local! {
    /// Set on threads where blocking is fine although a Tokio runtime is current: larder's own
    /// runtime threads, and Tokio blocking-pool threads that ran [`spawn_blocking`] (a pool
    /// thread never becomes a worker, so the mark stays true).
    static BLOCKING_OK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static BLOCKING_ON_RUNTIME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Blocking cache calls (a sync `#[memoize]` function waiting for another caller, or for the
/// shared tier) made on a thread that runs a Tokio runtime, since the process started. Each
/// blocks a runtime thread — and every task queued on it — for up to `lease_wait`.
pub fn blocking_calls_on_runtime() -> u64 {
    BLOCKING_ON_RUNTIME.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `f` on Tokio's blocking pool, marked as a thread where larder's blocking calls are
/// expected: the way to call a sync `#[memoize]` function from async code (or make the
/// function `async`). Needs a current Tokio runtime.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        BLOCKING_OK.with(|b| b.set(true));
        f()
    })
}

/// Counts, and warns about once per process, a blocking call made where a Tokio runtime is
/// current (an async handler calling a sync memoized function).
fn note_blocking_on_runtime() {
    if tokio::runtime::Handle::try_current().is_err() || BLOCKING_OK.with(std::cell::Cell::get) {
        return;
    }
    if BLOCKING_ON_RUNTIME.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        tracing::warn!(
            thread = std::thread::current().name().unwrap_or("unnamed"),
            "a sync #[memoize] function (or a blocking larder-cache call) is waiting on a thread that runs \
             a Tokio runtime: every task of that thread waits too, up to lease_wait. Make the function \
             `async`, or call it through `larder_cache::spawn_blocking(move || f(args)).await` \
             (this warning is given once; larder_cache::blocking_calls_on_runtime() counts them)"
        );
    }
}

/// Runs a future to completion from sync code: on the cache's runtime when this thread is
/// not inside one, else on a scoped helper thread (a sync call made from async code).
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    note_blocking_on_runtime();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(_) => {
            // Without any runtime, fall back to a throwaway current-thread one.
            return match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(fut),
                Err(e) => panic!("larder-cache: cannot start any tokio runtime: {e}"),
            };
        }
    };
    if tokio::runtime::Handle::try_current().is_err() {
        rt.block_on(fut)
    } else {
        std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        })
    }
}

impl Inner {
    /// This process's state: after a `fork()`, the first call in the child opens the shared
    /// tier again (new connections, new runtime) and starts with no flights; the inherited
    /// state is never used, nor dropped, there.
    fn process(&self) -> Arc<ProcessState> {
        let generation = larder_fork::generation();
        {
            let p = self.process.read();
            if p.generation == generation {
                return p.clone();
            }
        }
        self.after_fork(generation)
    }

    #[cold]
    fn after_fork(&self, generation: u64) -> Arc<ProcessState> {
        let mut slot = self.process.write();
        if slot.generation == generation {
            return slot.clone();
        }
        let reopened = match &self.spec {
            SharedSpec::None => Ok(None),
            SharedSpec::Url(url) => open_url(url, &self.opts).map(Some),
            SharedSpec::Tier(t) => t.reopen_after_fork().map(Some).map_err(CacheError::Tier),
        };
        let shared = reopened.unwrap_or_else(|e| {
            // Fail open: the child answers by computing, as during any tier outage.
            tracing::error!(error = %e, "cannot open the shared cache tier in a forked child; computing without it");
            None
        });
        if let Some(tier) = &shared {
            subscribe(&self.me, tier.as_ref());
        }
        let fresh = Arc::new(ProcessState { generation, shared, flights: Arc::new(Flights::default()) });
        // The parent's tier and flights: never touched or dropped in this process.
        std::mem::forget(std::mem::replace(&mut *slot, fresh.clone()));
        fresh
    }

    /// This process's shared tier, if there is one.
    pub(crate) fn shared(&self) -> Option<Arc<dyn SharedTier>> {
        self.process().shared.clone()
    }

    /// This process's in-process flights.
    fn flights(&self) -> Arc<Flights> {
        self.process().flights.clone()
    }

    pub(crate) async fn tier_call<T>(
        &self,
        fut: impl Future<Output = Result<T, TierError>>,
    ) -> Result<T, TierError> {
        if self.breaker.permit() == Permit::Denied {
            bump(&self.counters.breaker_skips);
            return Err(TierError::Unavailable("circuit breaker open".into()));
        }
        let r = match tokio::time::timeout(self.opts.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(TierError::Timeout),
        };
        self.tier_result(&r);
        r
    }

    fn tier_result<T>(&self, r: &Result<T, TierError>) {
        match r {
            Ok(_) => {
                if self.breaker.success() {
                    tracing::info!("cache tier answering again; circuit breaker closed");
                    self.counters.m.breaker_open.set(0.0);
                }
            }
            Err(e) => {
                bump(&self.counters.store_errors);
                self.counters.m.store_errors.increment(1);
                if self.breaker.failure() {
                    tracing::warn!(error = %e, "cache tier failing; circuit breaker open");
                    self.counters.m.breaker_open.set(1.0);
                }
            }
        }
    }

    /// Reads, verifies and decodes an entry (fresh or not) from the shared tier.
    async fn shared_get<V: CacheValue>(&self, text: &str) -> Option<Got<V>> {
        let tier = self.shared()?;
        let bytes = self.tier_call(tier.get(text)).await.ok()??;
        self.accept(text, &bytes, false).await
    }

    /// Verifies and decodes a frame read from the shared tier; a tagged one only while its
    /// tags are current. `quiet`: a refusal is not counted (already counted by the caller).
    async fn accept<V: CacheValue>(&self, text: &str, bytes: &[u8], quiet: bool) -> Option<Got<V>> {
        let got = self.decode::<V>(text, bytes, quiet)?;
        match &got.3 {
            Some(stamp) if !self.tags_current(stamp).await => None,
            _ => Some(got),
        }
    }

    fn decode<V: CacheValue>(&self, text: &str, bytes: &[u8], quiet: bool) -> Option<Got<V>> {
        let r = frame::open(&self.mac, text, bytes).map_err(|e| e.to_string()).and_then(|fr| {
            crate::codec::decode::<V>(fr.flags, fr.payload).map(|v| {
                let size = u32::try_from(fr.payload.len()).unwrap_or(u32::MAX);
                (v, fr.meta, size, Stamp::from_frame(fr.tags))
            })
        });
        match r {
            Ok(got) => Some(got),
            Err(e) => {
                if !quiet {
                    self.corrupt(text, &e);
                }
                None
            }
        }
    }

    pub(crate) fn corrupt(&self, text: &str, why: &str) {
        bump(&self.counters.corrupt_entries);
        self.counters.m.corrupt.increment(1);
        tracing::warn!(key = text, reason = why, "refused a cache entry; treating it as a miss");
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_local<V: CacheValue>(
        &self,
        key: LocalKey,
        text: Option<&str>,
        v: &V,
        meta: &FrameMeta,
        size: u32,
        cap: Option<Duration>,
        tags: Option<Arc<Stamp>>,
    ) {
        let Some(local) = &self.local else { return };
        let now_ms = unix_ms();
        let remaining = Duration::from_millis(meta.expires_ms().saturating_sub(now_ms));
        let life = cap.map_or(remaining, |c| remaining.min(c));
        if life.is_zero() {
            return;
        }
        let now = local_clock::now();
        let expires = now + local_clock::dur(life);
        // XFetch sampled once per entry in this process: the first caller past `refresh_at`
        // recomputes while the others keep being served. Only for the entry's real expiry: a
        // local cap is not a reason to recompute.
        let refresh_at = if self.opts.xfetch_beta > 0.0 && meta.delta_ms > 0 && life == remaining {
            let gap = -(f64::from(meta.delta_ms)) * self.opts.xfetch_beta * rand_unit().ln();
            let gap = Duration::from_secs_f64((gap / 1000.0).clamp(0.0, life.as_secs_f64()));
            now + local_clock::dur(life.saturating_sub(gap))
        } else {
            expires
        };
        local.insert(
            key,
            text,
            LocalEntry {
                value: Box::new(v.clone()),
                expires,
                refresh_at,
                refreshing: AtomicBool::new(false),
                weight: size,
                tags,
            },
        );
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        if self.opts.ttl_jitter <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.opts.ttl_jitter * (1.0 - rand_unit()))
    }

    /// Serializes a value and its frame metadata; `None` (counted) when it is too large.
    fn prepare<V: CacheValue>(&self, v: &V, ttl: Duration, delta_ms: u32) -> Option<(Vec<u8>, FrameMeta)> {
        let ttl = self.jittered(ttl);
        let meta = FrameMeta { written_ms: unix_ms(), ttl_ms: ms(ttl), delta_ms };
        let payload = match self.opts.codec.encode(v) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cache value could not be serialized; not stored");
                return None;
            }
        };
        if payload.len() > self.opts.max_value_bytes {
            bump(&self.counters.oversize_values);
            self.counters.m.oversize.increment(1);
            return None;
        }
        Some((payload, meta))
    }

    /// Frames and writes a prepared value to the shared tier (failures counted, not raised).
    async fn store_shared(&self, text: &str, payload: &[u8], meta: FrameMeta, tags: Option<&Stamp>) {
        let Some(tier) = self.shared() else { return };
        let flags = self.opts.codec.flags();
        let framed = match tags {
            None => frame::seal_with_flags(&self.mac, text, meta, flags, payload),
            Some(t) => frame::seal_tagged(&self.mac, text, meta, flags, &t.pairs(), payload),
        };
        let Ok(framed) = framed else {
            return;
        };
        let keep = Duration::from_millis(meta.ttl_ms) + self.opts.fail_safe.unwrap_or(Duration::ZERO);
        if self.tier_call(tier.set(text, &framed, keep)).await.is_ok() {
            bump(&self.counters.shared_writes);
        }
    }

    /// Stores a value in both tiers (under `tags`, when given).
    #[allow(clippy::too_many_arguments)]
    async fn store<V: CacheValue>(
        &self,
        key: &LocalKey,
        text: Option<&str>,
        v: &V,
        ttl: Duration,
        delta_ms: u32,
        cap: Option<Duration>,
        tags: Option<&Arc<Stamp>>,
    ) {
        let Some((payload, meta)) = self.prepare(v, ttl, delta_ms) else { return };
        self.insert_local(key.clone(), text, v, &meta, size_of_payload(&payload), cap, tags.cloned());
        if let Some(text) = text {
            self.store_shared(text, &payload, meta, tags.map(|t| &**t)).await;
        }
    }

    async fn publish(&self, text: &str) {
        if let Some(tier) = self.shared() {
            let _ = self.tier_call(tier.publish_invalidation(text)).await;
        }
    }

    /// Everything before the computation: the shared tier, XFetch and the lease.
    async fn fetch<V: CacheValue>(
        &self,
        space: &KeySpace,
        key: &LocalKey,
        cap: Option<Duration>,
    ) -> Fetched<V> {
        let Some(tier) = self.shared() else {
            return Fetched::Compute { key_text: None, lease: None, stale: None };
        };
        let text = space.key_from_encoding(key.encoding()).as_str().to_owned();
        let mut fresh_but_due: Option<V> = None;
        let mut stale: Option<V> = None;
        match self.shared_get::<V>(&text).await {
            Some((v, meta, size, stamp)) => {
                let now = unix_ms();
                let expires = meta.expires_ms();
                if now < expires {
                    if !xfetch_due(now, expires, meta.delta_ms, self.opts.xfetch_beta) {
                        bump(&self.counters.shared_hits);
                        self.counters.m.shared_hit.increment(1);
                        self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                        return Fetched::Value(v);
                    }
                    bump(&self.counters.early_refreshes);
                    self.counters.m.early_refresh.increment(1);
                    fresh_but_due = Some(v);
                } else {
                    bump(&self.counters.shared_misses);
                    self.counters.m.shared_miss.increment(1);
                    if let Some(w) = self.opts.fail_safe {
                        if now < expires.saturating_add(ms(w)) {
                            stale = Some(v);
                        }
                    }
                }
            }
            None => {
                bump(&self.counters.shared_misses);
                self.counters.m.shared_miss.increment(1);
            }
        }
        let token = random_token();
        // Waiting for another worker's lease is bounded by `lease_wait` in total. When a
        // holder dies or gives up, its lease disappears without a value: the waiters then try
        // to take the lease themselves (one wins and computes, the others wait for it) rather
        // than all computing at once.
        let deadline = tokio::time::Instant::now() + self.opts.lease_wait;
        let mut waited_once = false;
        loop {
            match self.tier_call(tier.try_lease(&text, &token, self.opts.lease_ttl)).await {
                Ok(Lease::Acquired) => {
                    // Look again after winning the lease: another worker may have stored the
                    // value and released its lease between our miss above and our lease (its
                    // release is what let us win). Computing now would run the function twice
                    // for the fleet. (Read quietly: an entry refused above was already
                    // counted as corrupt.)
                    if fresh_but_due.is_none() {
                        if let Ok(Some(bytes)) = self.tier_call(tier.get(&text)).await {
                            if let Some((v, meta, size, stamp)) = self.accept::<V>(&text, &bytes, true).await
                            {
                                if unix_ms() < meta.expires_ms() {
                                    self.release(Some(&text), Some(token)).await;
                                    bump(&self.counters.shared_hits);
                                    self.counters.m.shared_hit.increment(1);
                                    self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                                    return Fetched::Value(v);
                                }
                            }
                        }
                    }
                    return Fetched::Compute {
                        key_text: Some(text),
                        lease: Some(token),
                        stale: fresh_but_due.or(stale),
                    };
                }
                Ok(Lease::HeldByOther) => {
                    if let Some(v) = fresh_but_due {
                        // Someone else is already refreshing; the current value is still good.
                        return Fetched::Value(v);
                    }
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    if !waited_once {
                        bump(&self.counters.lease_waits);
                        self.counters.m.lease_waits.increment(1);
                        waited_once = true;
                    }
                    let wait = deadline - now;
                    let waited =
                        tokio::time::timeout(wait + self.opts.op_timeout, tier.wait_for_value(&text, wait))
                            .instrument(tracing::debug_span!("larder_cache.lease_wait", key = %text))
                            .await;
                    let got = match waited {
                        Ok(Ok(Some(bytes))) => self.accept::<V>(&text, &bytes, false).await,
                        Ok(Ok(None)) => None,
                        Ok(Err(e)) => {
                            self.tier_result::<()>(&Err(e));
                            break;
                        }
                        Err(_) => break,
                    };
                    if let Some((v, meta, size, stamp)) = got {
                        if unix_ms() < meta.expires_ms() {
                            bump(&self.counters.shared_hits);
                            self.counters.m.shared_hit.increment(1);
                            self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                            return Fetched::Value(v);
                        }
                    }
                    // No value: the lease expired or was released empty. Try to take it (after a
                    // poll interval, so a tier that answers "no value" at once cannot spin us).
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(self.opts.poll_interval.min(left)).await;
                }
                Err(_) => {
                    return Fetched::Compute {
                        key_text: Some(text),
                        lease: None,
                        stale: fresh_but_due.or(stale),
                    }
                }
            }
        }
        bump(&self.counters.lease_timeouts);
        self.counters.m.lease_timeouts.increment(1);
        Fetched::Compute { key_text: Some(text), lease: None, stale }
    }

    async fn release(&self, text: Option<&str>, lease: Option<[u8; 16]>) {
        if let (Some(tier), Some(text), Some(token)) = (self.shared(), text, lease) {
            let _ = self.tier_call(tier.release_lease(text, &token)).await;
        }
    }

    fn count_computation(&self, took: Duration) {
        bump(&self.counters.computations);
        self.counters.m.computations.increment(1);
        self.counters.m.compute_seconds.record(took.as_secs_f64());
    }
}

/// How a caller that waited for a failed leader gets its own error from the leader's; `None`:
/// it cannot, and computes itself. See [`Pending::try_compute_with`].
pub type Share<E> = fn(&E) -> Option<E>;

/// The error a waiting caller gets when the computation it waited for failed and the error
/// type cannot be cloned: convert it into yours with `From<LeaderFailed>` (`#[memoize]` does
/// this by itself for error types that implement it and not `Clone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderFailed {
    error_type: &'static str,
}

impl LeaderFailed {
    /// The failure of a computation that returned an error of type `E`.
    pub fn of<E>() -> Self {
        LeaderFailed { error_type: std::any::type_name::<E>() }
    }

    /// The type name of the leader's error.
    pub fn error_type(&self) -> &'static str {
        self.error_type
    }
}

impl fmt::Display for LeaderFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the computation this call waited for (in the same process) failed with a `{}`",
            self.error_type
        )
    }
}

impl std::error::Error for LeaderFailed {}

/// What a waiter does next.
enum Next<V, E> {
    /// The leader's outcome.
    Return(Result<V, E>),
    /// The leader gave up: join again (perhaps as the new leader).
    Retry,
    /// The leader produced another type under the same key: compute without the flight.
    Alone,
}

impl Pending {
    /// Finishes a missed call with an infallible async function.
    pub async fn compute<V, F, Fut>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        match self.try_compute(|| async move { Ok::<V, Infallible>(f().await) }).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Finishes a missed call with an infallible blocking function.
    pub fn compute_blocking<V, F>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> V,
    {
        match self.try_compute_blocking(|| Ok::<V, Infallible>(f())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Chooses each value's TTL from the value itself (for example a short one for an empty
    /// result): `ttl(&value)` replaces the TTL this call was given. Jitter still applies.
    pub fn ttl_by<V: CacheValue>(mut self, ttl: impl Fn(&V) -> Duration + Send + Sync + 'static) -> Self {
        self.ttl_of = Some(Box::new(move |v: &dyn Any| v.downcast_ref::<V>().map(&ttl)));
        self
    }

    /// Stores the value under these tags: [`Cache::invalidate_tag`] with any of them retires
    /// it in every tier and process (`docs/cache.md`, "Tags"). Tags are strings of 1 to 256
    /// bytes, at most 32 per entry; invalid ones make the call compute without storing (and
    /// log a warning). The tags' tokens are read before the value is computed, so an
    /// invalidation during the computation retires the value it produces.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = Some(Arc::new(TagSet::new(tags)));
        self
    }

    /// The TTL for `v`.
    fn ttl_for<V: CacheValue>(&self, v: &V) -> Duration {
        self.ttl_of.as_ref().and_then(|f| f(v as &dyn Any)).unwrap_or(self.ttl)
    }

    /// Runs `f` now, whatever is cached, and stores its value in every tier (replacing the
    /// entry; other processes drop their local copies through the backplane). No lease is
    /// taken: a computation of the same key already running elsewhere may store its value
    /// after this one.
    pub async fn refresh<V, F, Fut>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        match self.try_refresh(|| async move { Ok::<V, Infallible>(f().await) }).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`refresh`](Self::refresh) for a fallible function: an `Ok` replaces the entry,
    /// an `Err` is returned and leaves the entry as it was.
    pub async fn try_refresh<V, E, F, Fut>(mut self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let stamp = self.cache.inner.stamp_for(self.tags.as_deref()).await;
        let start = Instant::now();
        let r = f()
            .instrument(tracing::debug_span!("larder_cache.compute", namespace = self.space.namespace()))
            .await;
        let took = start.elapsed();
        let inner = self.cache.inner.clone();
        inner.count_computation(took);
        if let (Ok(v), Some(key), Some(tags)) = (&r, self.key.take(), stamp.storable()) {
            let text = self.space.key_from_encoding(key.encoding()).as_str().to_owned();
            let delta = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
            inner.store(&key, Some(&text), v, self.ttl_for(v), delta, self.cache.local_cap, tags).await;
            inner.publish(&text).await;
        }
        r
    }

    /// Blocking twin of [`refresh`](Self::refresh): `f` runs on the calling thread.
    pub fn refresh_blocking<V, F>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> V,
    {
        match self.try_refresh_blocking(|| Ok::<V, Infallible>(f())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Blocking twin of [`try_refresh`](Self::try_refresh).
    pub fn try_refresh_blocking<V, E, F>(mut self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        F: FnOnce() -> Result<V, E>,
    {
        let stamp = self.stamp_blocking();
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        let inner = self.cache.inner.clone();
        inner.count_computation(took);
        if let (Ok(v), Some(key), Some(tags)) = (&r, self.key.take(), stamp.storable()) {
            let text = self.space.key_from_encoding(key.encoding()).as_str().to_owned();
            let delta = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
            let cap = self.cache.local_cap;
            if inner.shared().is_none() {
                if let Some((payload, meta)) = inner.prepare(v, self.ttl_for(v), delta) {
                    let size = size_of_payload(&payload);
                    inner.insert_local(key, Some(&text), v, &meta, size, cap, tags.cloned());
                }
            } else {
                block_on(async {
                    inner.store(&key, Some(&text), v, self.ttl_for(v), delta, cap, tags).await;
                    inner.publish(&text).await;
                });
            }
        }
        r
    }

    /// The tokens to store this call's value under, read now (before computing), from blocking
    /// code: no runtime is touched for an untagged call or a cache without a shared tier.
    fn stamp_blocking(&self) -> Stamped {
        let inner = &self.cache.inner;
        match &self.tags {
            None => Stamped::Untagged,
            Some(_) if inner.shared().is_none() => inner.stamp_local_for(self.tags.as_deref()),
            Some(t) => block_on(inner.stamp_for(Some(t))),
        }
    }

    fn take_fallback<V: CacheValue>(&mut self) -> Option<V> {
        self.fallback.take().and_then(|b| b.downcast::<V>().ok()).map(|b| *b)
    }

    fn waited<V: CacheValue, E: Send + Sync + 'static>(&self, w: Waited, share: Share<E>) -> Next<V, E> {
        match w {
            Waited::Done(Outcome::Value(a)) => match a.downcast_ref::<V>() {
                Some(v) => Next::Return(Ok(v.clone())),
                None => Next::Alone,
            },
            // The leader failed: this waiter gets the error as `share` makes it, or (when it
            // cannot) joins again and computes as the new leader.
            Waited::Done(Outcome::Error(a)) => match a.downcast_ref::<Option<E>>() {
                Some(Some(e)) => match share(e) {
                    Some(e) => Next::Return(Err(e)),
                    None => Next::Retry,
                },
                Some(None) => Next::Retry,
                None => Next::Alone,
            },
            Waited::Abandoned => Next::Retry,
        }
    }

    /// Finishes a missed call with a fallible async function (only `Ok` is stored).
    /// Concurrent callers in this process that waited for this one get a clone of its `Err`.
    pub async fn try_compute<V, E, F, Fut>(self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.try_compute_with(f, |e: &E| Some(e.clone())).await
    }

    /// [`try_compute`](Self::try_compute) for any error type: `share` makes the error a
    /// waiting caller gets from the leader's (`|e| Some(e.clone())`,
    /// `|_| Some(MyError::from(LeaderFailed::of::<MyError>()))`, …). When it returns `None`,
    /// the waiter computes itself instead (one at a time: it joins the flight again as its
    /// leader).
    pub async fn try_compute_with<V, E, F, Fut>(mut self, f: F, share: Share<E>) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let inner = self.cache.inner.clone();
        let Some(key) = self.key.take() else {
            let start = Instant::now();
            let r = f().await;
            inner.count_computation(start.elapsed());
            return r;
        };
        let fallback = self.take_fallback::<V>();
        let flights = inner.flights();
        let guard = loop {
            match flights.join(&key) {
                Joined::Leader(g) => break Some(g),
                Joined::Waiter(flight) => {
                    bump(&inner.counters.coalesced);
                    if let Some(v) = &fallback {
                        // This caller claimed an early refresh but someone is already computing.
                        return Ok(v.clone());
                    }
                    match self.waited::<V, E>(flight.wait().await, share) {
                        Next::Return(r) => return r,
                        Next::Retry => continue,
                        Next::Alone => break None,
                    }
                }
            }
        };
        let cap = self.cache.local_cap;
        let fetched = match &guard {
            Some(_) => inner.fetch::<V>(&self.space, &key, cap).await,
            None => Fetched::Compute { key_text: None, lease: None, stale: None },
        };
        let (text, lease, stale) = match fetched {
            Fetched::Value(v) => {
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                return Ok(v);
            }
            Fetched::Compute { key_text, lease, stale } => (key_text, lease, stale.or(fallback)),
        };
        let stamp = inner.stamp_for(self.tags.as_deref()).await;
        let start = Instant::now();
        let r = f()
            .instrument(tracing::debug_span!("larder_cache.compute", namespace = self.space.namespace()))
            .await;
        let took = start.elapsed();
        inner.count_computation(took);
        self.finish(guard, &key, text, lease, stale, r, took, share, stamp).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish<V, E>(
        &self,
        guard: Option<LeaderGuard<'_>>,
        key: &LocalKey,
        text: Option<String>,
        lease: Option<[u8; 16]>,
        stale: Option<V>,
        r: Result<V, E>,
        took: Duration,
        share: Share<E>,
        stamp: Stamped,
    ) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = &self.cache.inner;
        match r {
            Ok(v) => {
                let delta = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
                let tags = stamp.storable();
                let prepared = tags.and_then(|_| inner.prepare(&v, self.ttl_for(&v), delta));
                let tags = tags.flatten();
                if let Some((payload, meta)) = &prepared {
                    let size = size_of_payload(payload);
                    let cap = self.cache.local_cap;
                    inner.insert_local(key.clone(), text.as_deref(), &v, meta, size, cap, tags.cloned());
                }
                // Waiters in this process are released before the shared write.
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                if let (Some((payload, meta)), Some(text)) = (prepared, text.as_deref()) {
                    inner.store_shared(text, &payload, meta, tags.map(|t| &**t)).await;
                }
                inner.release(text.as_deref(), lease).await;
                Ok(v)
            }
            Err(e) => {
                inner.release(text.as_deref(), lease).await;
                if let Some(v) = stale {
                    bump(&inner.counters.fail_safe_served);
                    inner.counters.m.fail_safe.increment(1);
                    complete(guard, Outcome::Value(Arc::new(v.clone())));
                    return Ok(v);
                }
                complete(guard, Outcome::Error(Arc::new(share(&e))));
                Err(e)
            }
        }
    }

    /// Finishes a missed call with a fallible blocking function (only `Ok` is stored). The
    /// function runs on the calling thread; tier calls run on the cache's runtime.
    pub fn try_compute_blocking<V, E, F>(self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<V, E>,
    {
        self.try_compute_blocking_with(f, |e: &E| Some(e.clone()))
    }

    /// Blocking twin of [`try_compute_with`](Self::try_compute_with).
    pub fn try_compute_blocking_with<V, E, F>(mut self, f: F, share: Share<E>) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<V, E>,
    {
        let inner = self.cache.inner.clone();
        let Some(key) = self.key.take() else {
            let start = Instant::now();
            let r = f();
            inner.count_computation(start.elapsed());
            return r;
        };
        let fallback = self.take_fallback::<V>();
        let flights = inner.flights();
        let guard = loop {
            match flights.join(&key) {
                Joined::Leader(g) => break Some(g),
                Joined::Waiter(flight) => {
                    bump(&inner.counters.coalesced);
                    if let Some(v) = &fallback {
                        return Ok(v.clone());
                    }
                    note_blocking_on_runtime();
                    match self.waited::<V, E>(flight.wait_blocking(), share) {
                        Next::Return(r) => return r,
                        Next::Retry => continue,
                        Next::Alone => break None,
                    }
                }
            }
        };
        let cap = self.cache.local_cap;
        let fetched = match &guard {
            Some(_) if inner.shared().is_some() => block_on(inner.fetch::<V>(&self.space, &key, cap)),
            _ => Fetched::Compute { key_text: None, lease: None, stale: None },
        };
        let (text, lease, stale) = match fetched {
            Fetched::Value(v) => {
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                return Ok(v);
            }
            Fetched::Compute { key_text, lease, stale } => (key_text, lease, stale.or(fallback)),
        };
        let stamp = self.stamp_blocking();
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        inner.count_computation(took);
        if inner.shared().is_none() {
            // No tier calls: finish without touching any runtime.
            let ttl = match &r {
                Ok(v) => self.ttl_for(v),
                Err(_) => self.ttl,
            };
            let cap = self.cache.local_cap;
            return finish_local(&inner, guard, &key, stale, r, took, ttl, cap, share, stamp);
        }
        block_on(self.finish(guard, &key, text, lease, stale, r, took, share, stamp))
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_local<V, E>(
    inner: &Inner,
    guard: Option<LeaderGuard<'_>>,
    key: &LocalKey,
    stale: Option<V>,
    r: Result<V, E>,
    took: Duration,
    ttl: Duration,
    cap: Option<Duration>,
    share: Share<E>,
    stamp: Stamped,
) -> Result<V, E>
where
    V: CacheValue,
    E: Send + Sync + 'static,
{
    match r {
        Ok(v) => {
            let delta = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
            if let Some(tags) = stamp.storable() {
                if let Some((payload, meta)) = inner.prepare(&v, ttl, delta) {
                    let size = size_of_payload(&payload);
                    inner.insert_local(key.clone(), None, &v, &meta, size, cap, tags.cloned());
                }
            }
            complete(guard, Outcome::Value(Arc::new(v.clone())));
            Ok(v)
        }
        Err(e) => match stale {
            Some(v) => {
                bump(&inner.counters.fail_safe_served);
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                Ok(v)
            }
            None => {
                complete(guard, Outcome::Error(Arc::new(share(&e))));
                Err(e)
            }
        },
    }
}

fn size_of_payload(p: &[u8]) -> u32 {
    u32::try_from(p.len()).unwrap_or(u32::MAX)
}

fn complete(guard: Option<LeaderGuard<'_>>, outcome: Outcome) {
    if let Some(g) = guard {
        g.complete(outcome);
    }
}

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

fn local_only() -> Cache {
    let opts = Options::default();
    let inner = Arc::new_cyclic(|me: &Weak<Inner>| Inner {
        local: Some(LocalTier::new(crate::config::DEFAULT_LOCAL_ENTRIES, false)),
        process: RwLock::new(Arc::new(ProcessState {
            generation: larder_fork::generation(),
            shared: None,
            flights: Arc::new(Flights::default()),
        })),
        spec: SharedSpec::None,
        me: me.clone(),
        breaker: Breaker::new(opts.breaker_threshold, opts.breaker_cooldown),
        mac: MacKey::from_secret(&KeySecret::default_key()),
        counters: Counters::new("none"),
        tags: TagTable::new(opts.tag_recheck, true),
        opts,
    });
    Cache { inner, local_cap: None }
}
