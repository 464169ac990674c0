//! The cache core: [`Cache`], its per-process state (rebuilt after `fork()`), and the tier
//! plumbing every path shares — bounded tier calls and the circuit breaker, frame decoding,
//! local inserts with XFetch sampling, stores, invalidation (by key, and by tag through
//! `tags.rs`). Lookups and computations are in `compute.rs`, the lease loop in `fetch.rs`,
//! the builder in `builder.rs`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use larder_key::{KeySecret, KeySpace, StableKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::{Breaker, Permit};
use crate::error::CacheError;
use crate::flight::Flights;
use crate::frame::{self, FrameMeta, MacKey};
use crate::local::{self as local_clock, LocalEntry, LocalKey, LocalTier};
use crate::open::open_url;
use crate::options::{Options, SharedSpec};
use crate::runtime::block_on;
use crate::stats::{CacheStats, Counters, Event};
use crate::tags::stamp::Stamp;
use crate::tags::TagTable;
use crate::tier::{SharedTier, TierError};

/// The local tier's cap on an entry's life when the shared tier cannot broadcast
/// invalidations (SQLite): another process's `invalidate` is seen within this time.
pub const NO_BACKPLANE_LOCAL_TTL: Duration = Duration::from_secs(30);

/// What belongs to one process and must be rebuilt in a child after `fork()`: the shared tier
/// (its connections, background tasks and SQLite handles are the parent's) and the
/// in-process flights (a flight in progress at the fork is led by a thread the child does not
/// have). The local tier is kept: its values are as good in the child as in the parent.
pub(crate) struct ProcessState {
    generation: u64,
    shared: Option<Arc<dyn SharedTier>>,
    flights: Arc<Flights>,
    /// Background refreshes running in this process, by key (at most one per key).
    refreshes: Arc<Flights>,
}

pub(crate) struct Inner {
    pub(crate) local: Option<LocalTier>,
    /// This process's tier and flights; see [`Inner::process`].
    pub(crate) process: RwLock<Arc<ProcessState>>,
    /// How the shared tier was configured, to open it again in a forked child.
    pub(crate) spec: SharedSpec,
    pub(crate) me: Weak<Inner>,
    pub(crate) breaker: Breaker,
    pub(crate) mac: MacKey,
    pub(crate) counters: Counters,
    /// This process's view of tag tokens (`crate::tags`).
    pub(crate) tags: TagTable,
    pub(crate) opts: Options,
}

/// A memo cache: an optional in-process tier in front of an optional shared tier.
///
/// Cheap to clone (an `Arc` inside); clones share everything.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
    pub(crate) local_cap: Option<Duration>,
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

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A uniform random number in (0, 1] (XFetch samples, TTL jitter), from larder-fork's
/// per-thread generator: no system call per sample, and never the parent's stream in a child.
pub(crate) fn rand_unit() -> f64 {
    larder_fork::unit_f64()
}

/// A frame read from the shared tier: value, metadata, payload size, tags.
pub(crate) type Got<V> = (V, FrameMeta, u32, Option<Arc<Stamp>>);

/// A payload's length as a local-tier weight.
pub(crate) fn size_of_payload(p: &[u8]) -> u32 {
    u32::try_from(p.len()).unwrap_or(u32::MAX)
}

/// Registers the backplane handler that drops other processes' invalidations from the local
/// tier. Returns whether the tier has a backplane.
pub(crate) fn subscribe(me: &Weak<Inner>, tier: &dyn SharedTier) -> bool {
    let weak = me.clone();
    tier.subscribe_invalidations(Arc::new(move |key_text: &str| {
        if let Some(inner) = weak.upgrade() {
            if inner.on_tag_message(key_text) {
                inner.record(Event::InvalidationReceived);
                return;
            }
            if let Some(local) = &inner.local {
                if local.remove_by_text(key_text) {
                    inner.record(Event::InvalidationReceived);
                }
            }
        }
    }))
}

impl Cache {
    /// Assembles a cache around its tiers (the one constructor: [`CacheBuilder::build`] and
    /// the default cache both end here).
    ///
    /// [`CacheBuilder::build`]: crate::CacheBuilder::build
    pub(crate) fn assemble(
        local: Option<LocalTier>,
        spec: SharedSpec,
        shared: Option<Arc<dyn SharedTier>>,
        secret: &KeySecret,
        opts: Options,
    ) -> Cache {
        let shared_name = shared.as_ref().map_or("none", |t| t.name());
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| Inner {
            local,
            process: RwLock::new(Arc::new(ProcessState {
                generation: larder_fork::generation(),
                shared: shared.clone(),
                flights: Arc::new(Flights::default()),
                refreshes: Arc::new(Flights::default()),
            })),
            spec,
            me: me.clone(),
            breaker: Breaker::new(opts.breaker_threshold, opts.breaker_cooldown),
            mac: MacKey::from_secret(secret),
            counters: Counters::new(shared_name, opts.metric_namespaces),
            tags: TagTable::new(opts.tag_recheck, shared.is_none()),
            opts: opts.clone(),
        });
        let mut local_cap = opts.local_max_ttl;
        if let Some(tier) = &shared {
            if !subscribe(&inner.me, tier.as_ref()) && local_cap.is_none() {
                local_cap = Some(NO_BACKPLANE_LOCAL_TTL);
            }
        }
        Cache { inner, local_cap }
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

    pub(crate) fn owned_key<A: StableKey + ?Sized>(space: &KeySpace, args: &A) -> Option<(LocalKey, String)> {
        let enc = space.encode(args).ok()?;
        let text = String::from(space.key_from_encoding(&enc));
        Some((LocalKey::new(space.prefix(), &enc), text))
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
            this.inner.store(&key, Some(&text), &value, ttl, 0, this.local_cap).await;
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
                let _ = this.inner.tier_call(tier.as_ref(), tier.delete(&text)).await;
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
    ///
    /// [`Pending::tags`]: crate::Pending::tags
    /// [`CacheBuilder::tag_recheck`]: crate::CacheBuilder::tag_recheck
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
}

impl Inner {
    /// This process's state: after a `fork()`, the first call in the child opens the shared
    /// tier again (new connections, new runtime) and starts with no flights; the inherited
    /// state is never used, nor dropped, there.
    pub(crate) fn process(&self) -> Arc<ProcessState> {
        let generation = larder_fork::generation();
        {
            let p = self.process.read().unwrap_or_else(PoisonError::into_inner);
            if p.generation == generation {
                return p.clone();
            }
        }
        self.after_fork(generation)
    }

    #[cold]
    fn after_fork(&self, generation: u64) -> Arc<ProcessState> {
        let mut slot = self.process.write().unwrap_or_else(PoisonError::into_inner);
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
        let fresh = Arc::new(ProcessState {
            generation,
            shared,
            flights: Arc::new(Flights::default()),
            refreshes: Arc::new(Flights::default()),
        });
        // The parent's tier and flights: never touched or dropped in this process.
        std::mem::forget(std::mem::replace(&mut *slot, fresh.clone()));
        fresh
    }

    /// This process's shared tier, if there is one.
    pub(crate) fn shared(&self) -> Option<Arc<dyn SharedTier>> {
        self.process().shared.clone()
    }

    /// This process's in-process flights.
    pub(crate) fn flights(&self) -> Arc<Flights> {
        self.process().flights.clone()
    }

    /// This process's background refreshes in progress.
    pub(crate) fn refreshes(&self) -> Arc<Flights> {
        self.process().refreshes.clone()
    }

    /// One call to the shared tier, through the circuit breaker, bounded once: by the tier's
    /// own timeout when it has one ([`SharedTier::call_timeout`]), else by `op_timeout`.
    pub(crate) async fn tier_call<T>(
        &self,
        tier: &dyn SharedTier,
        fut: impl Future<Output = Result<T, TierError>>,
    ) -> Result<T, TierError> {
        if self.breaker.permit() == Permit::Denied {
            self.record(Event::BreakerSkip);
            return Err(TierError::Unavailable("circuit breaker open".into()));
        }
        let r = match tier.call_timeout() {
            Some(_) => fut.await,
            None => tokio::time::timeout(self.opts.op_timeout, fut).await.unwrap_or(Err(TierError::Timeout)),
        };
        self.tier_result(&r);
        r
    }

    pub(crate) fn tier_result<T>(&self, r: &Result<T, TierError>) {
        match r {
            Ok(_) => {
                if self.breaker.success() {
                    tracing::info!("cache tier answering again; circuit breaker closed");
                    self.record(Event::BreakerClosed);
                }
            }
            Err(e) => {
                self.record(Event::StoreError);
                if self.breaker.failure() {
                    tracing::warn!(error = %e, "cache tier failing; circuit breaker open");
                    self.record(Event::BreakerOpened);
                }
            }
        }
    }

    /// Reads, verifies and decodes an entry (fresh or not) from the shared tier.
    pub(crate) async fn shared_get<V: CacheValue>(&self, text: &str) -> Option<Got<V>> {
        let tier = self.shared()?;
        let bytes = self.tier_call(tier.as_ref(), tier.get(text)).await.ok()??;
        self.accept(text, &bytes, false).await
    }

    /// Verifies and decodes a frame read from the shared tier; a tagged one only while its
    /// tags are current. `quiet`: a refusal is not counted (already counted by the caller).
    pub(crate) async fn accept<V: CacheValue>(
        &self,
        text: &str,
        bytes: &[u8],
        quiet: bool,
    ) -> Option<Got<V>> {
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
        self.record(Event::Corrupt);
        tracing::warn!(key = text, reason = why, "refused a cache entry; treating it as a miss");
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_local<V: CacheValue>(
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
        let hit_metric = self.counters.local_hit_counter(key.namespace());
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
                hit_metric,
            },
        );
    }

    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        if self.opts.ttl_jitter <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.opts.ttl_jitter * (1.0 - rand_unit()))
    }

    /// Serializes a value and its frame metadata; `None` (counted) when it is too large.
    pub(crate) fn prepare<V: CacheValue>(
        &self,
        v: &V,
        ttl: Duration,
        delta_ms: u32,
    ) -> Option<(Vec<u8>, FrameMeta)> {
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
            self.record(Event::Oversize);
            return None;
        }
        Some((payload, meta))
    }

    /// Frames and writes a prepared value to the shared tier (failures counted, not raised).
    pub(crate) async fn store_shared(
        &self,
        text: &str,
        payload: &[u8],
        meta: FrameMeta,
        tags: Option<&Stamp>,
    ) {
        let Some(tier) = self.shared() else { return };
        let flags = self.opts.codec.flags();
        let framed = match tags {
            None => frame::seal_with_flags(&self.mac, text, meta, flags, payload),
            Some(t) => frame::seal_tagged(&self.mac, text, meta, flags, &t.pairs(), payload),
        };
        let Ok(framed) = framed else {
            return;
        };
        let keep = Duration::from_millis(meta.ttl_ms) + self.opts.keep_past_expiry();
        if self.tier_call(tier.as_ref(), tier.set(text, &framed, keep)).await.is_ok() {
            self.record(Event::SharedWrite);
        }
    }

    /// Stores a value in both tiers, untagged ([`Cache::set`]; tagged values are stored by
    /// the settle steps in `compute.rs`).
    pub(crate) async fn store<V: CacheValue>(
        &self,
        key: &LocalKey,
        text: Option<&str>,
        v: &V,
        ttl: Duration,
        delta_ms: u32,
        cap: Option<Duration>,
    ) {
        let Some((payload, meta)) = self.prepare(v, ttl, delta_ms) else { return };
        self.insert_local(key.clone(), text, v, &meta, size_of_payload(&payload), cap, None);
        if let Some(text) = text {
            self.store_shared(text, &payload, meta, None).await;
        }
    }

    pub(crate) async fn publish(&self, text: &str) {
        if let Some(tier) = self.shared() {
            let _ = self.tier_call(tier.as_ref(), tier.publish_invalidation(text)).await;
        }
    }

    pub(crate) async fn release(&self, text: Option<&str>, lease: Option<[u8; 16]>) {
        if let (Some(tier), Some(text), Some(token)) = (self.shared(), text, lease) {
            let _ = self.tier_call(tier.as_ref(), tier.release_lease(text, &token)).await;
        }
    }

    /// Counts an event (stats and metrics together).
    #[inline]
    pub(crate) fn record(&self, e: Event<'_>) {
        self.counters.record(e);
    }
}
