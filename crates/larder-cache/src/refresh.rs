//! Work off the request path: the *detached* API, whose function (`Send + 'static`, so it may
//! outlive the call) can finish after the caller got its answer.
//!
//! * **Background refresh.** A value XFetch wants refreshed (locally or in the shared tier),
//!   or an expired one still inside the stale-while-revalidate window, is returned at once;
//!   the function runs in a task on the cache's per-process runtime (blocking functions on
//!   its blocking pool), at most one per key in the process and, under the shared tier's
//!   lease, one across processes. A worker that wins the lease after another one refreshed
//!   finds the newer entry and computes nothing.
//! * **Factory timeouts.** After the soft timeout a caller holding a fail-safe value gets it
//!   and the computation goes on in the background, storing its value when it ends. After the
//!   hard timeout the caller gets [`FactoryTimeout`] (converted into its error type), the
//!   computation is abandoned (an async one cancelled; a blocking one cannot be stopped, its
//!   result is dropped), nothing is stored and the lease is released.
//!
//! Every path ends in the settle step of `compute.rs` or, in the background, in
//! [`Pending::store_refreshed`], and counts through `Inner::record`, so the async and the
//! blocking API produce the same statistics (the blocking twins drive the same future).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::cache::{size_of_payload, unix_ms, CacheValue};
use crate::compute::{complete, delta_of, Next, Pending, Share};
use crate::fetch::{random_token, xfetch_due, Fetched, Mode};
use crate::flight::{Joined, LeaderGuard, Outcome, Waited};
use crate::local::LocalKey;
use crate::runtime::{block_on, runtime};
use crate::stats::Event;
use crate::tags::stamp::Stamped;
use crate::tier::Lease;

/// The error of a call whose function did not finish within its hard timeout. Nothing was
/// cached; the next call computes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryTimeout {
    namespace: String,
    after: Duration,
}

impl FactoryTimeout {
    /// The key space namespace of the call.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The hard timeout that was reached.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for FactoryTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the cached function of `{}` did not finish within its hard timeout of {:?}; nothing was cached",
            self.namespace, self.after
        )
    }
}

impl std::error::Error for FactoryTimeout {}

/// How a detached call turns a [`FactoryTimeout`] into its error type; `None`: it cannot, and
/// the hard timeout does not apply to it (the caller waits for the function).
pub type OnTimeout<E> = fn(FactoryTimeout) -> Option<E>;

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A detached function, async or blocking, type-erased.
enum Factory<V, E> {
    Async(Box<dyn FnOnce() -> BoxFut<Result<V, E>> + Send>),
    Blocking(Box<dyn FnOnce() -> Result<V, E> + Send>),
}

/// A detached function that panicked (or whose task was cancelled).
struct Panicked(Option<Box<dyn std::any::Any + Send>>);

impl<V: Send + 'static, E: Send + 'static> Factory<V, E> {
    /// Runs here: an async function on this task, a blocking one on this thread (the blocking
    /// API's caller, which drives the call with `block_on`).
    async fn run_here(self) -> Result<V, E> {
        match self {
            Factory::Async(f) => f().await,
            Factory::Blocking(f) => f(),
        }
    }

    /// Runs in a task of its own on `rt` (a blocking function on its blocking pool).
    fn spawn(self, rt: &tokio::runtime::Runtime) -> tokio::task::JoinHandle<Result<V, E>> {
        match self {
            Factory::Async(f) => rt.spawn(f()),
            Factory::Blocking(f) => rt.spawn_blocking(f),
        }
    }

    /// Runs inside a background task (already on the cache's runtime).
    async fn run_in_task(self) -> Result<Result<V, E>, Panicked> {
        match self {
            Factory::Async(f) => Ok(f().await),
            Factory::Blocking(f) => {
                tokio::task::spawn_blocking(f).await.map_err(|e| Panicked(e.try_into_panic().ok()))
            }
        }
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, Panicked> {
    r.map_err(|e| Panicked(e.try_into_panic().ok()))
}

/// `Duration::MAX` switches a cache-wide timeout off for one call.
fn limit(call: Option<Duration>, cache: Option<Duration>) -> Option<Duration> {
    call.or(cache).filter(|d| *d != Duration::MAX && !d.is_zero())
}

impl Pending {
    /// This call's soft timeout, replacing the cache's ([`CacheBuilder::soft_timeout`]):
    /// past it, a caller that has a fail-safe value gets it and the function goes on in the
    /// background. `Duration::MAX`: none for this call. Only the detached functions
    /// (`*_detached`) apply it.
    ///
    /// [`CacheBuilder::soft_timeout`]: crate::CacheBuilder::soft_timeout
    pub fn soft_timeout(mut self, after: Duration) -> Self {
        self.soft = Some(after);
        self
    }

    /// This call's hard timeout, replacing the cache's ([`CacheBuilder::hard_timeout`]): past
    /// it, the caller gets [`FactoryTimeout`] as its error. `Duration::MAX`: none for this
    /// call. Only the fallible detached functions apply it (an infallible one has no error to
    /// return, so it waits).
    ///
    /// [`CacheBuilder::hard_timeout`]: crate::CacheBuilder::hard_timeout
    pub fn hard_timeout(mut self, after: Duration) -> Self {
        self.hard = Some(after);
        self
    }

    /// Finishes a missed call with an infallible async function that may run off the request
    /// path: a value due for refresh, or inside the stale-while-revalidate window, is returned
    /// at once and refreshed in the background; past the soft timeout a fail-safe value is
    /// returned while `f` goes on. A hard timeout does not apply (there is no error to give).
    pub async fn compute_detached<V, F, Fut>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let factory: Factory<V, Infallible> =
            Factory::Async(Box::new(move || Box::pin(async move { Ok(f().await) })));
        match self.run_detached(factory, |_| None, |_| None).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// [`compute_detached`](Self::compute_detached) for a fallible function: only `Ok` is
    /// stored; past the hard timeout the call returns `E::from(FactoryTimeout)`.
    pub async fn try_compute_detached<V, E, F, Fut>(self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        E: Clone + From<FactoryTimeout> + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.try_compute_detached_with(f, |e: &E| Some(e.clone()), |t| Some(E::from(t))).await
    }

    /// [`try_compute_detached`](Self::try_compute_detached) for any error type: `share` as in
    /// [`try_compute_with`](Self::try_compute_with); `on_timeout` makes the hard timeout's
    /// error (`None`: the hard timeout does not apply).
    pub async fn try_compute_detached_with<V, E, F, Fut>(
        self,
        f: F,
        share: Share<E>,
        on_timeout: OnTimeout<E>,
    ) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let factory = Factory::Async(Box::new(move || Box::pin(f()) as BoxFut<Result<V, E>>));
        self.run_detached(factory, share, on_timeout).await
    }

    /// Blocking twin of [`compute_detached`](Self::compute_detached): without timeouts `f`
    /// runs on the calling thread; a background refresh or a timed call runs it on the cache
    /// runtime's blocking pool.
    pub fn compute_blocking_detached<V, F>(self, f: F) -> V
    where
        V: CacheValue,
        F: FnOnce() -> V + Send + 'static,
    {
        let factory: Factory<V, Infallible> = Factory::Blocking(Box::new(move || Ok(f())));
        match block_on(self.run_detached(factory, |_| None, |_| None)) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Blocking twin of [`try_compute_detached`](Self::try_compute_detached).
    pub fn try_compute_blocking_detached<V, E, F>(self, f: F) -> Result<V, E>
    where
        V: CacheValue,
        E: Clone + From<FactoryTimeout> + Send + Sync + 'static,
        F: FnOnce() -> Result<V, E> + Send + 'static,
    {
        self.try_compute_blocking_detached_with(f, |e: &E| Some(e.clone()), |t| Some(E::from(t)))
    }

    /// Blocking twin of [`try_compute_detached_with`](Self::try_compute_detached_with).
    pub fn try_compute_blocking_detached_with<V, E, F>(
        self,
        f: F,
        share: Share<E>,
        on_timeout: OnTimeout<E>,
    ) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<V, E> + Send + 'static,
    {
        block_on(self.run_detached(Factory::Blocking(Box::new(f)), share, on_timeout))
    }

    /// The detached call, for both APIs (the blocking twins block on it).
    async fn run_detached<V, E>(
        mut self,
        factory: Factory<V, E>,
        share: Share<E>,
        on_timeout: OnTimeout<E>,
    ) -> Result<V, E>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = self.cache.inner.clone();
        let Some(key) = self.key.take() else {
            let start = Instant::now();
            let r = factory.run_here().await;
            inner.record(Event::Computed(self.space.namespace(), start.elapsed()));
            return r;
        };
        if let Some(v) = self.take_fallback::<V>() {
            // The local entry is due for an early refresh (XFetch), and this caller claimed
            // it: serve the current value, refresh in the background.
            self.spawn_refresh(key, None, factory);
            return Ok(v);
        }
        let flights = inner.flights();
        let guard = loop {
            match flights.join(&key) {
                Joined::Leader(g) => break Some(g),
                Joined::Waiter(flight) => {
                    inner.record(Event::Coalesced(self.space.namespace()));
                    match self.waited::<V, E>(flight.wait().await, share) {
                        Next::Return(r) => return r,
                        Next::Retry => continue,
                        Next::Alone => break None,
                    }
                }
            }
        };
        // Without a shared tier, a background refresh of this key running in this process
        // (the local entry expired meanwhile) is the computation to wait for. (With one, the
        // shared tier serves the stale value or the lease makes this caller wait.)
        let running = if inner.shared().is_none() { inner.refreshes().running(&key) } else { None };
        if let Some(refresh) = running {
            if let Waited::Done(Outcome::Value(a)) = refresh.wait().await {
                if let Some(v) = a.downcast_ref::<V>() {
                    inner.record(Event::Coalesced(self.space.namespace()));
                    complete(guard, Outcome::Value(a.clone()));
                    return Ok(v.clone());
                }
            }
        }
        let soft = limit(self.soft, inner.opts.soft_timeout);
        let hard = limit(self.hard, inner.opts.hard_timeout);
        let fetched = match &guard {
            Some(_) => {
                inner.fetch_in::<V>(&self.space, &key, self.cache.local_cap, Mode::Detached { soft }).await
            }
            None => Fetched::Compute { key_text: None, lease: None, stale: None },
        };
        let (text, lease, stale) = match fetched {
            Fetched::Value(v) | Fetched::Stale(v) => {
                complete(guard, Outcome::Value(Arc::new(v.clone())));
                return Ok(v);
            }
            Fetched::Revalidate { value, written_ms } => {
                complete(guard, Outcome::Value(Arc::new(value.clone())));
                self.spawn_refresh(key, Some(written_ms), factory);
                return Ok(value);
            }
            Fetched::Compute { key_text, lease, stale } => (key_text, lease, stale),
        };
        // The tags' tokens, read before the function runs (a tag invalidated meanwhile then
        // retires this value too: docs/cache.md, "Tags").
        let stamp = inner.stamp_for(self.tags.as_deref()).await;
        let rt = match runtime() {
            Ok(rt) if soft.is_some() || hard.is_some() => rt,
            // No timeout (or no runtime to time on): the function runs right here.
            _ => {
                let start = Instant::now();
                let r = factory
                    .run_here()
                    .instrument(tracing::debug_span!(
                        "larder_cache.compute",
                        namespace = self.space.namespace()
                    ))
                    .await;
                let mut settled =
                    self.settle(guard, &key, text, lease, stale, r, start.elapsed(), share, stamp);
                if let Some(w) = settled.write_back.take() {
                    w.run(&inner).await;
                }
                return settled.done().0;
            }
        };
        let start = Instant::now();
        let mut handle = factory.spawn(rt);
        let mut outcome = None;
        // The soft timeout matters only with a value to serve meanwhile, and before the hard one.
        if let (Some(s), Some(served)) = (soft, &stale) {
            if hard.is_none_or(|h| s < h) {
                match tokio::time::timeout(s, &mut handle).await {
                    Ok(j) => outcome = Some(joined(j)),
                    Err(_) => {
                        let v = served.clone();
                        inner.record(Event::StaleServedByTimeout);
                        complete(guard, Outcome::Value(Arc::new(v.clone())));
                        self.finish_in_background(rt, key, text, lease, start, handle, stamp);
                        return Ok(v);
                    }
                }
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => match hard {
                Some(h) => {
                    let left = h.saturating_sub(start.elapsed());
                    match tokio::time::timeout(left, &mut handle).await {
                        Ok(j) => joined(j),
                        Err(_) => {
                            let t = FactoryTimeout { namespace: self.space.namespace().to_owned(), after: h };
                            match on_timeout(t) {
                                Some(e) => {
                                    handle.abort();
                                    inner.record(Event::HardTimeout);
                                    inner.release(text.as_deref(), lease).await;
                                    complete(guard, Outcome::Error(Arc::new(share(&e))));
                                    return Err(e);
                                }
                                None => joined((&mut handle).await),
                            }
                        }
                    }
                }
                None => joined((&mut handle).await),
            },
        };
        match outcome {
            Ok(r) => {
                let mut settled =
                    self.settle(guard, &key, text, lease, stale, r, start.elapsed(), share, stamp);
                if let Some(w) = settled.write_back.take() {
                    w.run(&inner).await;
                }
                settled.done().0
            }
            Err(Panicked(p)) => {
                // As on the inline path: the flight is abandoned (the guard drops) and the
                // lease released; the panic goes on to the caller. (A task is cancelled only
                // by its runtime shutting down, and the cache's runtime never is.)
                inner.release(text.as_deref(), lease).await;
                drop(guard);
                match p {
                    Some(p) => std::panic::resume_unwind(p),
                    None => panic!("larder-cache: the cached function's task was cancelled"),
                }
            }
        }
    }

    /// Refreshes `key` in the background: at most one refresh per key in this process; with a
    /// shared tier, only under its lease, and not at all when the entry there is newer than
    /// `seen_ms` (the written time of the value served; `None`: a local entry, then a fresh
    /// entry XFetch does not pick counts as newer).
    fn spawn_refresh<V, E>(self, key: LocalKey, seen_ms: Option<u64>, factory: Factory<V, E>)
    where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = self.cache.inner.clone();
        let Joined::Leader(guard) = inner.refreshes().join(&key) else {
            return; // already refreshing in this process
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "no runtime for a background refresh; the entry will be computed when it expires");
                return;
            }
        };
        let span = tracing::debug_span!("larder_cache.refresh", namespace = self.space.namespace());
        rt.spawn(
            async move {
                let Some((text, lease)) = self.refresh_lease::<V>(&key, seen_ms).await else {
                    return; // refreshed elsewhere, or being refreshed elsewhere
                };
                let lease = match lease {
                    RefreshLease::Newer(v, meta, size, stamp) => {
                        inner.insert_local(
                            key,
                            text.as_deref(),
                            &v,
                            &meta,
                            size,
                            self.cache.local_cap,
                            stamp,
                        );
                        guard.complete(Outcome::Value(Arc::new(v)));
                        return;
                    }
                    RefreshLease::Mine(token) => token,
                };
                let stamp = inner.stamp_for(self.tags.as_deref()).await;
                inner.record(Event::RefreshStarted);
                let start = Instant::now();
                let r = factory.run_in_task().await;
                self.store_refreshed(Some(guard), key, text, lease, start, r, stamp).await;
            }
            .instrument(span),
        );
    }

    /// Decides whether this process refreshes: `None` when another worker holds the lease.
    async fn refresh_lease<V: CacheValue>(
        &self,
        key: &LocalKey,
        seen_ms: Option<u64>,
    ) -> Option<(Option<String>, RefreshLease<V>)> {
        let inner = &self.cache.inner;
        let Some(tier) = inner.shared() else {
            return Some((None, RefreshLease::Mine(None)));
        };
        let text = String::from(self.space.key_from_encoding(key.encoding()));
        let token = random_token();
        match inner.tier_call(tier.as_ref(), tier.try_lease(&text, &token, inner.opts.lease_ttl)).await {
            Ok(Lease::Acquired) => {
                // Another worker may have refreshed between our read and our lease.
                if let Some((v, meta, size, stamp)) = inner.shared_get::<V>(&text).await {
                    let now = unix_ms();
                    let newer = now < meta.expires_ms()
                        && match seen_ms {
                            Some(seen) => meta.written_ms > seen,
                            None => {
                                !xfetch_due(now, meta.expires_ms(), meta.delta_ms, inner.opts.xfetch_beta)
                            }
                        };
                    if newer {
                        inner.release(Some(&text), Some(token)).await;
                        return Some((Some(text), RefreshLease::Newer(v, meta, size, stamp)));
                    }
                }
                Some((Some(text), RefreshLease::Mine(Some(token))))
            }
            Ok(Lease::HeldByOther) => None,
            // The tier is failing: refresh this process's copy (fail-open, as a miss would).
            Err(_) => Some((Some(text), RefreshLease::Mine(None))),
        }
    }

    /// A soft timeout passed: the caller got the stale value; the function goes on in the
    /// background and its value is stored when it ends.
    #[allow(clippy::too_many_arguments)] // the key's whole state, as in `Pending::settle`
    fn finish_in_background<V, E>(
        self,
        rt: &tokio::runtime::Runtime,
        key: LocalKey,
        text: Option<String>,
        lease: Option<[u8; 16]>,
        start: Instant,
        handle: tokio::task::JoinHandle<Result<V, E>>,
        stamp: Stamped,
    ) where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = self.cache.inner.clone();
        // Registered as this key's refresh so this process starts no second one meanwhile.
        let guard = match inner.refreshes().join(&key) {
            Joined::Leader(g) => Some(g),
            Joined::Waiter(_) => None,
        };
        inner.record(Event::RefreshStarted);
        rt.spawn(async move {
            let r = joined(handle.await);
            self.store_refreshed(guard, key, text, lease, start, r, stamp).await;
        });
    }

    /// The settle step of a background computation: count it, store an `Ok` in both tiers
    /// (an `Err` or a panic keeps the current entry), release the lease, then release this
    /// process's callers waiting for the refresh.
    #[allow(clippy::too_many_arguments)] // the key's whole state, as in `Pending::settle`
    async fn store_refreshed<V, E>(
        self,
        guard: Option<LeaderGuard>,
        key: LocalKey,
        text: Option<String>,
        lease: Option<[u8; 16]>,
        start: Instant,
        r: Result<Result<V, E>, Panicked>,
        stamp: Stamped,
    ) where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        let inner = &self.cache.inner;
        let took = start.elapsed();
        match r {
            Ok(Ok(v)) => {
                inner.record(Event::Computed(self.space.namespace(), took));
                // Stored only when the tags' tokens could be read (as in the settle step).
                let tags = stamp.storable();
                let prepared = tags.and_then(|_| inner.prepare(&v, self.ttl_for(&v), delta_of(took)));
                let tags = tags.flatten();
                if let Some((payload, meta)) = prepared {
                    let size = size_of_payload(&payload);
                    inner.insert_local(
                        key,
                        text.as_deref(),
                        &v,
                        &meta,
                        size,
                        self.cache.local_cap,
                        tags.cloned(),
                    );
                    if let Some(text) = &text {
                        inner.store_shared(text, &payload, meta, tags.map(|t| &**t)).await;
                    }
                }
                inner.release(text.as_deref(), lease).await;
                inner.record(Event::RefreshFinished);
                complete(guard, Outcome::Value(Arc::new(v)));
            }
            Ok(Err(_)) => {
                inner.record(Event::Computed(self.space.namespace(), took));
                inner.record(Event::ComputeError(self.space.namespace()));
                inner.release(text.as_deref(), lease).await;
                inner.record(Event::RefreshFinished);
                tracing::warn!(
                    namespace = self.space.namespace(),
                    "background refresh failed; the current value is kept"
                );
            }
            Err(_) => {
                inner.release(text.as_deref(), lease).await;
                inner.record(Event::RefreshFinished);
                tracing::error!(
                    namespace = self.space.namespace(),
                    "background refresh panicked; the current value is kept"
                );
            }
        }
    }
}

/// What a refresh found after taking the lease.
enum RefreshLease<V> {
    /// A newer entry than the one served: nothing to compute.
    Newer(V, crate::frame::FrameMeta, u32, Option<Arc<crate::tags::stamp::Stamp>>),
    /// Compute; the lease token (`None`: no shared tier, or it is failing).
    Mine(Option<[u8; 16]>),
}
