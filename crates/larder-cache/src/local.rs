//! The in-process tier: a bounded quick_cache keyed by the canonical encoding.
//!
//! A local hit never computes the keyed BLAKE3 digest: entries are keyed by
//! `{namespace}:v{version}:` followed by the argument's canonical encoding, hashed with an
//! in-process, randomly seeded hasher (foldhash). That hash never leaves the process, so the
//! per-process seed that breaks shared caches is harmless (and helpful against flooding) here.
//! Entries that came from, or went to, the shared tier also record their key text, so an
//! invalidation published by another process (which only knows the key text) can find them.

use std::any::Any;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use quick_cache::sync::Cache as QCache;
use quick_cache::{Equivalent, Weighter};

/// The local tier's clock: `CLOCK_MONOTONIC_COARSE` (a few ns to read, millisecond-ish
/// resolution), read without touching shared state so hits on many threads do not contend.
pub(crate) type Instant = coarsetime::Instant;

/// Now, by the local tier's clock.
#[inline]
pub(crate) fn now() -> Instant {
    coarsetime::Instant::now_without_cache_update()
}

/// A standard duration in the local clock's units.
pub(crate) fn dur(d: std::time::Duration) -> coarsetime::Duration {
    coarsetime::Duration::from(d)
}

/// The process's in-memory key hasher: foldhash, randomly seeded once per process. That seed
/// never leaves the process, so it cannot cause the cross-process misses stable keys prevent;
/// it does keep callers from crafting collisions in the local tier.
fn hasher() -> &'static foldhash::fast::RandomState {
    static H: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    H.get_or_init(foldhash::fast::RandomState::default)
}

/// The in-memory hash of (prefix, encoding), computed once per lookup and reused for the
/// shard choice and the shard's own table. Two writes rather than one over a joined buffer:
/// foldhash's short-input path takes the prefix cheaply, and joining them measured slower.
#[inline]
pub(crate) fn hash_parts(prefix: &str, encoding: &[u8]) -> u64 {
    let mut h = hasher().build_hasher();
    h.write(prefix.as_bytes());
    h.write(encoding);
    h.finish()
}

/// A local-tier key: prefix bytes followed by the encoding, and their in-memory hash.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LocalKey {
    hash: u64,
    bytes: Box<[u8]>,
    prefix_len: usize,
}

impl LocalKey {
    pub(crate) fn new(prefix: &str, encoding: &[u8]) -> Self {
        Self::with_hash(hash_parts(prefix, encoding), prefix, encoding)
    }

    pub(crate) fn with_hash(hash: u64, prefix: &str, encoding: &[u8]) -> Self {
        let mut v = Vec::with_capacity(prefix.len() + encoding.len());
        v.extend_from_slice(prefix.as_bytes());
        v.extend_from_slice(encoding);
        LocalKey { hash, bytes: v.into_boxed_slice(), prefix_len: prefix.len() }
    }

    pub(crate) fn encoding(&self) -> &[u8] {
        &self.bytes[self.prefix_len..]
    }

    /// The namespace: the prefix (`{namespace}:v{version}:`) up to its first `:` (a namespace
    /// never contains one).
    pub(crate) fn namespace(&self) -> &str {
        let prefix = self.bytes.get(..self.prefix_len).unwrap_or_default();
        let ns = prefix.split(|b| *b == b':').next().unwrap_or_default();
        std::str::from_utf8(ns).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Hash for LocalKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A borrowed lookup key, hashed exactly like [`LocalKey`].
pub(crate) struct LookupKey<'a> {
    pub(crate) hash: u64,
    pub(crate) prefix: &'a str,
    pub(crate) encoding: &'a [u8],
}

impl Hash for LookupKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<LocalKey> for LookupKey<'_> {
    fn equivalent(&self, key: &LocalKey) -> bool {
        key.hash == self.hash
            && key.prefix_len == self.prefix.len()
            && key.bytes.len() == self.prefix.len() + self.encoding.len()
            && key.bytes[..key.prefix_len] == *self.prefix.as_bytes()
            && key.bytes[key.prefix_len..] == *self.encoding
    }
}

/// One cached value of any type.
pub(crate) struct LocalEntry {
    pub(crate) value: Box<dyn Any + Send + Sync>,
    pub(crate) expires: Instant,
    /// When a caller should refresh early (XFetch, sampled once per entry in this process).
    pub(crate) refresh_at: Instant,
    /// Set by the one caller that takes on the early refresh.
    pub(crate) refreshing: AtomicBool,
    /// Approximate weight in bytes (the frame payload size when known).
    pub(crate) weight: u32,
    /// The entry's tags and the generation tokens it was stored with (`crate::tags`).
    pub(crate) tags: Option<Arc<crate::tags::stamp::Stamp>>,
    /// Its namespace's local-hit `metrics` handle (counted on every hit, no lookup).
    pub(crate) hit_metric: metrics::Counter,
}

impl LocalEntry {
    /// The value if it has type `V` and has not expired.
    #[inline]
    pub(crate) fn fresh<V: Clone + 'static>(&self, now: Instant) -> Option<V> {
        if now >= self.expires {
            return None;
        }
        self.value.downcast_ref::<V>().cloned()
    }

    /// True for exactly one caller once the early-refresh time has passed.
    #[inline]
    pub(crate) fn claim_refresh(&self, now: Instant) -> bool {
        now >= self.refresh_at && !self.refreshing.swap(true, Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct EntryWeighter {
    by_bytes: bool,
}

impl Weighter<LocalKey, Arc<LocalEntry>> for EntryWeighter {
    fn weight(&self, key: &LocalKey, val: &Arc<LocalEntry>) -> u64 {
        if self.by_bytes {
            // Key, value payload, and a fixed overhead for the entry itself.
            (key.len() as u64) + u64::from(val.weight) + 64
        } else {
            1
        }
    }
}

/// Randomly seeded per process: fine (and wanted) for a map that never leaves the process.
type Seeded = foldhash::fast::RandomState;

type Shard = quick_cache::unsync::Cache<LocalKey, Arc<LocalEntry>, EntryWeighter, Seeded>;

/// A shard's read lock. Poisoning is ignored, exactly as with the `parking_lot` locks used
/// here before (they have none): std's locks are as fast here and need no extra crates.
#[inline]
fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

/// A shard's write lock (see [`read`] on poisoning).
#[inline]
fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

/// A shard's generation, bumped (under the shard's write lock) by every change to the shard.
/// On its own cache line: readers load it on every front hit, writers of other shards never
/// touch it.
#[repr(align(128))]
struct Generation(AtomicU64);

/// Entries larger than this are not kept in the per-thread front (it must stay small).
const FRONT_MAX_WEIGHT: u32 = 4096;
/// Slots of the per-thread front (direct-mapped by hash).
const FRONT_SLOTS: usize = 16;

/// One slot of a thread's front: an entry this thread read recently, valid while its shard's
/// generation has not moved.
struct Slot {
    tier: u64,
    shard_gen: u64,
    key: LocalKey,
    entry: Arc<LocalEntry>,
}

thread_local! {
    static FRONT: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

static NEXT_TIER_ID: AtomicU64 = AtomicU64::new(1);

/// The in-process tier: quick_cache's CLOCK-Pro shards behind reader-writer locks, with a
/// tiny per-thread front.
///
/// quick_cache's own `sync::Cache` returns values by clone; a type-erased entry would then be
/// an `Arc` whose reference count every hit on a hot key increments and decrements, from
/// every thread. Here a hit is served, in order:
///
/// 1. from the calling thread's front (16 slots): compare the key, check that the shard's
///    generation has not changed since the slot was filled (one plain atomic load), read the
///    entry — no lock, no shared write, so threads hitting one key do not slow each other;
/// 2. else under the shard's read lock, which also fills the front slot.
///
/// Every insert or removal bumps its shard's generation, which invalidates the fronts' slots
/// for that shard, so a front never serves an entry that was replaced or removed before the
/// read began. Expiry is checked on the entry itself, as for the shard path.
pub(crate) struct LocalTier {
    id: u64,
    shards: Box<[RwLock<Shard>]>,
    gens: Box<[Generation]>,
    mask: u64,
    /// key text → local key, for entries whose key text is known (shared-tier traffic).
    by_text: QCache<Box<str>, LocalKey>,
}

impl LocalTier {
    /// A tier bounded by `capacity` entries, or by `capacity` bytes when `by_bytes`.
    pub(crate) fn new(capacity: u64, by_bytes: bool) -> Self {
        let capacity = capacity.max(1);
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        // Enough shards to spread writers, few enough that each still holds a useful share.
        let mut n = (cpus * 4).next_power_of_two().clamp(1, 64) as u64;
        while n > 1 && capacity / n < 32 {
            n /= 2;
        }
        let per_shard = capacity.div_ceil(n);
        let estimated_items = if by_bytes { (per_shard / 256).max(16) } else { per_shard };
        let estimated = usize::try_from(estimated_items).unwrap_or(usize::MAX);
        let hasher = Seeded::default();
        let shards = (0..n)
            .map(|_| {
                RwLock::new(Shard::with(
                    estimated,
                    per_shard,
                    EntryWeighter { by_bytes },
                    hasher.clone(),
                    Default::default(),
                ))
            })
            .collect();
        let text_cap =
            usize::try_from(if by_bytes { capacity / 256 } else { capacity }).unwrap_or(usize::MAX);
        let gens = (0..n).map(|_| Generation(AtomicU64::new(0))).collect();
        LocalTier {
            id: NEXT_TIER_ID.fetch_add(1, Ordering::Relaxed),
            shards,
            gens,
            mask: n - 1,
            by_text: QCache::new(text_cap.max(16)),
        }
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        // High bits: the shard's own table rehashes the u64 with its own seed.
        usize::try_from((hash >> 40) & self.mask).unwrap_or(0)
    }

    /// Runs `f` on the entry for (`prefix`, `encoding`) whose [`hash_parts`] is `hash`.
    #[inline]
    pub(crate) fn with_entry<R>(
        &self,
        hash: u64,
        prefix: &str,
        encoding: &[u8],
        mut f: impl FnMut(Option<&LocalEntry>) -> R,
    ) -> R {
        let q = LookupKey { hash, prefix, encoding };
        let si = self.shard_index(hash);
        let (Some(shard), Some(gen)) = (self.shards.get(si), self.gens.get(si)) else { return f(None) };
        let gen = gen.0.load(Ordering::Acquire);
        let slot_i = (hash as usize) & (FRONT_SLOTS - 1);
        // 1. The thread's front, in one thread-local access. A destroyed thread-local or a
        //    re-entrant call (a value's `Clone` that uses the cache) skips it.
        let mut out = None;
        let _ = FRONT.try_with(|fr| {
            let Ok(fr) = fr.try_borrow() else { return };
            if let Some(slot) = fr.get(slot_i).and_then(Option::as_ref) {
                if slot.tier == self.id && slot.shard_gen == gen && q.equivalent(&slot.key) {
                    out = Some(f(Some(&slot.entry)));
                }
            }
        });
        if let Some(r) = out {
            return r;
        }
        // 2. The shard.
        let guard = read(shard);
        let entry = guard.get(&q);
        if let Some(e) = entry.filter(|e| e.weight <= FRONT_MAX_WEIGHT) {
            let slot = Slot {
                tier: self.id,
                shard_gen: gen,
                key: LocalKey::with_hash(hash, prefix, encoding),
                entry: e.clone(),
            };
            let _ = FRONT.try_with(|fr| {
                if let Ok(mut fr) = fr.try_borrow_mut() {
                    if fr.len() < FRONT_SLOTS {
                        fr.resize_with(FRONT_SLOTS, || None);
                    }
                    if let Some(s) = fr.get_mut(slot_i) {
                        *s = Some(slot);
                    }
                }
            });
        }
        f(entry.map(|e| &**e))
    }

    pub(crate) fn insert(&self, key: LocalKey, key_text: Option<&str>, entry: LocalEntry) {
        if let Some(text) = key_text {
            self.by_text.insert(text.into(), key.clone());
        }
        let si = self.shard_index(key.hash);
        if let (Some(shard), Some(gen)) = (self.shards.get(si), self.gens.get(si)) {
            let mut w = write(shard);
            w.insert(key, Arc::new(entry));
            gen.0.fetch_add(1, Ordering::Release);
        }
    }

    pub(crate) fn remove(&self, key: &LocalKey) -> bool {
        let si = self.shard_index(key.hash);
        let (Some(shard), Some(gen)) = (self.shards.get(si), self.gens.get(si)) else { return false };
        let mut w = write(shard);
        let removed = w.remove(key).is_some();
        gen.0.fetch_add(1, Ordering::Release);
        removed
    }

    /// Drops the entry stored under `key_text`, if this tier knows it.
    pub(crate) fn remove_by_text(&self, key_text: &str) -> bool {
        match self.by_text.remove(key_text) {
            Some((_, key)) => self.remove(&key),
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    pub(crate) fn clear(&self) {
        for (s, g) in self.shards.iter().zip(self.gens.iter()) {
            let mut w = write(s);
            w.clear();
            g.0.fetch_add(1, Ordering::Release);
        }
        self.by_text.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(v: u64, ttl: Duration) -> LocalEntry {
        let now = now();
        LocalEntry {
            value: Box::new(v),
            expires: now + dur(ttl),
            refresh_at: now + dur(ttl),
            refreshing: AtomicBool::new(false),
            weight: 8,
            tags: None,
            hit_metric: metrics::Counter::noop(),
        }
    }

    #[test]
    fn lookup_by_parts_equals_owned_key() {
        let t = LocalTier::new(100, false);
        t.insert(LocalKey::new("a:v1:", b"xyz"), Some("a:v1:digest"), entry(5, Duration::from_secs(60)));
        let get = |p: &str, e: &[u8]| {
            t.with_entry(hash_parts(p, e), p, e, |x| x.and_then(|x| x.fresh::<u64>(now())))
        };
        assert_eq!(get("a:v1:", b"xyz"), Some(5));
        let h = hash_parts("a:v1:", b"xyz");
        assert_eq!(
            t.with_entry(h, "a:v1:", b"xyz", |x| x.and_then(|x| x.fresh::<u32>(now()))),
            None,
            "another type is a miss"
        );
        assert!(get("a:v1:", b"xy").is_none());
        assert!(get("a:v2:", b"xyz").is_none());
        assert!(get("a:v1:x", b"yz").is_none(), "prefix/encoding split matters");
        assert!(t.remove_by_text("a:v1:digest"));
        assert!(get("a:v1:", b"xyz").is_none());
        assert!(!t.remove_by_text("a:v1:digest"));
    }

    #[test]
    fn thread_front_never_serves_replaced_or_removed_entries() {
        let t = LocalTier::new(1000, false);
        let h = hash_parts("f:v1:", b"k");
        let read = |t: &LocalTier| t.with_entry(h, "f:v1:", b"k", |x| x.and_then(|x| x.fresh::<u64>(now())));
        t.insert(LocalKey::new("f:v1:", b"k"), None, entry(1, Duration::from_secs(60)));
        assert_eq!(read(&t), Some(1)); // fills this thread's front
        assert_eq!(read(&t), Some(1)); // served by the front
        t.insert(LocalKey::new("f:v1:", b"k"), None, entry(2, Duration::from_secs(60)));
        assert_eq!(read(&t), Some(2));
        assert!(t.remove(&LocalKey::new("f:v1:", b"k")));
        assert_eq!(read(&t), None);
        // Another tier with the same key never shares this thread's front slot.
        let other = LocalTier::new(1000, false);
        t.insert(LocalKey::new("f:v1:", b"k"), None, entry(3, Duration::from_secs(60)));
        assert_eq!(read(&t), Some(3));
        assert_eq!(read(&other), None);
        // Writes from another thread are seen by this thread's next read.
        for i in 10..200u64 {
            std::thread::scope(|s| {
                s.spawn(|| t.insert(LocalKey::new("f:v1:", b"k"), None, entry(i, Duration::from_secs(60))));
            });
            assert_eq!(read(&t), Some(i));
        }
        t.clear();
        assert_eq!(read(&t), None);
    }

    #[test]
    fn expired_entries_are_not_fresh() {
        let e = entry(1, Duration::from_millis(0));
        assert_eq!(e.fresh::<u64>(now() + dur(Duration::from_millis(20))), None);
    }

    #[test]
    fn bounded_by_entries() {
        let t = LocalTier::new(100, false);
        for i in 0..1000u32 {
            t.insert(LocalKey::new("a:v1:", &i.to_le_bytes()), None, entry(1, Duration::from_secs(60)));
        }
        assert!(t.len() <= 110 && t.len() >= 50, "len {}", t.len());
    }

    #[test]
    fn early_refresh_is_claimed_once() {
        let mut e = entry(1, Duration::from_secs(60));
        e.refresh_at = now();
        let t = now();
        assert!(e.claim_refresh(t));
        assert!(!e.claim_refresh(t));
    }
}
