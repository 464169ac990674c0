//! [`CountingKeyring`]: a keyring wrapper that counts the calls reaching the real keyring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::keyring::{BoxFuture, DataKey, EncryptedDataKey, GeneratedKey, Keyring, KeyringKind};
use crate::{EncryptionContext, EnvelopeError};

/// Wraps a real keyring, counts every `generate_data_key`, `decrypt_data_key` and
/// `encrypt_data_key` call that reaches it, and can add a fixed latency before each (to stand in for a KMS round trip on a
/// local keyring).
///
/// For demos, tests and benchmarks that must show how many calls a workload makes — counted
/// outside the envelope, so the envelope's own [`stats`](crate::Envelope::stats) can be
/// cross-checked. Share it with the envelope through an `Arc` to keep a handle on the counts.
///
/// ```
/// use std::sync::Arc;
/// use larder_envelope::{CountingKeyring, EncryptionContext, Envelope, LocalKeyring};
///
/// let keyring = Arc::new(CountingKeyring::new(LocalKeyring::from_key_bytes("k1", [7; 32])?));
/// let envelope = Envelope::builder(keyring.clone()).build();
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let ctx = EncryptionContext::new();
/// rt.block_on(async {
///     for _ in 0..100 {
///         envelope.encrypt(b"010-1234-5678", &ctx).await?;
///     }
///     Ok::<_, larder_envelope::EnvelopeError>(())
/// })?;
/// assert_eq!(keyring.generate_calls(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CountingKeyring<K> {
    inner: K,
    latency: Option<Duration>,
    generates: AtomicU64,
    decrypts: AtomicU64,
    encrypts: AtomicU64,
}

impl<K> CountingKeyring<K> {
    /// Counts the calls reaching `inner`.
    pub fn new(inner: K) -> Self {
        CountingKeyring {
            inner,
            latency: None,
            generates: AtomicU64::new(0),
            decrypts: AtomicU64::new(0),
            encrypts: AtomicU64::new(0),
        }
    }

    /// Sleeps `latency` (on the Tokio timer) before passing each call on.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency).filter(|d| !d.is_zero());
        self
    }

    /// The wrapped keyring.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// `generate_data_key` calls so far.
    pub fn generate_calls(&self) -> u64 {
        self.generates.load(Ordering::SeqCst)
    }

    /// `decrypt_data_key` calls so far.
    pub fn decrypt_calls(&self) -> u64 {
        self.decrypts.load(Ordering::SeqCst)
    }

    /// `encrypt_data_key` calls so far (wrapping another keyring's data key, format v2).
    pub fn encrypt_calls(&self) -> u64 {
        self.encrypts.load(Ordering::SeqCst)
    }
}

impl<K: Keyring> Keyring for CountingKeyring<K> {
    fn kind(&self) -> KeyringKind {
        self.inner.kind()
    }

    fn primary_key_id(&self) -> String {
        self.inner.primary_key_id()
    }

    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        self.generates.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(d) = self.latency {
                tokio::time::sleep(d).await;
            }
            self.inner.generate_data_key(context).await
        })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(d) = self.latency {
                tokio::time::sleep(d).await;
            }
            self.inner.decrypt_data_key(edk, context).await
        })
    }

    fn encrypt_data_key<'a>(
        &'a self,
        key: &'a DataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
        self.encrypts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(d) = self.latency {
                tokio::time::sleep(d).await;
            }
            self.inner.encrypt_data_key(key, context).await
        })
    }

    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        self.inner.accepts(edk)
    }
}
