//! A memo cache shared by every worker: each distinct input is computed once for the whole
//! fleet, hot keys do not stampede, and an outage of the cache server never takes the service
//! down.
//!
//! # Roles
//!
//! * **Keys** come from `larder-key`: a [`KeySpace`](larder_key::KeySpace) (namespace +
//!   version) and arguments that implement [`StableKey`](larder_key::StableKey), so every
//!   process computes the same key text for the same arguments.
//! * **Tiers**: an optional in-process *local* tier (quick_cache, keyed by the canonical
//!   encoding so a hit never pays for a digest) in front of an optional *shared* tier — a
//!   SQLite file for every process on one host (`sqlite:PATH`, the embedded default), or Redis /
//!   Redis Cluster beyond one host. Shared tiers implement [`SharedTier`] and store opaque,
//!   MAC-authenticated [frames](frame).
//! * **The core** ([`Cache`]): single-flight inside the process, leases across processes,
//!   XFetch early recomputation (in the background with the detached API), stale-while-
//!   revalidate, soft/hard factory timeouts, TTL jitter, fail-safe, fail-open with a circuit
//!   breaker, invalidation across processes, `metrics` series labelled by namespace (bounded:
//!   the first [`DEFAULT_METRIC_NAMESPACES`], then `(other)`), an `info` span per call that
//!   misses the local tier, and [`Cache::stats`] (`docs/cache.md`, "Observability").
//! * **Tags** ([`tags`]): an entry stored with [`Pending::tags`] (or `#[memoize(tags = …)]`)
//!   is retired everywhere by [`Cache::invalidate_tag`] — one write of a new generation token
//!   per tag, checked lazily by every reader, without finding the entries.
//! * **`#[memoize]`** (in `larder-macros`, re-exported by the `larder` facade) writes the calls,
//!   and companions on the same key space, secret and cache: `quote::key(…)`, `peek`,
//!   `invalidate`, `prime`, `refresh`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use larder_cache::Cache;
//! use larder_key::KeySpace;
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("larder.db");
//! // Every worker process on the host opens the same file.
//! let cache = Cache::from_url(&format!("local:10000,sqlite:{}", path.display()))?;
//! let space = KeySpace::new("loan_calc", 1)?;
//! let quote = cache.get_or_compute_blocking(&space, &(7u64, 5_000_000u64), Duration::from_secs(600), || {
//!     // 100 ms of work, done once per distinct input across all workers.
//!     5_000_000u64 * 45 / 1000
//! });
//! assert_eq!(quote, 225_000);
//! // The second call is a local hit.
//! let again = cache.get_or_compute_blocking(&space, &(7u64, 5_000_000u64), Duration::from_secs(600), || 0u64);
//! assert_eq!(again, 225_000);
//! assert_eq!(cache.stats().computations, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees and their limits
//!
//! * **Never fails because of the cache.** Every call returns the function's answer: a shared
//!   tier that is down, slow (every call is bounded by `op_timeout`), or holds corrupt, forged
//!   or foreign entries is treated as a miss and counted.
//! * **Once per input, per fleet — while the shared tier is healthy.** Concurrent misses in one
//!   process run the function once; across processes, one worker holds a lease and the others
//!   wait for its value up to `lease_wait`, then compute themselves. When the tier is down the
//!   cache fails open: each process computes (still once per process per key).
//! * **Local tiers are eventually consistent.** With Redis, invalidations reach other
//!   processes' local tiers through pub/sub; with SQLite (no backplane) another process's
//!   local copy lives at most [`NO_BACKPLANE_LOCAL_TTL`] after an invalidation, and at most
//!   `tag_recheck` (1 s) after a tag invalidation.
//!
//! # What this crate does not do
//!
//! * It is not a database: entries can vanish at any time (eviction, sweeps, server restarts).
//! * It does not cache `Err` unless asked (`#[memoize(cache_err)]`), and never shares a value
//!   across [`KeySpace`](larder_key::KeySpace) namespaces or versions.
//! * Its async API needs a Tokio runtime (timeouts use Tokio's timer); the blocking API brings
//!   its own. A blocking call that waits on a Tokio runtime thread is counted and warned about
//!   once ([`blocking_calls_on_runtime`]); use [`spawn_blocking`] or an async function.
//! * The plain functions (`get_or_compute`, `Pending::compute`, …) take a function that may
//!   borrow, so it runs inside the caller's request — an XFetch early refresh too. Off the
//!   request path (background refresh, stale-while-revalidate, soft and hard timeouts) only
//!   the detached functions (`Pending::compute_detached`, `#[memoize(detach)]`, …), whose
//!   function is `Send + 'static`: see `docs/cache.md`, *Off the request path*.
//!
//! Design, defaults and the reasons for them: `docs/cache.md`. Frame format:
//! `docs/cache-value-format.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Lets `#[memoize]` refer to this crate as `::larder_cache` from its own tests and benches.
extern crate self as larder_cache;

mod breaker;
mod builder;
mod cache;
pub mod codec;
mod compute;
pub mod config;
mod default;
mod duration;
mod error;
mod fetch;
mod flight;
pub mod frame;
mod local;
mod lookup;
mod open;
mod options;
#[cfg(feature = "redis")]
pub mod redis;
mod refresh;
mod runtime;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod stats;
pub mod store_secret;
pub mod tags;
pub mod tier;

pub use builder::CacheBuilder;
pub use cache::{Cache, CacheValue, NO_BACKPLANE_LOCAL_TTL};
pub use codec::ValueCodec;
pub use compute::{LeaderFailed, Pending, Share};
pub use default::default_cache;
pub use error::CacheError;
pub use larder_key::{KeySecret, KeySpace, StableKey};
/// Memoizes a function through a [`Cache`]; see the `larder-macros` docs for the options.
pub use larder_macros::memoize;
pub use lookup::Lookup;
pub use refresh::{FactoryTimeout, OnTimeout};
pub use runtime::{blocking_calls_on_runtime, spawn_blocking};
pub use stats::{CacheStats, DEFAULT_METRIC_NAMESPACES, OTHER_NAMESPACES};
pub use tier::{
    BoxFuture, InvalidationHandler, Inventory, Lease, NamespaceInventory, SharedTier, TierError, TierOptions,
};

/// Support for `#[memoize]`-generated code. Not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use larder_key::{KeySpace, StableKey};
    use std::sync::OnceLock;

    /// The key space of a memoized function, with `LARDER_KEY_SECRET` applied when set.
    /// `None` if the namespace is invalid (the macro checks explicit ones at compile time) or
    /// the secret is malformed: the function then runs uncached.
    pub fn memo_space(
        cell: &'static OnceLock<Option<KeySpace>>,
        namespace: &str,
        sanitize: bool,
        version: u32,
    ) -> Option<&'static KeySpace> {
        cell.get_or_init(|| {
            let ns = if sanitize { sanitize_namespace(namespace) } else { namespace.to_owned() };
            // `KeySpace::new` is the one constructor: it applies LARDER_KEY_SECRET (read once per
            // process), so a hand-built `KeySpace::new(ns, v)` names the same entries.
            match KeySpace::new(&ns, version) {
                Ok(space) => Some(space),
                Err(e @ larder_key::KeyError::InvalidSecret(_)) => {
                    tracing::error!(error = %e, "LARDER_KEY_SECRET is invalid; memoized calls run uncached");
                    None
                }
                Err(_) => None,
            }
        })
        .as_ref()
    }

    /// `module::path::fn` → `module.path.fn`, lowercased, other characters outside
    /// `[a-z0-9_.-]` as `_`; longer than 64 bytes → 47 bytes, `-`, 16 hex digits of BLAKE3.
    pub fn sanitize_namespace(raw: &str) -> String {
        let mut s = raw.replace("::", ".").to_ascii_lowercase();
        s = s
            .chars()
            .map(|c| if c.is_ascii() && larder_key::namespace::allowed_byte(c as u8) { c } else { '_' })
            .collect();
        if s.is_empty() {
            s.push('_');
        }
        if s.len() > larder_key::namespace::MAX_LEN {
            let h = blake3::hash(s.as_bytes());
            let hex: String = h.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect();
            s.truncate(47);
            s.push('-');
            s.push_str(&hex);
        }
        s
    }

    /// How `#[memoize]` shares a failed leader's error with its waiters, chosen by the error
    /// type (autoref specialization, resolved at compile time): a clone if it is `Clone`, else
    /// `E::from(LeaderFailed)` if it implements that, else none (the waiter computes itself).
    pub struct ShareOf<E>(core::marker::PhantomData<E>);

    impl<E> ShareOf<E> {
        /// The probe.
        pub fn new() -> Self {
            ShareOf(core::marker::PhantomData)
        }
    }

    impl<E> Default for ShareOf<E> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// First choice: clone.
    pub trait ShareByClone<E> {
        /// The sharing function.
        fn share_fn(&self) -> crate::Share<E>;
    }
    impl<E: Clone> ShareByClone<E> for &&ShareOf<E> {
        fn share_fn(&self) -> crate::Share<E> {
            |e| Some(e.clone())
        }
    }

    /// Second choice: `From<LeaderFailed>`.
    pub trait ShareByFrom<E> {
        /// The sharing function.
        fn share_fn(&self) -> crate::Share<E>;
    }
    impl<E: From<crate::LeaderFailed>> ShareByFrom<E> for &ShareOf<E> {
        fn share_fn(&self) -> crate::Share<E> {
            |_| Some(E::from(crate::LeaderFailed::of::<E>()))
        }
    }

    /// Last resort: the waiter computes itself.
    pub trait ShareNot<E> {
        /// The sharing function.
        fn share_fn(&self) -> crate::Share<E>;
    }
    impl<E> ShareNot<E> for ShareOf<E> {
        fn share_fn(&self) -> crate::Share<E> {
            |_| None
        }
    }

    /// How `#[memoize(detach)]` turns a hard timeout into the function's error, chosen by the
    /// error type (autoref specialization): `E::from(FactoryTimeout)` if it implements that,
    /// else none (the hard timeout does not apply; the caller waits).
    pub struct TimeoutOf<E>(core::marker::PhantomData<E>);

    impl<E> TimeoutOf<E> {
        /// The probe.
        pub fn new() -> Self {
            TimeoutOf(core::marker::PhantomData)
        }
    }

    impl<E> Default for TimeoutOf<E> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// First choice: `From<FactoryTimeout>`.
    pub trait TimeoutByFrom<E> {
        /// The conversion.
        fn on_timeout_fn(&self) -> crate::OnTimeout<E>;
    }
    impl<E: From<crate::FactoryTimeout>> TimeoutByFrom<E> for &TimeoutOf<E> {
        fn on_timeout_fn(&self) -> crate::OnTimeout<E> {
            |t| Some(E::from(t))
        }
    }

    /// Otherwise: no hard timeout for this function.
    pub trait TimeoutNot<E> {
        /// The conversion.
        fn on_timeout_fn(&self) -> crate::OnTimeout<E>;
    }
    impl<E> TimeoutNot<E> for TimeoutOf<E> {
        fn on_timeout_fn(&self) -> crate::OnTimeout<E> {
            |_| None
        }
    }

    /// Asserts at compile time that a memoized argument is `StableKey`.
    #[inline(always)]
    pub fn assert_stable_key<T: StableKey + ?Sized>(_: &T) {}
}
