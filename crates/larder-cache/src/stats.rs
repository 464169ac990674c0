//! In-process counters (`Cache::stats`) and the `metrics` crate handles, fed together by
//! [`Counters::record`].
//!
//! Local hits are the hot path: they are counted in per-thread-striped atomics so two threads
//! hitting one key do not fight over one cache line, and summed when `stats()` is read.
//!
//! Metrics of a call carry its namespace as a label, with bounded cardinality: the first
//! `metric_namespaces` namespaces a cache sees (default [`DEFAULT_METRIC_NAMESPACES`]) get a
//! label of their own, every later one shares [`OTHER_NAMESPACES`]. Their handles are
//! registered on first use of the namespace, with the recorder installed then; each thread
//! remembers the last namespace it counted; a local hit uses the handle its entry carries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use std::sync::{PoisonError, RwLock};

/// Namespaces that get a metrics label of their own, per cache, unless
/// [`CacheBuilder::metric_namespaces`](crate::CacheBuilder::metric_namespaces) says otherwise.
pub const DEFAULT_METRIC_NAMESPACES: usize = 50;

/// The `namespace` label of every namespace past the bound (not a valid namespace, so it
/// never names a real one).
pub const OTHER_NAMESPACES: &str = "(other)";

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter striped over cache lines by thread.
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

impl Striped {
    /// Adds one. A plain load and store rather than a locked add: the stripe is almost always
    /// this thread's alone, so this is exact up to 16 threads and, beyond, may lose the odd
    /// increment when two threads sharing a stripe collide — acceptable for statistics, and it
    /// keeps the hit path free of atomic read-modify-writes.
    #[inline]
    pub(crate) fn incr(&self) {
        let i = STRIPE.try_with(|s| *s).unwrap_or(0);
        let c = &self.0[i].0;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// A snapshot of a cache's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Answers served from the in-process tier.
    pub local_hits: u64,
    /// Lookups that missed the in-process tier (or found it absent).
    pub local_misses: u64,
    /// Answers served from the shared tier.
    pub shared_hits: u64,
    /// Shared-tier lookups that found nothing usable.
    pub shared_misses: u64,
    /// Times the cached function ran.
    pub computations: u64,
    /// Computations that returned an error.
    pub compute_errors: u64,
    /// Callers that waited for another caller in this process (single-flight).
    pub coalesced: u64,
    /// Times this process waited for another process's lease.
    pub lease_waits: u64,
    /// Lease waits that ended without a value (the waiter then computed itself).
    pub lease_timeouts: u64,
    /// Shared-tier calls that failed or timed out.
    pub store_errors: u64,
    /// Shared-tier calls skipped because the circuit breaker was open.
    pub breaker_skips: u64,
    /// Stored entries refused because they did not parse or verify.
    pub corrupt_entries: u64,
    /// Values computed and returned but not stored because they were too large.
    pub oversize_values: u64,
    /// Early recomputations triggered by XFetch.
    pub early_refreshes: u64,
    /// Stale values served because the function failed (fail-safe).
    pub fail_safe_served: u64,
    /// Values stored in the shared tier.
    pub shared_writes: u64,
    /// Entries dropped from the local tier by invalidation messages.
    pub invalidations_received: u64,
    /// Background refreshes whose computation started (this process ran the function off
    /// the request path: XFetch, stale-while-revalidate, or after a soft timeout).
    pub refreshes_started: u64,
    /// Background refreshes whose computation ended (value stored, or error counted).
    pub refreshes_finished: u64,
    /// Expired values served at once while a background refresh runs (stale-while-revalidate).
    pub stale_served: u64,
    /// Stale values served because the function ran past its soft timeout.
    pub stale_served_by_timeout: u64,
    /// Calls that failed because the function ran past its hard timeout.
    pub hard_timeouts: u64,
    /// Tagged entries read from the shared tier and refused because a tag of theirs was
    /// invalidated (or its record is missing or unreadable) since they were stored.
    pub tag_stale: u64,
}

/// Something the core counts (see [`Counters::record`]); the `&str` is the call's namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event<'a> {
    /// A lookup that missed the local tier.
    LocalMiss(&'a str),
    /// A fresh value from the shared tier.
    SharedHit(&'a str),
    /// A shared-tier read that found nothing usable.
    SharedMiss(&'a str),
    /// An early recomputation claimed by XFetch.
    EarlyRefresh(&'a str),
    /// A caller that waited for another caller in this process.
    Coalesced(&'a str),
    /// A wait for another process's lease began.
    LeaseWait(&'a str),
    /// A lease wait ended without a value.
    LeaseTimeout(&'a str),
    /// The function ran, for this long.
    Computed(&'a str, Duration),
    /// The function returned an error.
    ComputeError(&'a str),
    /// A stale value served because the function failed.
    FailSafeServed(&'a str),
    /// A call that missed the local tier was answered, this way, after this long.
    Answered(&'a str, Answer, Duration),
    /// A value stored in the shared tier.
    SharedWrite,
    /// A shared-tier call failed or timed out.
    StoreError,
    /// A shared-tier call skipped by the open circuit breaker.
    BreakerSkip,
    /// The circuit breaker opened.
    BreakerOpened,
    /// The circuit breaker closed.
    BreakerClosed,
    /// A stored entry refused (did not parse or verify).
    Corrupt,
    /// A value not stored because it was too large.
    Oversize,
    /// A local entry dropped by another process's invalidation.
    InvalidationReceived,
    /// A background refresh began computing.
    RefreshStarted,
    /// A background refresh finished computing.
    RefreshFinished,
    /// An expired value served while a background refresh runs.
    StaleServed,
    /// A stale value served because the function passed its soft timeout.
    StaleServedByTimeout,
    /// A call failed because the function passed its hard timeout.
    HardTimeout,
    /// A tagged entry read from the shared tier and refused: a tag of it was invalidated
    /// since it was stored (or the tag's record is missing or unreadable).
    TagStale,
}

/// How a call that missed the local tier was answered (the `outcome` label and span field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A fresh value from the shared tier (or from a lease holder's write).
    Shared,
    /// This caller ran the function.
    Computed,
    /// Another caller in this process ran it; this one waited.
    Coalesced,
    /// The function failed and a stale value was served (fail-safe).
    Stale,
    /// The function's error was returned.
    Error,
}

impl Answer {
    const ALL: [Answer; 5] =
        [Answer::Shared, Answer::Computed, Answer::Coalesced, Answer::Stale, Answer::Error];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Answer::Shared => "shared",
            Answer::Computed => "computed",
            Answer::Coalesced => "coalesced",
            Answer::Stale => "stale",
            Answer::Error => "error",
        }
    }

    /// Answered without running the function in this call.
    pub(crate) fn is_hit(self) -> bool {
        matches!(self, Answer::Shared | Answer::Coalesced | Answer::Stale)
    }
}

pub(crate) struct Counters {
    local_hits: Striped,
    local_misses: AtomicU64,
    shared_hits: AtomicU64,
    shared_misses: AtomicU64,
    computations: AtomicU64,
    compute_errors: AtomicU64,
    coalesced: AtomicU64,
    lease_waits: AtomicU64,
    lease_timeouts: AtomicU64,
    store_errors: AtomicU64,
    breaker_skips: AtomicU64,
    corrupt_entries: AtomicU64,
    oversize_values: AtomicU64,
    early_refreshes: AtomicU64,
    fail_safe_served: AtomicU64,
    shared_writes: AtomicU64,
    invalidations_received: AtomicU64,
    refreshes_started: AtomicU64,
    refreshes_finished: AtomicU64,
    stale_served: AtomicU64,
    stale_served_by_timeout: AtomicU64,
    hard_timeouts: AtomicU64,
    tag_stale: AtomicU64,
    m: TierMetrics,
    namespaces: Namespaces,
}

/// The cache's `metrics` handles that are not about one call (registered when it is built).
struct TierMetrics {
    store_errors: Counter,
    corrupt: Counter,
    oversize: Counter,
    tag_stale: Counter,
    breaker_open: Gauge,
    refreshes_started: Counter,
    refreshes_finished: Counter,
    stale_served: Counter,
    stale_by_timeout: Counter,
    hard_timeouts: Counter,
}

impl TierMetrics {
    fn new(shared: &'static str) -> Self {
        TierMetrics {
            store_errors: metrics::counter!("larder_cache_store_errors_total", "tier" => shared),
            corrupt: metrics::counter!("larder_cache_corrupt_entries_total", "tier" => shared),
            oversize: metrics::counter!("larder_cache_oversize_values_total"),
            tag_stale: metrics::counter!("larder_cache_tag_stale_total", "tier" => shared),
            breaker_open: metrics::gauge!("larder_cache_breaker_open", "tier" => shared),
            refreshes_started: metrics::counter!("larder_cache_refreshes_started_total"),
            refreshes_finished: metrics::counter!("larder_cache_refreshes_finished_total"),
            stale_served: metrics::counter!("larder_cache_stale_served_total"),
            stale_by_timeout: metrics::counter!("larder_cache_stale_served_by_timeout_total"),
            hard_timeouts: metrics::counter!("larder_cache_hard_timeouts_total"),
        }
    }
}

/// The `metrics` handles of one namespace label.
struct NsMetrics {
    local_hit: Counter,
    local_miss: Counter,
    shared_hit: Counter,
    shared_miss: Counter,
    early_refresh: Counter,
    coalesced: Counter,
    lease_waits: Counter,
    lease_timeouts: Counter,
    computations: Counter,
    compute_errors: Counter,
    compute_seconds: Histogram,
    fail_safe: Counter,
    /// `larder_cache_call_seconds` by [`Answer`], in [`Answer::ALL`]'s order.
    call_seconds: [Histogram; 5],
}

impl NsMetrics {
    fn new(shared: &'static str, ns: &str) -> Self {
        let ns = ns.to_owned();
        let call = |a: Answer| metrics::histogram!("larder_cache_call_seconds", "namespace" => ns.clone(), "outcome" => a.as_str());
        NsMetrics {
            local_hit: metrics::counter!("larder_cache_hits_total", "tier" => "local", "namespace" => ns.clone()),
            local_miss: metrics::counter!("larder_cache_misses_total", "tier" => "local", "namespace" => ns.clone()),
            shared_hit: metrics::counter!("larder_cache_hits_total", "tier" => shared, "namespace" => ns.clone()),
            shared_miss: metrics::counter!("larder_cache_misses_total", "tier" => shared, "namespace" => ns.clone()),
            early_refresh: metrics::counter!("larder_cache_early_refreshes_total", "namespace" => ns.clone()),
            coalesced: metrics::counter!("larder_cache_coalesced_total", "namespace" => ns.clone()),
            lease_waits: metrics::counter!("larder_cache_lease_waits_total", "tier" => shared, "namespace" => ns.clone()),
            lease_timeouts: metrics::counter!("larder_cache_lease_timeouts_total", "tier" => shared, "namespace" => ns.clone()),
            computations: metrics::counter!("larder_cache_computations_total", "namespace" => ns.clone()),
            compute_errors: metrics::counter!("larder_cache_compute_errors_total", "namespace" => ns.clone()),
            compute_seconds: metrics::histogram!("larder_cache_compute_seconds", "namespace" => ns.clone()),
            fail_safe: metrics::counter!("larder_cache_fail_safe_served_total", "namespace" => ns.clone()),
            call_seconds: Answer::ALL.map(call),
        }
    }
}

/// The namespace labels of one cache: the first `limit` namespaces seen, then the shared
/// [`OTHER_NAMESPACES`] handles.
struct Namespaces {
    /// Tells caches apart in the per-thread memo (never reused).
    id: u64,
    shared: &'static str,
    limit: usize,
    labelled: RwLock<HashMap<Box<str>, Arc<NsMetrics>>>,
    other: std::sync::OnceLock<Arc<NsMetrics>>,
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// The last namespace this thread counted: (cache id, namespace, its handles).
type Memo = Option<(u64, Box<str>, Arc<NsMetrics>)>;

thread_local! {
    static LAST_NAMESPACE: RefCell<Memo> = const { RefCell::new(None) };
}

impl Namespaces {
    fn new(shared: &'static str, limit: usize) -> Self {
        Namespaces {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            shared,
            limit,
            labelled: RwLock::new(HashMap::new()),
            other: std::sync::OnceLock::new(),
        }
    }

    /// Runs `f` with the handles of namespace `ns`: from this thread's memo when it was the
    /// last namespace counted here (no lock, no reference-count traffic), else looked up.
    #[inline]
    fn with(&self, ns: &str, f: &dyn Fn(&NsMetrics)) {
        let memo = LAST_NAMESPACE.try_with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((id, name, m)) if *id == self.id && **name == *ns => f(m),
                _ => {
                    let m = self.find(ns);
                    f(&m);
                    *last = Some((self.id, ns.into(), m));
                }
            }
        });
        if memo.is_err() {
            // Thread-local storage is gone (a thread shutting down): look the handles up.
            f(&self.find(ns));
        }
    }

    #[cold]
    fn find(&self, ns: &str) -> Arc<NsMetrics> {
        if let Some(m) = self.labelled.read().unwrap_or_else(PoisonError::into_inner).get(ns) {
            return Arc::clone(m);
        }
        let mut labelled = self.labelled.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = labelled.get(ns) {
            return Arc::clone(m);
        }
        if labelled.len() < self.limit {
            let m = Arc::new(NsMetrics::new(self.shared, ns));
            labelled.insert(ns.into(), Arc::clone(&m));
            return m;
        }
        Arc::clone(self.other.get_or_init(|| Arc::new(NsMetrics::new(self.shared, OTHER_NAMESPACES))))
    }
}

impl Counters {
    pub(crate) fn new(shared: &'static str, metric_namespaces: usize) -> Self {
        Counters {
            local_hits: Striped::default(),
            local_misses: AtomicU64::new(0),
            shared_hits: AtomicU64::new(0),
            shared_misses: AtomicU64::new(0),
            computations: AtomicU64::new(0),
            compute_errors: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            lease_waits: AtomicU64::new(0),
            lease_timeouts: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            breaker_skips: AtomicU64::new(0),
            corrupt_entries: AtomicU64::new(0),
            oversize_values: AtomicU64::new(0),
            early_refreshes: AtomicU64::new(0),
            fail_safe_served: AtomicU64::new(0),
            shared_writes: AtomicU64::new(0),
            invalidations_received: AtomicU64::new(0),
            refreshes_started: AtomicU64::new(0),
            refreshes_finished: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            stale_served_by_timeout: AtomicU64::new(0),
            hard_timeouts: AtomicU64::new(0),
            tag_stale: AtomicU64::new(0),
            m: TierMetrics::new(shared),
            namespaces: Namespaces::new(shared, metric_namespaces),
        }
    }

    /// Counts a local hit: the striped `Stats` counter here, and `hit` — the namespace's
    /// `larder_cache_hits_total{tier="local"}` handle, which the entry carries (from
    /// [`local_hit_counter`](Self::local_hit_counter)) so the hit path looks nothing up.
    #[inline]
    pub(crate) fn local_hit(&self, hit: &Counter) {
        self.local_hits.incr();
        hit.increment(1);
    }

    /// The local-hit handle of namespace `ns`, for the entries stored under it.
    pub(crate) fn local_hit_counter(&self, ns: &str) -> Counter {
        self.namespaces.find(ns).local_hit.clone()
    }

    /// Counts one event: the `Stats` counter and the `metrics` handle together, so the two
    /// cannot drift apart. The only way the core counts anything (with
    /// [`local_hit`](Self::local_hit), the hit path's own).
    #[inline]
    pub(crate) fn record(&self, e: Event<'_>) {
        let ns = |ns: &str, f: &dyn Fn(&NsMetrics)| self.namespaces.with(ns, f);
        match e {
            Event::LocalMiss(n) => {
                bump(&self.local_misses);
                ns(n, &|m| m.local_miss.increment(1));
            }
            Event::SharedHit(n) => {
                bump(&self.shared_hits);
                ns(n, &|m| m.shared_hit.increment(1));
            }
            Event::SharedMiss(n) => {
                bump(&self.shared_misses);
                ns(n, &|m| m.shared_miss.increment(1));
            }
            Event::EarlyRefresh(n) => {
                bump(&self.early_refreshes);
                ns(n, &|m| m.early_refresh.increment(1));
            }
            Event::Coalesced(n) => {
                bump(&self.coalesced);
                ns(n, &|m| m.coalesced.increment(1));
            }
            Event::LeaseWait(n) => {
                bump(&self.lease_waits);
                ns(n, &|m| m.lease_waits.increment(1));
            }
            Event::LeaseTimeout(n) => {
                bump(&self.lease_timeouts);
                ns(n, &|m| m.lease_timeouts.increment(1));
            }
            Event::Computed(n, took) => {
                bump(&self.computations);
                ns(n, &|m| {
                    m.computations.increment(1);
                    m.compute_seconds.record(took.as_secs_f64());
                });
            }
            Event::ComputeError(n) => {
                bump(&self.compute_errors);
                ns(n, &|m| m.compute_errors.increment(1));
            }
            Event::FailSafeServed(n) => {
                bump(&self.fail_safe_served);
                ns(n, &|m| m.fail_safe.increment(1));
            }
            Event::Answered(n, answer, took) => {
                let i = Answer::ALL.iter().position(|a| *a == answer).unwrap_or(0);
                ns(n, &|m| m.call_seconds[i].record(took.as_secs_f64()));
            }
            Event::SharedWrite => bump(&self.shared_writes),
            Event::StoreError => {
                bump(&self.store_errors);
                self.m.store_errors.increment(1);
            }
            Event::BreakerSkip => bump(&self.breaker_skips),
            Event::BreakerOpened => self.m.breaker_open.set(1.0),
            Event::BreakerClosed => self.m.breaker_open.set(0.0),
            Event::Corrupt => {
                bump(&self.corrupt_entries);
                self.m.corrupt.increment(1);
            }
            Event::Oversize => {
                bump(&self.oversize_values);
                self.m.oversize.increment(1);
            }
            Event::InvalidationReceived => bump(&self.invalidations_received),
            Event::RefreshStarted => {
                bump(&self.refreshes_started);
                self.m.refreshes_started.increment(1);
            }
            Event::RefreshFinished => {
                bump(&self.refreshes_finished);
                self.m.refreshes_finished.increment(1);
            }
            Event::StaleServed => {
                bump(&self.stale_served);
                self.m.stale_served.increment(1);
            }
            Event::StaleServedByTimeout => {
                bump(&self.stale_served_by_timeout);
                self.m.stale_by_timeout.increment(1);
            }
            Event::HardTimeout => {
                bump(&self.hard_timeouts);
                self.m.hard_timeouts.increment(1);
            }
            Event::TagStale => {
                bump(&self.tag_stale);
                self.m.tag_stale.increment(1);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            local_hits: self.local_hits.sum(),
            local_misses: l(&self.local_misses),
            shared_hits: l(&self.shared_hits),
            shared_misses: l(&self.shared_misses),
            computations: l(&self.computations),
            compute_errors: l(&self.compute_errors),
            coalesced: l(&self.coalesced),
            lease_waits: l(&self.lease_waits),
            lease_timeouts: l(&self.lease_timeouts),
            store_errors: l(&self.store_errors),
            breaker_skips: l(&self.breaker_skips),
            corrupt_entries: l(&self.corrupt_entries),
            oversize_values: l(&self.oversize_values),
            early_refreshes: l(&self.early_refreshes),
            fail_safe_served: l(&self.fail_safe_served),
            shared_writes: l(&self.shared_writes),
            invalidations_received: l(&self.invalidations_received),
            refreshes_started: l(&self.refreshes_started),
            refreshes_finished: l(&self.refreshes_finished),
            stale_served: l(&self.stale_served),
            stale_served_by_timeout: l(&self.stale_served_by_timeout),
            hard_timeouts: l(&self.hard_timeouts),
            tag_stale: l(&self.tag_stale),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}
