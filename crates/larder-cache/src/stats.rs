//! In-process counters (`Cache::stats`) and the `metrics` crate handles.
//!
//! Local hits are the hot path: they are counted in per-thread-striped atomics so two threads
//! hitting one key do not fight over one cache line, and summed when `stats()` is read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

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
    /// Tagged entries read from the shared tier and refused because a tag of theirs was
    /// invalidated (or its record is missing or unreadable) since they were stored.
    pub tag_stale: u64,
}

/// Something the core counts (see [`Counters::record`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    /// A fresh value from the local tier.
    LocalHit,
    /// A lookup that missed the local tier.
    LocalMiss,
    /// A fresh value from the shared tier.
    SharedHit,
    /// A shared-tier read that found nothing usable.
    SharedMiss,
    /// An early recomputation claimed by XFetch.
    EarlyRefresh,
    /// A caller that waited for another caller in this process.
    Coalesced,
    /// A wait for another process's lease began.
    LeaseWait,
    /// A lease wait ended without a value.
    LeaseTimeout,
    /// The function ran, for this long.
    Computed(Duration),
    /// A stale value served because the function failed.
    FailSafeServed,
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
    /// A tagged entry read from the shared tier and refused: a tag of it was invalidated
    /// since it was stored (or the tag's record is missing or unreadable).
    TagStale,
}

pub(crate) struct Counters {
    local_hits: Striped,
    local_misses: AtomicU64,
    shared_hits: AtomicU64,
    shared_misses: AtomicU64,
    computations: AtomicU64,
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
    tag_stale: AtomicU64,
    m: Metrics,
}

/// `metrics` handles, registered when the cache is built (install the recorder first).
struct Metrics {
    local_hit: Counter,
    local_miss: Counter,
    shared_hit: Counter,
    shared_miss: Counter,
    computations: Counter,
    compute_seconds: Histogram,
    lease_waits: Counter,
    lease_timeouts: Counter,
    store_errors: Counter,
    corrupt: Counter,
    oversize: Counter,
    early_refresh: Counter,
    fail_safe: Counter,
    tag_stale: Counter,
    breaker_open: Gauge,
}

impl Metrics {
    fn new(shared: &'static str) -> Self {
        Metrics {
            local_hit: metrics::counter!("larder_cache_hits_total", "tier" => "local"),
            local_miss: metrics::counter!("larder_cache_misses_total", "tier" => "local"),
            shared_hit: metrics::counter!("larder_cache_hits_total", "tier" => shared),
            shared_miss: metrics::counter!("larder_cache_misses_total", "tier" => shared),
            computations: metrics::counter!("larder_cache_computations_total"),
            compute_seconds: metrics::histogram!("larder_cache_compute_seconds"),
            lease_waits: metrics::counter!("larder_cache_lease_waits_total", "tier" => shared),
            lease_timeouts: metrics::counter!("larder_cache_lease_timeouts_total", "tier" => shared),
            store_errors: metrics::counter!("larder_cache_store_errors_total", "tier" => shared),
            corrupt: metrics::counter!("larder_cache_corrupt_entries_total", "tier" => shared),
            oversize: metrics::counter!("larder_cache_oversize_values_total"),
            early_refresh: metrics::counter!("larder_cache_early_refreshes_total"),
            fail_safe: metrics::counter!("larder_cache_fail_safe_served_total"),
            tag_stale: metrics::counter!("larder_cache_tag_stale_total", "tier" => shared),
            breaker_open: metrics::gauge!("larder_cache_breaker_open", "tier" => shared),
        }
    }
}

impl Counters {
    pub(crate) fn new(shared: &'static str) -> Self {
        Counters {
            local_hits: Striped::default(),
            local_misses: AtomicU64::new(0),
            shared_hits: AtomicU64::new(0),
            shared_misses: AtomicU64::new(0),
            computations: AtomicU64::new(0),
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
            tag_stale: AtomicU64::new(0),
            m: Metrics::new(shared),
        }
    }

    /// Counts one event: the `Stats` counter and the `metrics` handle together, so the two
    /// cannot drift apart. The only way the core counts anything.
    #[inline]
    pub(crate) fn record(&self, e: Event) {
        let m = &self.m;
        match e {
            Event::LocalHit => {
                self.local_hits.incr();
                m.local_hit.increment(1);
            }
            Event::LocalMiss => {
                bump(&self.local_misses);
                m.local_miss.increment(1);
            }
            Event::SharedHit => {
                bump(&self.shared_hits);
                m.shared_hit.increment(1);
            }
            Event::SharedMiss => {
                bump(&self.shared_misses);
                m.shared_miss.increment(1);
            }
            Event::EarlyRefresh => {
                bump(&self.early_refreshes);
                m.early_refresh.increment(1);
            }
            Event::Coalesced => bump(&self.coalesced),
            Event::LeaseWait => {
                bump(&self.lease_waits);
                m.lease_waits.increment(1);
            }
            Event::LeaseTimeout => {
                bump(&self.lease_timeouts);
                m.lease_timeouts.increment(1);
            }
            Event::Computed(took) => {
                bump(&self.computations);
                m.computations.increment(1);
                m.compute_seconds.record(took.as_secs_f64());
            }
            Event::FailSafeServed => {
                bump(&self.fail_safe_served);
                m.fail_safe.increment(1);
            }
            Event::SharedWrite => bump(&self.shared_writes),
            Event::StoreError => {
                bump(&self.store_errors);
                m.store_errors.increment(1);
            }
            Event::BreakerSkip => bump(&self.breaker_skips),
            Event::BreakerOpened => m.breaker_open.set(1.0),
            Event::BreakerClosed => m.breaker_open.set(0.0),
            Event::Corrupt => {
                bump(&self.corrupt_entries);
                m.corrupt.increment(1);
            }
            Event::Oversize => {
                bump(&self.oversize_values);
                m.oversize.increment(1);
            }
            Event::InvalidationReceived => bump(&self.invalidations_received),
            Event::TagStale => {
                bump(&self.tag_stale);
                m.tag_stale.increment(1);
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
            tag_stale: l(&self.tag_stale),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}
