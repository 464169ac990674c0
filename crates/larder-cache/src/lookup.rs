//! The local lookup and the calls built on it: [`Cache::lookup`] (a hit, or a [`Pending`]
//! call), `get_or_compute` and its fallible and blocking twins, `get`, and `pending`.

use std::any::Any;
use std::future::Future;
use std::time::{Duration, Instant};

use larder_key::{KeySpace, StableKey};

use crate::cache::{unix_ms, Cache, CacheValue};
use crate::compute::Pending;
use crate::local::{self as local_clock, LocalKey};
use crate::runtime::block_on;
use crate::stats::Event;

/// The result of [`Cache::lookup`]: a fresh local hit, or what is needed to finish the call.
pub enum Lookup<V> {
    /// Found in the local tier.
    Hit(V),
    /// Not found locally: finish with [`Pending::compute`] or [`Pending::compute_blocking`].
    Miss(Pending),
}

impl Cache {
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
        let counters = &self.inner.counters;
        let prefix = space.prefix();
        // The closure's results go to these out-slots rather than through its return value: a
        // large return value (value, key, error) copied through the encoder's layers cost
        // store-forwarding stalls on every hit (perf: most of `with_encoding`'s own time).
        let mut hit: Option<V> = None;
        let mut refresh = false;
        let mut miss_key: Option<LocalKey> = None;
        let encoded = larder_key::with_encoding(args, space.max_encoded_len(), |enc| {
            let hash = local_clock::hash_parts(prefix, enc);
            if let Some(l) = local {
                l.with_entry(hash, prefix, enc, |entry| {
                    if let Some(entry) = entry {
                        let now = local_clock::now();
                        if let Some(v) = entry.fresh::<V>(now) {
                            if tags.admits(entry.tags.as_deref(), now) {
                                refresh = entry.claim_refresh(now);
                                if !refresh {
                                    // Counted here, with the handle the entry carries.
                                    counters.local_hit(&entry.hit_metric);
                                }
                                hit = Some(v);
                            }
                        }
                    }
                });
                if hit.is_some() && !refresh {
                    return;
                }
            }
            miss_key = Some(LocalKey::with_hash(hash, prefix, enc));
        });
        match encoded {
            Ok(()) => {
                if !refresh {
                    if let Some(v) = hit {
                        return Lookup::Hit(v);
                    }
                }
                if local.is_some() {
                    self.inner.record(Event::LocalMiss(space.namespace()));
                }
                if refresh {
                    self.inner.record(Event::EarlyRefresh(space.namespace()));
                }
                Lookup::Miss(Pending {
                    cache: self.clone(),
                    space: space.clone(),
                    key: miss_key,
                    ttl,
                    fallback: hit.map(|v| Box::new(v) as Box<dyn Any + Send + Sync>),
                    ttl_of: None,
                    started: Instant::now(),
                    soft: None,
                    hard: None,
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
                    started: Instant::now(),
                    soft: None,
                    hard: None,
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
            started: Instant::now(),
            soft: None,
            hard: None,
            tags: None,
        }
    }
}
