//! The in-process tier: a bounded quick_cache keyed by the canonical encoding.
//!
//! A local hit never computes the keyed BLAKE3 digest: entries are keyed by
//! `{namespace}:v{version}:` followed by the argument's canonical encoding, hashed with an
//! in-process, randomly seeded hasher (foldhash). That hash never leaves the process, so the
//! per-process seed that breaks shared caches is harmless (and helpful against flooding) here.
//! Entries that came from, or went to, the shared tier also record their key text, so an
//! invalidation published by another process (which only knows the key text) can find them.

use std::any::Any;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use parking_lot::RwLock;

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
/// shard choice and the shard's own table.
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

impl Weighter<LocalKey, LocalEntry> for EntryWeighter {
    fn weight(&self, key: &LocalKey, val: &LocalEntry) -> u64 {
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

type Shard = quick_cache::unsync::Cache<LocalKey, LocalEntry, EntryWeighter, Seeded>;

/// The in-process tier: quick_cache's CLOCK-Pro shards behind reader-writer locks.
///
/// quick_cache's own `sync::Cache` returns values by clone; a type-erased entry would then be
/// an `Arc` whose reference count two threads hitting one key fight over. Here a hit reads
/// the entry under a shard read lock and clones only the caller's value.
pub(crate) struct LocalTier {
    shards: Box<[RwLock<Shard>]>,
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
        LocalTier { shards, mask: n - 1, by_text: QCache::new(text_cap.max(16)) }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // High bits: the shard's own table rehashes the u64 with its own seed.
        let i = usize::try_from((hash >> 40) & self.mask).unwrap_or(0);
        &self.shards[i]
    }

    /// Runs `f` on the entry for (`prefix`, `encoding`) whose [`hash_parts`] is `hash`, under
    /// the shard's read lock.
    #[inline]
    pub(crate) fn with_entry<R>(
        &self,
        hash: u64,
        prefix: &str,
        encoding: &[u8],
        f: impl FnOnce(Option<&LocalEntry>) -> R,
    ) -> R {
        let q = LookupKey { hash, prefix, encoding };
        let shard = self.shard(hash).read();
        f(shard.get(&q))
    }

    pub(crate) fn insert(&self, key: LocalKey, key_text: Option<&str>, entry: LocalEntry) {
        if let Some(text) = key_text {
            self.by_text.insert(text.into(), key.clone());
        }
        self.shard(key.hash).write().insert(key, entry);
    }

    pub(crate) fn remove(&self, key: &LocalKey) -> bool {
        let removed = self.shard(key.hash).write().remove(key);
        removed.is_some()
    }

    /// Drops the entry stored under `key_text`, if this tier knows it.
    pub(crate) fn remove_by_text(&self, key_text: &str) -> bool {
        match self.by_text.remove(key_text) {
            Some((_, key)) => self.remove(&key),
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub(crate) fn clear(&self) {
        for s in self.shards.iter() {
            s.write().clear();
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
