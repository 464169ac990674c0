//! Shared test helpers: a counting wrapper around the real local keyring.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use larder_envelope::{
    BoxFuture, DataKey, EncryptedDataKey, EncryptionContext, EnvelopeError, GeneratedKey, Keyring,
    KeyringKind, LocalKeyring,
};

/// Counts `generate_data_key` / `decrypt_data_key` calls of the real [`LocalKeyring`] inside
/// and optionally sleeps before each (a KMS-like latency).
pub struct CountingKeyring {
    pub inner: LocalKeyring,
    pub delay: Option<Duration>,
    pub generates: AtomicUsize,
    pub decrypts: AtomicUsize,
}

impl CountingKeyring {
    pub fn new(inner: LocalKeyring, delay: Option<Duration>) -> Arc<Self> {
        Arc::new(CountingKeyring {
            inner,
            delay,
            generates: AtomicUsize::new(0),
            decrypts: AtomicUsize::new(0),
        })
    }

    pub fn test_key(delay: Option<Duration>) -> Arc<Self> {
        Self::new(LocalKeyring::from_key_bytes("k1", [0x11; 32]).unwrap(), delay)
    }

    pub fn generates(&self) -> usize {
        self.generates.load(Ordering::SeqCst)
    }

    pub fn decrypts(&self) -> usize {
        self.decrypts.load(Ordering::SeqCst)
    }
}

impl Keyring for CountingKeyring {
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
        Box::pin(async move {
            self.generates.fetch_add(1, Ordering::SeqCst);
            if let Some(d) = self.delay {
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
        Box::pin(async move {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            self.inner.decrypt_data_key(edk, context).await
        })
    }
}

pub fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}
