//! A call that missed the local tier, finished: [`Pending`] (made by [`Cache::lookup`]), the
//! single-flight join, computing (async and blocking) and the one settle step both share.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_key::KeySpace;
use tracing::Instrument;

use crate::cache::{size_of_payload, Cache, CacheValue, Inner};
use crate::fetch::Fetched;
use crate::flight::{Joined, LeaderGuard, Outcome, Waited};

use crate::frame::FrameMeta;
use crate::local::LocalKey;
use crate::runtime::{block_on, note_blocking_on_runtime};
use crate::stats::{Answer, Event};
use crate::tags::stamp::{Stamp, Stamped};
use crate::tags::TagSet;

/// A call that missed the local tier: the key, already encoded, and the cache.
pub struct Pending {
    pub(crate) cache: Cache,
    pub(crate) space: KeySpace,
    /// `None` when the arguments could not be encoded (NaN, too large): compute, store nothing.
    pub(crate) key: Option<LocalKey>,
    pub(crate) ttl: Duration,
    /// A still-fresh local value whose early refresh this caller claimed.
    pub(crate) fallback: Option<Box<dyn Any + Send + Sync>>,
    /// The TTL chosen from the value ([`Pending::ttl_by`]); `None`: `ttl` for every value.
    pub(crate) ttl_of: Option<TtlOf>,
    /// When the call began (its local lookup), for `larder_cache_call_seconds`.
    pub(crate) started: Instant,
    /// This call's soft timeout ([`Pending::soft_timeout`]); `None`: the cache's.
    pub(crate) soft: Option<Duration>,
    /// This call's hard timeout ([`Pending::hard_timeout`]); `None`: the cache's.
    pub(crate) hard: Option<Duration>,
    /// The tags the value is stored under ([`Pending::tags`]).
    pub(crate) tags: Option<Arc<TagSet>>,
}

/// A result-driven TTL, type-erased (it downcasts to the value type it was made for).
type TtlOf = Box<dyn Fn(&dyn Any) -> Option<Duration> + Send + Sync>;

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("space", &self.space).field("ttl", &self.ttl).finish()
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
pub(crate) enum Next<V, E> {
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
    pub(crate) fn ttl_for<V: CacheValue>(&self, v: &V) -> Duration {
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
        if let Some(w) = self.settle_refresh(&r, start.elapsed(), &stamp) {
            w.run(&self.cache.inner).await;
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
        if let Some(w) = self.settle_refresh(&r, start.elapsed(), &stamp) {
            block_on(w.run(&self.cache.inner));
        }
        r
    }

    /// The synchronous part of a refresh (both paths): count the computation, store an `Ok`
    /// in the local tier (under the tags' tokens read before computing; nothing when they
    /// could not be read), and return what is left for the shared tier (`None`: nothing).
    fn settle_refresh<V: CacheValue, E>(
        &mut self,
        r: &Result<V, E>,
        took: Duration,
        stamp: &Stamped,
    ) -> Option<WriteBack> {
        let inner = &self.cache.inner;
        inner.record(Event::Computed(self.space.namespace(), took));
        if r.is_err() {
            inner.record(Event::ComputeError(self.space.namespace()));
        }
        let (Ok(v), Some(key), Some(tags)) = (r, self.key.take(), stamp.storable()) else { return None };
        let text = String::from(self.space.key_from_encoding(key.encoding()));
        let prepared = inner.prepare(v, self.ttl_for(v), delta_of(took));
        if let Some((payload, meta)) = &prepared {
            let (size, cap) = (size_of_payload(payload), self.cache.local_cap);
            inner.insert_local(key, Some(&text), v, meta, size, cap, tags.cloned());
        }
        inner.shared().is_some().then(|| WriteBack {
            text,
            store: prepared,
            tags: tags.cloned(),
            lease: None,
            publish: true,
        })
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

    pub(crate) fn take_fallback<V: CacheValue>(&mut self) -> Option<V> {
        self.fallback.take().and_then(|b| b.downcast::<V>().ok()).map(|b| *b)
    }

    pub(crate) fn waited<V: CacheValue, E: Send + Sync + 'static>(
        &self,
        w: Waited,
        share: Share<E>,
    ) -> Next<V, E> {
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
        let span = self.call_span();
        // The call's state (flight, shared-tier read, lease, computation) lives in one heap
        // allocation: as a plain nested future it made every call's future about 1.9 KB, moved
        // (copied) through each layer above as it was built and spawned.
        let (r, answer) = Box::pin(self.run(f, share)).instrument(span.clone()).await;
        self.answered(&span, answer);
        r
    }

    async fn run<V, E, F, Fut>(&mut self, f: F, share: Share<E>) -> (Result<V, E>, Answer)
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
            return self.unkeyed(r, start.elapsed());
        };
        let fallback = self.take_fallback::<V>();
        let flights = inner.flights();
        let ns = self.space.namespace();
        let guard = loop {
            match flights.join(&key) {
                Joined::Leader(g) => break Some(g),
                Joined::Waiter(flight) => {
                    inner.record(Event::Coalesced(ns));
                    if let Some(v) = &fallback {
                        // This caller claimed an early refresh but someone is already computing.
                        return (Ok(v.clone()), Answer::Coalesced);
                    }
                    match self.waited::<V, E>(flight.wait().await, share) {
                        Next::Return(r) => return coalesced(r),
                        Next::Retry => continue,
                        Next::Alone => break None,
                    }
                }
            }
        };
        let fetched = match &guard {
            Some(_) => inner.fetch::<V>(&self.space, &key, self.cache.local_cap).await,
            None => Fetched::Compute { key_text: None, lease: None, stale: None },
        };
        let (text, lease, stale) = match fetched {
            // (Revalidate and Stale come only from a detached fetch.)
            Fetched::Value(v) | Fetched::Revalidate { value: v, .. } | Fetched::Stale(v) => {
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                return (Ok(v), Answer::Shared);
            }
            Fetched::Compute { key_text, lease, stale } => (key_text, lease, stale.or(fallback)),
        };
        // Boxed, like the lease loop (fetch.rs): the computation, the tag stamps and the
        // write-back would otherwise enlarge every call's future, hits included.
        Box::pin(async move {
            let stamp = inner.stamp_for(self.tags.as_deref()).await;
            let start = Instant::now();
            let ns = self.space.namespace();
            let r = f().instrument(tracing::debug_span!("larder_cache.compute", namespace = ns)).await;
            let mut settled = self.settle(guard, &key, text, lease, stale, r, start.elapsed(), share, stamp);
            if let Some(w) = settled.write_back.take() {
                w.run(&inner).await;
            }
            settled.done()
        })
        .await
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
        let span = self.call_span();
        let (r, answer) = span.in_scope(|| self.run_blocking(f, share, &span));
        self.answered(&span, answer);
        r
    }

    fn run_blocking<V, E, F>(&mut self, f: F, share: Share<E>, span: &tracing::Span) -> (Result<V, E>, Answer)
    where
        V: CacheValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<V, E>,
    {
        let inner = self.cache.inner.clone();
        let Some(key) = self.key.take() else {
            let start = Instant::now();
            let r = f();
            return self.unkeyed(r, start.elapsed());
        };
        let fallback = self.take_fallback::<V>();
        let flights = inner.flights();
        let ns = self.space.namespace();
        let guard = loop {
            match flights.join(&key) {
                Joined::Leader(g) => break Some(g),
                Joined::Waiter(flight) => {
                    inner.record(Event::Coalesced(ns));
                    if let Some(v) = &fallback {
                        return (Ok(v.clone()), Answer::Coalesced);
                    }
                    note_blocking_on_runtime();
                    match self.waited::<V, E>(flight.wait_blocking(), share) {
                        Next::Return(r) => return coalesced(r),
                        Next::Retry => continue,
                        Next::Alone => break None,
                    }
                }
            }
        };
        // Without a shared tier nothing below touches a runtime.
        let fetched = match &guard {
            Some(_) if inner.shared().is_some() => {
                block_on(inner.fetch::<V>(&self.space, &key, self.cache.local_cap).instrument(span.clone()))
            }
            _ => Fetched::Compute { key_text: None, lease: None, stale: None },
        };
        let (text, lease, stale) = match fetched {
            // (Revalidate and Stale come only from a detached fetch.)
            Fetched::Value(v) | Fetched::Revalidate { value: v, .. } | Fetched::Stale(v) => {
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                return (Ok(v), Answer::Shared);
            }
            Fetched::Compute { key_text, lease, stale } => (key_text, lease, stale.or(fallback)),
        };
        let stamp = self.stamp_blocking();
        let start = Instant::now();
        let r = f();
        let mut settled = self.settle(guard, &key, text, lease, stale, r, start.elapsed(), share, stamp);
        if let Some(w) = settled.write_back.take() {
            block_on(w.run(&inner).instrument(span.clone()));
        }
        settled.done()
    }

    /// A call whose arguments cannot be a key: computed, counted, never stored.
    fn unkeyed<V, E>(&self, r: Result<V, E>, took: Duration) -> (Result<V, E>, Answer) {
        let ns = self.space.namespace();
        self.cache.inner.record(Event::Computed(ns, took));
        if r.is_err() {
            self.cache.inner.record(Event::ComputeError(ns));
            return (r, Answer::Error);
        }
        (r, Answer::Computed)
    }

    /// The `info` span of a call that missed the local tier. Its fields say how it was
    /// answered; none carries the key, the arguments, the value or a secret.
    fn call_span(&self) -> tracing::Span {
        tracing::info_span!(
            "larder_cache.call",
            namespace = self.space.namespace(),
            tier = self.cache.shared_tier_name().unwrap_or("none"),
            hit = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        )
    }

    /// Counts how a call was answered and after how long, and says so in its span.
    fn answered(&self, span: &tracing::Span, answer: Answer) {
        let took = self.started.elapsed();
        self.cache.inner.record(Event::Answered(self.space.namespace(), answer, took));
        span.record("hit", answer.is_hit());
        span.record("outcome", answer.as_str());
        span.record("latency_ms", took.as_secs_f64() * 1000.0);
    }

    /// The one settle step of a computation, shared by the async and blocking paths, and
    /// synchronous: count it, put an `Ok` in the local tier and release this process's
    /// waiters, or on an `Err` serve the stale value (fail-safe) or hand waiters the error.
    /// A tagged value is stored under `stamp`, the tokens read before computing; when they
    /// could not be read, it is returned and stored nowhere.
    /// What is left for the shared tier (write the value, release the lease) is returned for
    /// the caller to await or block on; after a failure the waiters are released only once
    /// that is done ([`Settled::done`]), so one that computes next finds the lease free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn settle<V, E>(
        &self,
        guard: Option<LeaderGuard>,
        key: &LocalKey,
        text: Option<String>,
        lease: Option<[u8; 16]>,
        stale: Option<V>,
        r: Result<V, E>,
        took: Duration,
        share: Share<E>,
        stamp: Stamped,
    ) -> Settled<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = &self.cache.inner;
        let ns = self.space.namespace();
        inner.record(Event::Computed(ns, took));
        match r {
            Ok(v) => {
                let tags = stamp.storable();
                let prepared = tags.and_then(|_| inner.prepare(&v, self.ttl_for(&v), delta_of(took)));
                let tags = tags.flatten();
                if let Some((payload, meta)) = &prepared {
                    let (size, cap) = (size_of_payload(payload), self.cache.local_cap);
                    inner.insert_local(key.clone(), text.as_deref(), &v, meta, size, cap, tags.cloned());
                }
                // Waiters in this process are released before the shared write.
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                let write_back = text
                    .map(|text| WriteBack {
                        text,
                        store: prepared,
                        tags: tags.cloned(),
                        lease,
                        publish: false,
                    })
                    .filter(WriteBack::has_work);
                Settled { result: Ok(v), answer: Answer::Computed, write_back, then: None }
            }
            Err(e) => {
                let write_back = text
                    .map(|text| WriteBack { text, store: None, tags: None, lease, publish: false })
                    .filter(WriteBack::has_work);
                inner.record(Event::ComputeError(ns));
                let (result, answer, outcome) = match stale {
                    Some(v) => {
                        inner.record(Event::FailSafeServed(ns));
                        let o = Outcome::Value(Arc::new(v.clone()));
                        (Ok(v), Answer::Stale, o)
                    }
                    None => {
                        let o = Outcome::Error(Arc::new(share(&e)));
                        (Err(e), Answer::Error, o)
                    }
                };
                Settled { result, answer, write_back, then: guard.map(|g| (g, outcome)) }
            }
        }
    }
}

/// A settled computation: its result, the shared-tier work left, and (after a failure) the
/// waiters to release once that work is done.
pub(crate) struct Settled<V, E> {
    result: Result<V, E>,
    answer: Answer,
    pub(crate) write_back: Option<WriteBack>,
    then: Option<(LeaderGuard, Outcome)>,
}

impl<V, E> Settled<V, E> {
    /// Releases the waiters still held and returns the result and how it was reached.
    pub(crate) fn done(self) -> (Result<V, E>, Answer) {
        if let Some((g, outcome)) = self.then {
            g.complete(outcome);
        }
        (self.result, self.answer)
    }
}

/// What a settled computation leaves for the shared tier, in order: write the value, release
/// the lease, publish the invalidation (a refresh). The async path awaits [`WriteBack::run`],
/// the blocking path blocks on it.
pub(crate) struct WriteBack {
    pub(crate) text: String,
    pub(crate) store: Option<(Vec<u8>, FrameMeta)>,
    /// The tags and tokens the value is stored under.
    pub(crate) tags: Option<Arc<Stamp>>,
    pub(crate) lease: Option<[u8; 16]>,
    pub(crate) publish: bool,
}

impl WriteBack {
    pub(crate) fn has_work(&self) -> bool {
        self.store.is_some() || self.lease.is_some() || self.publish
    }

    pub(crate) async fn run(self, inner: &Inner) {
        if let Some((payload, meta)) = &self.store {
            inner.store_shared(&self.text, payload, *meta, self.tags.as_deref()).await;
        }
        inner.release(Some(&self.text), self.lease).await;
        if self.publish {
            inner.publish(&self.text).await;
        }
    }
}

/// A waiter's answer: the leader's value, or the leader's error as `share` made it.
fn coalesced<V, E>(r: Result<V, E>) -> (Result<V, E>, Answer) {
    let answer = if r.is_ok() { Answer::Coalesced } else { Answer::Error };
    (r, answer)
}

/// A computation's duration as the frame's δ (ms), for XFetch.
pub(crate) fn delta_of(took: Duration) -> u32 {
    u32::try_from(took.as_millis()).unwrap_or(u32::MAX)
}

pub(crate) fn complete(guard: Option<LeaderGuard>, outcome: Outcome) {
    if let Some(g) = guard {
        g.complete(outcome);
    }
}
