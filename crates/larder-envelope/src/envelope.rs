//! [`Envelope`]: what users call — encrypt and decrypt fields with cached data keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::cache::{ActiveKey, DataKeyLimits, DecryptCache, EncryptCache, Reservation};
use crate::cost::{Counters, EnvelopeStats};
use crate::crypto::{random_nonce, KeyMaterial};
use crate::format::{self, HeaderInfo};
use crate::keyring::{BoxFuture, EncryptedDataKey, Keyring};
use crate::multi::Wrapping;
use crate::{EncryptionContext, EnvelopeError};

/// Default time an opened data key stays in the decrypt cache.
pub const DEFAULT_DECRYPT_TTL: Duration = Duration::from_secs(300);
/// Default number of opened data keys the decrypt cache holds.
pub const DEFAULT_DECRYPT_CAPACITY: usize = 10_000;
/// Default number of encrypt-side partitions (distinct contexts) kept.
pub const DEFAULT_MAX_PARTITIONS: usize = 10_000;

/// Configures an [`Envelope`]. Made by [`Envelope::builder`].
#[must_use]
pub struct EnvelopeBuilder {
    keyring: Arc<dyn Keyring>,
    /// Keyrings that also wrap every new data key (format v2), in EDK order.
    extra: Vec<Arc<dyn Keyring>>,
    /// Keyrings only tried to decrypt, after the others.
    decrypt_only: Vec<Arc<dyn Keyring>>,
    v2: bool,
    limits: DataKeyLimits,
    decrypt_ttl: Duration,
    decrypt_capacity: usize,
    refresh_fraction: f64,
    max_partitions: usize,
    cache: bool,
}

impl EnvelopeBuilder {
    /// Limits after which a cached data key is retired (default: 5 minutes, 2^20 messages,
    /// 2^32 bytes). `max_messages` is clamped to `1..=2^32`, `max_bytes` to at least 1 and
    /// `max_age` to 1 ms..=365 days.
    pub fn data_key_limits(mut self, limits: DataKeyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Decrypt-side cache: how long an opened data key is kept and how many are kept (default
    /// 5 minutes, 10,000 keys). The TTL is clamped to 1 ms..=365 days, the capacity to at
    /// least 1.
    pub fn decrypt_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.decrypt_ttl = ttl;
        self.decrypt_capacity = capacity;
        self
    }

    /// When a replacement data key is generated in the background: at this fraction of the
    /// current key's message or byte budget, and at this fraction of its max age but never more
    /// than [`MAX_REFRESH_LEAD`](crate::MAX_REFRESH_LEAD) (30 s) before it expires (default 0.75;
    /// clamped to 0.05..=1.0; not finite means the default). The replacement waits as a standby
    /// and takes over when the current key is exhausted or expires, so message budgets are used
    /// in full; its own max age counts from its generation.
    pub fn refresh_at(mut self, fraction: f64) -> Self {
        self.refresh_fraction = fraction;
        self
    }

    /// Maximum number of encrypt-side partitions (one per distinct encryption context and
    /// primary key); idle ones are dropped beyond it (default 10,000).
    pub fn max_partitions(mut self, n: usize) -> Self {
        self.max_partitions = n;
        self
    }

    /// No caching at all: one keyring `generate_data_key` per encrypt and one
    /// `decrypt_data_key` per decrypt, like Tink's KMS envelope AEAD. For comparisons.
    pub fn no_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// Adds a keyring that also wraps every new data key: ciphertexts get one EDK per keyring
    /// (format v2, `lv2.`), and any one of the keyrings can decrypt them (two KMS regions, KMS
    /// plus an offline escrow keyring). Decryption tries the primary first, then these in the
    /// order added. Each cold data key costs one call per keyring; a failing keyring fails the
    /// key (no ciphertext lacks a configured copy).
    pub fn with_keyring(self, keyring: impl Keyring) -> Self {
        self.with_keyring_shared(Arc::new(keyring))
    }

    /// [`EnvelopeBuilder::with_keyring`] for a keyring already behind an `Arc`.
    pub fn with_keyring_shared(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.extra.push(keyring);
        self
    }

    /// Adds a keyring that is only tried to decrypt, after the others (for example the local
    /// keyring that old rows were encrypted with, while new rows go to KMS).
    pub fn decrypt_with(self, keyring: impl Keyring) -> Self {
        self.decrypt_with_shared(Arc::new(keyring))
    }

    /// [`EnvelopeBuilder::decrypt_with`] for a keyring already behind an `Arc`.
    pub fn decrypt_with_shared(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.decrypt_only.push(keyring);
        self
    }

    /// Writes format v2 (`lv2.`, one byte more than v1) even with a single keyring. With
    /// [`EnvelopeBuilder::with_keyring`] the envelope always writes v2; otherwise v1 (the
    /// default, for readers that predate v2). Both versions always decrypt.
    pub fn format_v2(mut self) -> Self {
        self.v2 = true;
        self
    }

    /// Builds the envelope.
    pub fn build(self) -> Envelope {
        let counters = Arc::new(Counters::default());
        let version = if self.v2 || !self.extra.is_empty() { format::VERSION_2 } else { format::VERSION_1 };
        let decrypt_only = self.decrypt_only.len();
        let keyrings: Arc<[Arc<dyn Keyring>]> = std::iter::once(self.keyring.clone())
            .chain(self.extra.iter().cloned())
            .chain(self.decrypt_only)
            .collect();
        let wrapping = Arc::new(Wrapping { extra: self.extra, version });
        let decrypt_cache =
            self.cache.then(|| Arc::new(DecryptCache::new(self.decrypt_ttl, self.decrypt_capacity)));
        let encrypt = EncryptCache::new(
            self.keyring.clone(),
            wrapping,
            self.limits,
            self.refresh_fraction,
            self.max_partitions,
            counters.clone(),
            decrypt_cache.clone(),
        );
        Envelope {
            inner: Arc::new(Inner {
                keyring: self.keyring,
                keyrings,
                decrypt_only,
                version,
                encrypt,
                decrypt_cache,
                counters,
                cache: self.cache,
            }),
        }
    }
}

struct Inner {
    keyring: Arc<dyn Keyring>,
    /// Every keyring, in decryption order: primary, additional, decrypt-only.
    keyrings: Arc<[Arc<dyn Keyring>]>,
    /// How many of `keyrings` (at the end) are decrypt-only.
    decrypt_only: usize,
    /// The format version new ciphertexts are written in.
    version: u8,
    encrypt: EncryptCache,
    decrypt_cache: Option<Arc<DecryptCache>>,
    counters: Arc<Counters>,
    cache: bool,
}

/// Envelope encryption of small values (phone numbers, names, addresses) under a [`Keyring`].
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`: build one per keyring and share it with
/// every thread and task. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Envelope {
    inner: Arc<Inner>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Envelope");
        d.field("keyring", &self.inner.keyring.kind().name())
            .field("primary_key_id", &self.inner.keyring.primary_key_id());
        if self.inner.keyrings.len() > 1 {
            d.field("keyrings", &self.inner.keyrings.len());
        }
        d.field("limits", self.inner.encrypt.limits()).field("cache", &self.inner.cache).finish()
    }
}

impl Envelope {
    /// Starts configuring an envelope over `keyring`.
    pub fn builder(keyring: impl Keyring) -> EnvelopeBuilder {
        Self::builder_shared(Arc::new(keyring))
    }

    /// [`Envelope::builder`] for a keyring already behind an `Arc`.
    pub fn builder_shared(keyring: Arc<dyn Keyring>) -> EnvelopeBuilder {
        EnvelopeBuilder {
            keyring,
            extra: Vec::new(),
            decrypt_only: Vec::new(),
            v2: false,
            limits: DataKeyLimits::default(),
            decrypt_ttl: DEFAULT_DECRYPT_TTL,
            decrypt_capacity: DEFAULT_DECRYPT_CAPACITY,
            refresh_fraction: 0.75,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            cache: true,
        }
    }

    /// What new ciphertexts look like: the format version and the (kind, master key id) of each
    /// EDK, in order (for [`Rewrapper`](crate::rewrap::Rewrapper)'s "is it current" check).
    pub(crate) fn write_spec(&self) -> (u8, Vec<(crate::KeyringKind, String)>) {
        let writers = self.inner.keyrings.len() - self.inner.decrypt_only;
        let keys = self.inner.keyrings.iter().take(writers).map(|k| (k.kind(), k.primary_key_id())).collect();
        (self.inner.version, keys)
    }

    /// The keyring this envelope uses.
    pub fn keyring(&self) -> &Arc<dyn Keyring> {
        &self.inner.keyring
    }

    /// Counters since the envelope was built (keyring calls, cache hits and misses).
    pub fn stats(&self) -> EnvelopeStats {
        self.inner.counters.snapshot()
    }

    /// Encrypts `plaintext` bound to `context` into the binary ciphertext format v1.
    ///
    /// Uses the partition's cached data key when it has budget left; otherwise waits for the
    /// single keyring call that all concurrent callers share.
    pub async fn encrypt(
        &self,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let enc = &self.inner.encrypt;
        let len = plaintext.len() as u64;
        if len > enc.max_plaintext() {
            return Err(EnvelopeError::PlaintextTooLarge);
        }
        if !self.inner.cache {
            let key = enc.one_shot(context).await?;
            return seal(&key, plaintext);
        }
        let part = enc.partition(context)?;
        let mut key = part.active();
        let mut stale: Option<Arc<ActiveKey>> = None;
        let mut hit = true;
        loop {
            let k = match key.take() {
                Some(k) => k,
                None => {
                    let (k, waited) = enc.acquire(&part, stale.as_ref()).await?;
                    hit &= !waited;
                    k
                }
            };
            match k.reserve(len, crate::clock::now()) {
                Reservation::Granted { refresh } => {
                    self.inner.counters.encrypt_cache(hit);
                    let out = seal(&k, plaintext)?;
                    if refresh {
                        if let Some(fut) = enc.start_refresh(&part) {
                            fut.await;
                        }
                    }
                    return Ok(out);
                }
                Reservation::Exhausted => stale = Some(k),
            }
        }
    }

    /// Decrypts a binary ciphertext made under `context`. Any alteration, a wrong context or an
    /// unknown key is an error; there is never empty or partial plaintext.
    pub async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let p = format::parse(ciphertext)?;
        let ctx_bytes = context.canonical()?;
        let material = self.data_key_for(&p, ctx_bytes, context).await?;
        if !material.commitment_matches(p.commitment) {
            return Err(EnvelopeError::KeyCommitmentMismatch);
        }
        format::with_aad(p.header, ctx_bytes, |aad| material.open(p.nonce, aad, p.body))
    }

    async fn data_key_for(
        &self,
        p: &format::Parsed<'_>,
        ctx_bytes: &[u8],
        context: &EncryptionContext,
    ) -> Result<Arc<KeyMaterial>, EnvelopeError> {
        if let Some(cache) = &self.inner.decrypt_cache {
            if let Some(m) = cache.get(p.commitment, p.edk_fields, ctx_bytes) {
                self.inner.counters.decrypt_cache(true);
                return Ok(m);
            }
            self.inner.counters.decrypt_cache(false);
        }
        let open = {
            let keyrings = self.inner.keyrings.clone();
            let counters = self.inner.counters.clone();
            let edks = p.edks()?;
            let commitment = p.commitment.to_vec();
            let context = context.clone();
            move || -> BoxFuture<'static, Result<Arc<KeyMaterial>, EnvelopeError>> {
                Box::pin(async move {
                    crate::multi::open(&keyrings, &edks, &commitment, &context, &counters).await
                })
            }
        };
        match &self.inner.decrypt_cache {
            Some(cache) => cache.open_shared(p.commitment, p.edk_fields, ctx_bytes, open).await,
            None => open().await,
        }
    }

    /// [`Envelope::encrypt`] of UTF-8 text into the text form (`lv1.`, or `lv2.` for format v2,
    /// + base64url).
    pub async fn encrypt_text(
        &self,
        plaintext: &str,
        context: &EncryptionContext,
    ) -> Result<String, EnvelopeError> {
        Ok(format::to_text(&self.encrypt(plaintext.as_bytes(), context).await?))
    }

    /// [`Envelope::decrypt`] of the text form back into UTF-8 text.
    pub async fn decrypt_text(
        &self,
        ciphertext: &str,
        context: &EncryptionContext,
    ) -> Result<String, EnvelopeError> {
        let bin = format::from_text(ciphertext)?;
        let plain = self.decrypt(&bin, context).await?;
        String::from_utf8(plain.to_vec()).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            EnvelopeError::NotUtf8
        })
    }

    /// Reads the header of a binary ciphertext (no key needed, nothing secret).
    pub fn inspect(ciphertext: &[u8]) -> Result<HeaderInfo, EnvelopeError> {
        format::inspect(ciphertext)
    }

    /// [`Envelope::inspect`] for the text form.
    pub fn inspect_text(ciphertext: &str) -> Result<HeaderInfo, EnvelopeError> {
        format::inspect(&format::from_text(ciphertext)?)
    }

    /// Size in bytes of the ciphertext of an `n`-byte plaintext with the given EDK.
    pub fn ciphertext_len(edk: &EncryptedDataKey, n: usize) -> usize {
        format::ciphertext_len_v1(edk, n)
    }
}

fn seal(key: &ActiveKey, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    format::seal(&key.material, key.header(), &key.aad, random_nonce()?, plaintext)
}

/// The fixed-nonce test-vector paths: `prefix` from [`format::key_prefix`].
#[cfg(feature = "test-vectors")]
fn seal_with_fixed_nonce(
    data_key: &crate::DataKey,
    prefix: &[u8],
    nonce: [u8; 12],
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, EnvelopeError> {
    let material = KeyMaterial::derive(data_key)?;
    let (aad, header_len) = format::header_and_aad(prefix, material.commitment(), context.canonical()?);
    let header = aad.get(..header_len).unwrap_or(&[]);
    format::seal(&material, header, &aad, nonce, plaintext)
}

/// Test-vector path: encrypts with a given data key, EDK and nonce. Deterministic, so it must
/// never be used for real data (a repeated nonce under one data key breaks AES-GCM). Only
/// compiled with the `test-vectors` feature, which no production build should enable.
#[cfg(feature = "test-vectors")]
pub fn dangerous_encrypt_with_fixed_key_and_nonce(
    generated: crate::GeneratedKey,
    nonce: [u8; 12],
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, EnvelopeError> {
    let prefix = format::key_prefix(format::VERSION_1, std::slice::from_ref(&generated.edk))?;
    seal_with_fixed_nonce(&generated.plaintext, &prefix, nonce, plaintext, context)
}

/// Test-vector path for format v2: encrypts with a given data key, EDK list and nonce.
/// Deterministic, so it must never be used for real data (a repeated nonce under one data key
/// breaks AES-GCM).
#[cfg(feature = "test-vectors")]
#[doc(hidden)]
pub fn dangerous_encrypt_v2_with_fixed_key_and_nonce(
    data_key: &crate::DataKey,
    edks: &[EncryptedDataKey],
    nonce: [u8; 12],
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, EnvelopeError> {
    let prefix = format::key_prefix(format::VERSION_2, edks)?;
    seal_with_fixed_nonce(data_key, &prefix, nonce, plaintext, context)
}
