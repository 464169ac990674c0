//! The data-key caches: encrypt side (one active data key per partition, exact usage limits,
//! single-flight generation, refresh ahead of expiry) and decrypt side (opened data keys by
//! digest, TTL and capacity, single-flight).
//!
//! Why the seed's bug cannot happen here: key material is a [`KeyMaterial`] built once from a
//! data key and never mutated afterwards; threads share it through `Arc` and only ever take
//! `&` references to it. There is no buffer with a position, no `clear()`, no mutable view.
//! The only shared mutable state is usage counters (atomics) and the `Option<Arc<..>>` slots
//! that say which key is current (short locks, never held around crypto or `.await`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock;

use futures_util::future::{FutureExt, Shared};
use sha2::{Digest, Sha256};

use crate::cost::Counters;
use crate::crypto::{KeyMaterial, COMMITMENT_LEN};
use crate::format;
use crate::keyring::{BoxFuture, EncryptedDataKey, GeneratedKey, Keyring};
use crate::multi::Wrapping;
use crate::{EncryptionContext, EnvelopeError};
// std's primitives, or loom's under `--cfg larder_loom` (model checking, docs/reliability.md).
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The largest `max_messages` accepted: 2^32 messages per data key, the NIST SP 800-38D bound
/// for random 96-bit nonces (collision probability ≤ 2^-32).
pub const HARD_MAX_MESSAGES: u64 = 1 << 32;
/// The longest max age or TTL accepted (one year); longer values are clamped so that
/// clock arithmetic cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// AES-GCM's per-message limit (2^36 − 32 bytes).
const GCM_MAX_PLAINTEXT: u64 = (1 << 36) - 32;

/// When a cached data key is retired: at whichever limit comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKeyLimits {
    /// Maximum time since the data key was generated. Default 5 minutes.
    pub max_age: Duration,
    /// Maximum number of ciphertexts made with one data key. Default 2^20; clamped to
    /// `1..=2^32`.
    pub max_messages: u64,
    /// Maximum plaintext bytes encrypted with one data key. Default 2^32.
    pub max_bytes: u64,
}

impl Default for DataKeyLimits {
    fn default() -> Self {
        DataKeyLimits { max_age: Duration::from_secs(300), max_messages: 1 << 20, max_bytes: 1 << 32 }
    }
}

impl DataKeyLimits {
    pub(crate) fn clamped(self) -> Self {
        DataKeyLimits {
            max_age: self.max_age.clamp(Duration::from_millis(1), MAX_DURATION),
            max_messages: self.max_messages.clamp(1, HARD_MAX_MESSAGES),
            max_bytes: self.max_bytes.max(1),
        }
    }
}

/// The longest time before expiry at which a replacement key is generated: a keyring call
/// takes milliseconds, so refreshing earlier than this would only shorten key lifetimes.
pub const MAX_REFRESH_LEAD: Duration = Duration::from_secs(30);

/// How long before `max_age` the refresh starts: `(1 − fraction) × max_age`, at most
/// [`MAX_REFRESH_LEAD`].
fn refresh_lead(max_age: Duration, refresh_fraction: f64) -> Duration {
    max_age.mul_f64((1.0 - refresh_fraction).clamp(0.0, 1.0)).min(MAX_REFRESH_LEAD)
}

/// A SHA-256 digest naming an (EDK, context) pair (the decrypt side's single-flight key).
pub(crate) type EdkDigest = [u8; 32];

/// `SHA-256(edk_fields || canonical context)`; both parts are self-delimiting, so the input is
/// an injective encoding of (keyring kind, key id, EDK bytes, context).
pub(crate) fn edk_digest(edk_fields: &[u8], ctx_bytes: &[u8]) -> EdkDigest {
    let mut h = Sha256::new();
    h.update(edk_fields);
    h.update(ctx_bytes);
    h.finalize().into()
}

/// A data key in use on the encrypt side, with its precomputed header and usage counters.
pub(crate) struct ActiveKey {
    pub(crate) material: Arc<KeyMaterial>,
    /// `header || canonical context` — the AAD; the header is its first `header_len` bytes.
    pub(crate) aad: Vec<u8>,
    pub(crate) header_len: usize,
    /// Deadlines on [`clock::now`]'s scale.
    expires: Duration,
    refresh_at: Duration,
    messages: AtomicU64,
    bytes: AtomicU64,
    max_messages: u64,
    max_bytes: u64,
    refresh_messages: u64,
    refresh_bytes: u64,
    refresh_claimed: AtomicBool,
    /// Set by the first caller that finds the key exhausted, so the limit is reported once.
    retired: AtomicBool,
    /// The [`larder_fork::generation`] the key was made in: in a forked child it differs, and
    /// the key (with its usage counters, which the parent keeps using) is never used to
    /// encrypt there. Decrypting with it stays fine (the decrypt cache keeps it).
    generation: u64,
}

pub(crate) enum Reservation {
    /// The caller may make one ciphertext; `refresh` asks it to start the refresh flight.
    Granted {
        refresh: bool,
    },
    Exhausted,
}

impl ActiveKey {
    /// A key of any format version: `prefix` is the header without the commitment
    /// ([`format::key_prefix`]); header and AAD are laid out by [`format::header_and_aad`].
    pub(crate) fn from_prefix(
        material: Arc<KeyMaterial>,
        prefix: &[u8],
        ctx_bytes: &[u8],
        limits: &DataKeyLimits,
        refresh_fraction: f64,
        now: Duration,
    ) -> Self {
        let (aad, header_len) = format::header_and_aad(prefix, material.commitment(), ctx_bytes);
        let refresh_messages = ((limits.max_messages as f64) * refresh_fraction).ceil() as u64;
        ActiveKey {
            material,
            aad,
            header_len,
            expires: now.saturating_add(limits.max_age),
            refresh_at: now
                .saturating_add(limits.max_age)
                .saturating_sub(refresh_lead(limits.max_age, refresh_fraction)),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            max_messages: limits.max_messages,
            max_bytes: limits.max_bytes,
            refresh_messages: refresh_messages.clamp(1, limits.max_messages),
            refresh_bytes: ((limits.max_bytes as f64) * refresh_fraction) as u64,
            refresh_claimed: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            generation: larder_fork::generation(),
        }
    }

    pub(crate) fn header(&self) -> &[u8] {
        self.aad.get(..self.header_len).unwrap_or(&[])
    }

    /// Reserves one message of `len` bytes. Exact under any concurrency: the message counter
    /// only grants the first `max_messages` increments, the byte budget is a CAS loop.
    pub(crate) fn reserve(&self, len: u64, now: Duration) -> Reservation {
        if self.generation != larder_fork::generation() {
            return self.retire("fork");
        }
        if now >= self.expires {
            return self.retire("age");
        }
        let mut cur = self.bytes.load(Ordering::Relaxed);
        let bytes_after = loop {
            let Some(next) = cur.checked_add(len).filter(|n| *n <= self.max_bytes) else {
                return self.retire("bytes");
            };
            match self.bytes.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(seen) => cur = seen,
            }
        };
        // Granted bytes of a refused message are simply never used: limits are upper bounds.
        let prev = self.messages.fetch_add(1, Ordering::Relaxed);
        if prev >= self.max_messages {
            return self.retire("messages");
        }
        let near_end =
            prev + 1 >= self.refresh_messages || bytes_after >= self.refresh_bytes || now >= self.refresh_at;
        let refresh = near_end
            && !self.refresh_claimed.load(Ordering::Relaxed)
            && !self.refresh_claimed.swap(true, Ordering::AcqRel);
        Reservation::Granted { refresh }
    }

    /// [`Reservation::Exhausted`], reporting the limit the first time this key reaches one
    /// (metric `larder_envelope_data_key_retired_total`, an info event; no key material).
    #[cold]
    fn retire(&self, limit: &'static str) -> Reservation {
        if !self.retired.swap(true, Ordering::Relaxed) {
            metrics::counter!("larder_envelope_data_key_retired_total", "limit" => limit).increment(1);
            tracing::info!(target: "larder_envelope", limit, "data key retired: limit reached");
        }
        Reservation::Exhausted
    }

    /// True while the key can still serve some message.
    pub(crate) fn usable(&self, now: Duration) -> bool {
        now < self.expires
            && self.generation == larder_fork::generation()
            && self.messages.load(Ordering::Relaxed) < self.max_messages
            && self.bytes.load(Ordering::Relaxed) < self.max_bytes
    }
}

type KeyResult = Result<Arc<ActiveKey>, EnvelopeError>;
type KeyFlight = Shared<BoxFuture<'static, KeyResult>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlightKind {
    /// Started because a caller had no usable key: the result becomes the active key.
    Replace,
    /// Started ahead of expiry: the result waits as standby while the active key is usable.
    Refresh,
}

struct Flight {
    id: u64,
    shared: KeyFlight,
    /// A flight inherited through `fork()` is driven by a thread (and maybe a runtime) that
    /// does not exist in the child, and its key would be the parent's: the child ignores it.
    generation: u64,
}

impl Flight {
    fn current(&self) -> bool {
        self.generation == larder_fork::generation()
    }
}

#[derive(Default)]
struct Slot {
    standby: Option<Arc<ActiveKey>>,
    flight: Option<Flight>,
}

/// One encrypt-side partition: (keyring primary key id, canonical context).
pub(crate) struct Partition {
    primary: String,
    context: EncryptionContext,
    ctx_bytes: Vec<u8>,
    /// The key the fast path uses. Lock order: `slot` before `active`.
    active: RwLock<Option<Arc<ActiveKey>>>,
    slot: Mutex<Slot>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks cannot leave the data inconsistent (every
    // critical section is a few field assignments), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    pub(crate) fn active(&self) -> Option<Arc<ActiveKey>> {
        read(&self.active).clone()
    }

    /// Called once by a finished flight (inside the shared future, so exactly once).
    fn finish(&self, id: u64, kind: FlightKind, result: &KeyResult) {
        let mut slot = lock(&self.slot);
        if slot.flight.as_ref().is_some_and(|f| f.id == id && f.current()) {
            slot.flight = None;
        }
        let Ok(key) = result else { return };
        let now = clock::now();
        let mut active = write(&self.active);
        let keep_current = kind == FlightKind::Refresh && active.as_ref().is_some_and(|a| a.usable(now));
        if keep_current {
            slot.standby = Some(key.clone());
        } else {
            *active = Some(key.clone());
        }
    }
}

/// Shared configuration and state of the encrypt-side cache.
pub(crate) struct EncryptCache {
    keyring: Arc<dyn Keyring>,
    /// Keyrings that also wrap every new data key, and the format version written.
    wrapping: Arc<Wrapping>,
    limits: DataKeyLimits,
    refresh_fraction: f64,
    max_partitions: usize,
    partitions: RwLock<HashMap<Vec<u8>, Arc<Partition>>>,
    next_flight: AtomicU64,
    counters: Arc<Counters>,
    decrypt_cache: Option<Arc<DecryptCache>>,
}

/// Builds an [`ActiveKey`] from a generated key and seeds the decrypt cache with it, so the
/// process that encrypted never asks the keyring to open its own EDK.
fn activate(
    (generated, extra): (GeneratedKey, Vec<EncryptedDataKey>),
    version: u8,
    ctx_bytes: &[u8],
    limits: &DataKeyLimits,
    refresh_fraction: f64,
    decrypt_cache: Option<&DecryptCache>,
) -> KeyResult {
    let material = Arc::new(KeyMaterial::derive(&generated.plaintext)?);
    drop(generated.plaintext);
    let mut edks = Vec::with_capacity(1 + extra.len());
    edks.push(generated.edk);
    edks.extend(extra);
    // Version, algorithm and EDK fields: the header without the commitment, and the decrypt
    // cache's name for this data key (what `format::parse` calls `edk_fields`).
    let prefix = format::key_prefix(version, &edks)?;
    if let Some(dc) = decrypt_cache {
        dc.insert(material.clone(), &prefix, ctx_bytes);
    }
    Ok(Arc::new(ActiveKey::from_prefix(material, &prefix, ctx_bytes, limits, refresh_fraction, clock::now())))
}

impl EncryptCache {
    pub(crate) fn new(
        keyring: Arc<dyn Keyring>,
        wrapping: Arc<Wrapping>,
        limits: DataKeyLimits,
        refresh_fraction: f64,
        max_partitions: usize,
        counters: Arc<Counters>,
        decrypt_cache: Option<Arc<DecryptCache>>,
    ) -> Self {
        EncryptCache {
            keyring,
            wrapping,
            limits: limits.clamped(),
            refresh_fraction: if refresh_fraction.is_finite() {
                refresh_fraction.clamp(0.05, 1.0)
            } else {
                0.75
            },
            max_partitions: max_partitions.max(1),
            partitions: RwLock::new(HashMap::new()),
            next_flight: AtomicU64::new(1),
            counters,
            decrypt_cache,
        }
    }

    pub(crate) fn limits(&self) -> &DataKeyLimits {
        &self.limits
    }

    /// The partition for `context` under the keyring's current primary key. The map is keyed
    /// by the canonical context; a partition made under another primary key (the keyring was
    /// rotated) is replaced, so new data keys come from the new primary.
    pub(crate) fn partition(&self, context: &EncryptionContext) -> Result<Arc<Partition>, EnvelopeError> {
        let ctx_bytes = context.canonical()?;
        let primary = self.keyring.primary_key_id();
        if let Some(p) = read(&self.partitions).get(ctx_bytes) {
            if p.primary == primary {
                return Ok(p.clone());
            }
        }
        let mut map = write(&self.partitions);
        if let Some(p) = map.get(ctx_bytes) {
            if p.primary == primary {
                return Ok(p.clone());
            }
        }
        if map.len() >= self.max_partitions && !map.contains_key(ctx_bytes) {
            // Drop partitions that hold no usable key and no flight; if still full, drop all
            // idle ones. Dropped partitions only cost a new data key if their context returns.
            let now = clock::now();
            map.retain(|_, p| {
                Arc::strong_count(p) > 1
                    || lock(&p.slot).flight.is_some()
                    || read(&p.active).as_ref().is_some_and(|a| a.usable(now))
            });
            if map.len() >= self.max_partitions {
                map.retain(|_, p| Arc::strong_count(p) > 1);
            }
        }
        let p = Arc::new(Partition {
            primary,
            context: context.clone(),
            ctx_bytes: ctx_bytes.to_vec(),
            active: RwLock::new(None),
            slot: Mutex::new(Slot::default()),
        });
        map.insert(ctx_bytes.to_vec(), p.clone());
        Ok(p)
    }

    fn new_flight(&self, part: &Arc<Partition>, kind: FlightKind) -> Flight {
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Partition> = Arc::downgrade(part);
        let keyring = self.keyring.clone();
        let wrapping = self.wrapping.clone();
        let context = part.context.clone();
        let ctx_bytes = part.ctx_bytes.clone();
        let limits = self.limits;
        let refresh_fraction = self.refresh_fraction;
        let counters = self.counters.clone();
        let decrypt_cache = self.decrypt_cache.clone();
        let fut: BoxFuture<'static, KeyResult> = Box::pin(async move {
            // A panicking keyring must not poison the shared flight for every later caller:
            // the panic becomes an error for this flight's waiters (crate::guard), and the next
            // caller retries. One call per keyring: the primary generates, each extra keyring
            // wraps (v2).
            let result =
                crate::multi::generate(&keyring, &wrapping, &context, &counters).await.and_then(|g| {
                    activate(
                        g,
                        wrapping.version,
                        &ctx_bytes,
                        &limits,
                        refresh_fraction,
                        decrypt_cache.as_deref(),
                    )
                });
            if let Some(part) = weak.upgrade() {
                part.finish(id, kind, &result);
            }
            result
        });
        Flight { id, shared: fut.shared(), generation: larder_fork::generation() }
    }

    /// Slow path: a usable key for `part`, other than `stale` (a key that just refused the
    /// caller). Joins the flight in progress or starts one; exactly one keyring call per flight.
    /// The flag says whether the caller had to wait for a flight (a cache miss) rather than
    /// finding a replacement ready (a standby key generated ahead of time).
    pub(crate) async fn acquire(
        &self,
        part: &Arc<Partition>,
        stale: Option<&Arc<ActiveKey>>,
    ) -> Result<(Arc<ActiveKey>, bool), EnvelopeError> {
        let flight = {
            let mut slot = lock(&part.slot);
            let now = clock::now();
            let not_stale = |k: &Arc<ActiveKey>| stale.is_none_or(|s| !Arc::ptr_eq(s, k));
            if let Some(a) = read(&part.active).as_ref() {
                if not_stale(a) && a.usable(now) {
                    return Ok((a.clone(), false));
                }
            }
            if let Some(sb) = slot.standby.take() {
                if not_stale(&sb) && sb.usable(now) {
                    *write(&part.active) = Some(sb.clone());
                    return Ok((sb, false));
                }
            }
            match &slot.flight {
                Some(f) if f.current() => f.shared.clone(),
                _ => {
                    let f = self.new_flight(part, FlightKind::Replace);
                    let shared = f.shared.clone();
                    slot.flight = Some(f);
                    shared
                }
            }
        };
        Ok((flight.await?, true))
    }

    /// Starts a refresh flight ahead of expiry unless one is running or a standby key waits.
    /// With a Tokio runtime the flight runs as a background task and nobody waits; without one
    /// the returned future must be awaited by the caller that claimed the refresh (after it
    /// has made its own ciphertext), so other callers are still not blocked.
    pub(crate) fn start_refresh(&self, part: &Arc<Partition>) -> Option<impl Future<Output = ()> + Send> {
        let shared = {
            let mut slot = lock(&part.slot);
            if slot.flight.as_ref().is_some_and(Flight::current)
                || slot.standby.as_ref().is_some_and(|s| s.usable(clock::now()))
            {
                return None;
            }
            let f = self.new_flight(part, FlightKind::Refresh);
            let shared = f.shared.clone();
            slot.flight = Some(f);
            shared
        };
        let fut = async move {
            let _ = shared.await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                drop(handle.spawn(fut));
                None
            }
            Err(_) => Some(fut),
        }
    }

    /// No-cache mode helper: one fresh data key for one message.
    pub(crate) async fn one_shot(&self, context: &EncryptionContext) -> KeyResult {
        let g = crate::multi::generate(&self.keyring, &self.wrapping, context, &self.counters).await?;
        let limits = DataKeyLimits { max_messages: 1, ..self.limits };
        activate(g, self.wrapping.version, context.canonical()?, &limits, 1.0, None)
    }

    pub(crate) fn max_plaintext(&self) -> u64 {
        self.limits.max_bytes.min(GCM_MAX_PLAINTEXT)
    }
}

type MaterialResult = Result<Arc<KeyMaterial>, EnvelopeError>;
type MaterialFlight = Shared<BoxFuture<'static, MaterialResult>>;

/// How long a failed keyring open of one (EDK fields, context) is remembered: a ciphertext
/// with a bogus EDK, decrypted again and again, costs one keyring (KMS) call per window.
pub const NEGATIVE_DECRYPT_TTL: Duration = Duration::from_secs(2);
/// The most failed opens remembered at once (beyond it, expired ones are dropped, then all).
pub const NEGATIVE_DECRYPT_CAPACITY: usize = 1024;

/// Failures worth remembering: the keyring looked at this EDK under this context and said no.
/// Transient failures (KMS unreachable, throttled, a generic keyring error) are not
/// remembered, so a recovered KMS is used at once.
fn remember_failure(e: &EnvelopeError) -> bool {
    matches!(
        e,
        EnvelopeError::InvalidEncryptedDataKey(_)
            | EnvelopeError::UnknownKeyId(_)
            | EnvelopeError::UnsupportedKeyring(_)
            | EnvelopeError::AccessDenied(_)
            | EnvelopeError::KeyNotFound(_)
    )
}

struct DecryptEntry {
    material: Arc<KeyMaterial>,
    edk_fields: Box<[u8]>,
    ctx_bytes: Box<[u8]>,
    expires: Duration,
    /// Insertion order (the coarse clock ties), for evicting the oldest.
    seq: u64,
}

/// Decrypt side: opened data keys with TTL and a capacity bound.
///
/// An entry is found through the data key's commitment (which every ciphertext carries, so the
/// lookup hashes 32 bytes instead of the whole EDK) and is used only if the ciphertext's EDK
/// fields (keyring kind, key id, EDK) and the caller's canonical context are byte-for-byte the
/// ones the keyring opened: a ciphertext never gets a cached key the keyring would not have
/// given it. Concurrent misses on the same (EDK, context) share one keyring call, keyed by
/// [`edk_digest`].
pub(crate) struct DecryptCache {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<[u8; COMMITMENT_LEN], DecryptEntry>>,
    next_seq: AtomicU64,
    /// In-progress opens with the fork generation that started them (an inherited flight is
    /// ignored in a child: nothing there drives it).
    flights: Mutex<HashMap<EdkDigest, (u64, MaterialFlight)>>,
    /// Recent definitive keyring refusals: (expiry, error) by [`edk_digest`].
    failures: Mutex<HashMap<EdkDigest, (Duration, EnvelopeError)>>,
}

impl DecryptCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        DecryptCache {
            ttl: ttl.clamp(Duration::from_millis(1), MAX_DURATION),
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The remembered refusal of this (EDK, context), if it is recent.
    fn failed(&self, digest: &EdkDigest) -> Option<EnvelopeError> {
        let map = lock(&self.failures);
        map.get(digest).filter(|(expires, _)| clock::now() < *expires).map(|(_, e)| e.clone())
    }

    fn remember(&self, digest: EdkDigest, e: &EnvelopeError) {
        let now = clock::now();
        let mut map = lock(&self.failures);
        if map.len() >= NEGATIVE_DECRYPT_CAPACITY && !map.contains_key(&digest) {
            map.retain(|_, (expires, _)| *expires > now);
            if map.len() >= NEGATIVE_DECRYPT_CAPACITY {
                map.clear();
            }
        }
        map.insert(digest, (now.saturating_add(NEGATIVE_DECRYPT_TTL), e.clone()));
    }

    pub(crate) fn get(
        &self,
        commitment: &[u8],
        edk_fields: &[u8],
        ctx_bytes: &[u8],
    ) -> Option<Arc<KeyMaterial>> {
        let commitment: &[u8; COMMITMENT_LEN] = commitment.try_into().ok()?;
        let map = read(&self.entries);
        let e = map.get(commitment)?;
        (*e.edk_fields == *edk_fields && *e.ctx_bytes == *ctx_bytes && clock::now() < e.expires)
            .then(|| e.material.clone())
    }

    pub(crate) fn insert(&self, material: Arc<KeyMaterial>, edk_fields: &[u8], ctx_bytes: &[u8]) {
        let now = clock::now();
        let key = *material.commitment();
        let mut map = write(&self.entries);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.capacity {
                // Evict the oldest eighth (at least one) in one pass.
                let mut by_age: Vec<(u64, [u8; COMMITMENT_LEN])> =
                    map.iter().map(|(k, e)| (e.seq, *k)).collect();
                let n = (self.capacity / 8).max(1).min(by_age.len());
                if n > 0 && n < by_age.len() {
                    by_age.select_nth_unstable(n - 1);
                }
                for (_, k) in by_age.iter().take(n) {
                    map.remove(k);
                }
            }
        }
        map.insert(
            key,
            DecryptEntry {
                material,
                edk_fields: edk_fields.into(),
                ctx_bytes: ctx_bytes.into(),
                expires: now.saturating_add(self.ttl),
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            },
        );
    }

    /// Single-flight open: concurrent callers with the same (EDK fields, context) share one
    /// keyring call; its result (or error) goes to all of them.
    pub(crate) async fn open_shared(
        self: &Arc<Self>,
        commitment: &[u8],
        edk_fields: &[u8],
        ctx_bytes: &[u8],
        make: impl FnOnce() -> BoxFuture<'static, MaterialResult>,
    ) -> MaterialResult {
        let digest = edk_digest(edk_fields, ctx_bytes);
        if let Some(e) = self.failed(&digest) {
            return Err(e);
        }
        let shared = {
            let mut flights = lock(&self.flights);
            match flights.get(&digest) {
                Some((generation, f)) if *generation == larder_fork::generation() => f.clone(),
                _ => {
                    // Look again under the flight lock: a flight that finished after the
                    // caller's first look stored its key before leaving the map (it inserts,
                    // then removes itself under this lock), so it is found here instead of
                    // starting a second keyring call. (Found by the loom model
                    // `cold_decrypts_share_one_keyring_call`, docs/reliability.md.)
                    if let Some(m) = self.get(commitment, edk_fields, ctx_bytes) {
                        return Ok(m);
                    }
                    // Likewise a flight that just failed remembered its refusal before leaving.
                    if let Some(e) = self.failed(&digest) {
                        return Err(e);
                    }
                    self.start_flight(&mut flights, digest, edk_fields, ctx_bytes, make)
                }
            }
        };
        shared.await
    }

    fn start_flight(
        self: &Arc<Self>,
        flights: &mut HashMap<EdkDigest, (u64, MaterialFlight)>,
        digest: EdkDigest,
        edk_fields: &[u8],
        ctx_bytes: &[u8],
        make: impl FnOnce() -> BoxFuture<'static, MaterialResult>,
    ) -> MaterialFlight {
        let inner = make();
        let me = Arc::downgrade(self);
        let (edk_fields, ctx_bytes) = (edk_fields.to_vec(), ctx_bytes.to_vec());
        let fut: BoxFuture<'static, MaterialResult> = Box::pin(async move {
            let result = inner.await;
            if let Some(me) = me.upgrade() {
                match &result {
                    Ok(m) => me.insert(m.clone(), &edk_fields, &ctx_bytes),
                    Err(e) if remember_failure(e) => me.remember(digest, e),
                    Err(_) => {}
                }
                lock(&me.flights).remove(&digest);
            }
            result
        });
        let shared = fut.shared();
        flights.insert(digest, (larder_fork::generation(), shared.clone()));
        shared
    }
}
