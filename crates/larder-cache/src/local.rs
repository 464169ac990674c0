//! The in-process tier: a bounded quick_cache keyed by the canonical encoding.
//!
//! A local hit never computes the keyed BLAKE3 digest: entries are keyed by
//! `{namespace}:v{version}:` followed by the argument's canonical encoding, hashed with an
//! in-process, randomly seeded hasher (foldhash). That hash never leaves the process, so the
//! per-process seed that breaks shared caches is harmless (and helpful against flooding) here.
//! Entries that came from, or went to, the shared tier also record their key text, so an
//! invalidation published by another process (which only knows the key text) can find them.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use quick_cache::sync::Cache as QCache;
use quick_cache::{Equivalent, Weighter};

/// A local-tier key: prefix bytes followed by the encoding.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LocalKey {
    bytes: Box<[u8]>,
    prefix_len: usize,
}

impl LocalKey {
    pub(crate) fn new(prefix: &str, encoding: &[u8]) -> Self {
        let mut v = Vec::with_capacity(prefix.len() + encoding.len());
        v.extend_from_slice(prefix.as_bytes());
        v.extend_from_slice(encoding);
        LocalKey { bytes: v.into_boxed_slice(), prefix_len: prefix.len() }
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
        let (p, e) = self.bytes.split_at(self.prefix_len);
        state.write(p);
        state.write(e);
    }
}

/// A borrowed lookup key, hashed exactly like [`LocalKey`].
pub(crate) struct LookupKey<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) encoding: &'a [u8],
}

impl Hash for LookupKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.prefix.as_bytes());
        state.write(self.encoding);
    }
}

impl Equivalent<LocalKey> for LookupKey<'_> {
    fn equivalent(&self, key: &LocalKey) -> bool {
        key.prefix_len == self.prefix.len()
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

type Store = QCache<LocalKey, Arc<LocalEntry>, EntryWeighter, Seeded>;

/// The in-process tier.
pub(crate) struct LocalTier {
    store: Store,
    /// key text → local key, for entries whose key text is known (shared-tier traffic).
    by_text: QCache<Box<str>, LocalKey>,
}

impl LocalTier {
    /// A tier bounded by `capacity` entries, or by `capacity` bytes when `by_bytes`.
    pub(crate) fn new(capacity: u64, by_bytes: bool) -> Self {
        let capacity = capacity.max(1);
        let estimated_items = if by_bytes { (capacity / 256).max(16) } else { capacity };
        let estimated = usize::try_from(estimated_items).unwrap_or(usize::MAX);
        let store = QCache::with(
            estimated,
            capacity,
            EntryWeighter { by_bytes },
            Seeded::default(),
            Default::default(),
        );
        LocalTier { store, by_text: QCache::new(estimated.max(16)) }
    }

    #[inline]
    pub(crate) fn get(&self, prefix: &str, encoding: &[u8]) -> Option<Arc<LocalEntry>> {
        self.store.get(&LookupKey { prefix, encoding })
    }

    pub(crate) fn insert(&self, key: LocalKey, key_text: Option<&str>, entry: LocalEntry) {
        if let Some(text) = key_text {
            self.by_text.insert(text.into(), key.clone());
        }
        self.store.insert(key, Arc::new(entry));
    }

    pub(crate) fn remove(&self, key: &LocalKey) {
        self.store.remove(key);
    }

    /// Drops the entry stored under `key_text`, if this tier knows it.
    pub(crate) fn remove_by_text(&self, key_text: &str) -> bool {
        match self.by_text.remove(key_text) {
            Some((_, key)) => self.store.remove(&key).is_some(),
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.store.len()
    }

    pub(crate) fn clear(&self) {
        self.store.clear();
        self.by_text.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(v: u64, ttl: Duration) -> LocalEntry {
        let now = Instant::now();
        LocalEntry {
            value: Box::new(v),
            expires: now + ttl,
            refresh_at: now + ttl,
            refreshing: AtomicBool::new(false),
            weight: 8,
        }
    }

    #[test]
    fn lookup_by_parts_equals_owned_key() {
        let t = LocalTier::new(100, false);
        t.insert(LocalKey::new("a:v1:", b"xyz"), Some("a:v1:digest"), entry(5, Duration::from_secs(60)));
        let e = t.get("a:v1:", b"xyz").unwrap();
        assert_eq!(e.fresh::<u64>(Instant::now()), Some(5));
        assert_eq!(e.fresh::<u32>(Instant::now()), None, "another type is a miss");
        assert!(t.get("a:v1:", b"xy").is_none());
        assert!(t.get("a:v2:", b"xyz").is_none());
        assert!(t.get("a:v1:x", b"yz").is_none(), "prefix/encoding split matters");
        assert!(t.remove_by_text("a:v1:digest"));
        assert!(t.get("a:v1:", b"xyz").is_none());
        assert!(!t.remove_by_text("a:v1:digest"));
    }

    #[test]
    fn expired_entries_are_not_fresh() {
        let e = entry(1, Duration::from_millis(0));
        assert_eq!(e.fresh::<u64>(Instant::now() + Duration::from_millis(1)), None);
    }

    #[test]
    fn bounded_by_entries() {
        let t = LocalTier::new(100, false);
        for i in 0..1000u32 {
            t.insert(LocalKey::new("a:v1:", &i.to_le_bytes()), None, entry(1, Duration::from_secs(60)));
        }
        assert!(t.len() <= 110, "len {}", t.len());
    }

    #[test]
    fn early_refresh_is_claimed_once() {
        let mut e = entry(1, Duration::from_secs(60));
        e.refresh_at = Instant::now();
        let now = Instant::now();
        assert!(e.claim_refresh(now));
        assert!(!e.claim_refresh(now));
    }
}
