//! [`BlockingEnvelope`]: the envelope for synchronous code.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::{EncryptionContext, Envelope, EnvelopeError, EnvelopeStats};

/// A synchronous wrapper around [`Envelope`] with its own small Tokio runtime (one worker
/// thread, which also runs background data-key refreshes).
///
/// Every method blocks the calling thread. Calling them from inside an async runtime returns
/// [`EnvelopeError::ApiMisuse`] (use [`Envelope`] there). Clone it freely and share it between
/// threads. Dropping the last clone inside async code is fine too (the runtime is then shut
/// down in the background instead of blocking).
#[derive(Clone, Debug)]
pub struct BlockingEnvelope {
    envelope: Envelope,
    runtime: Arc<OwnedRuntime>,
}

/// Drops its runtime without blocking when dropped inside an async context (where Tokio would
/// panic on a blocking shutdown).
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

impl BlockingEnvelope {
    /// Wraps `envelope`, starting a one-worker Tokio runtime.
    pub fn new(envelope: Envelope) -> Result<Self, EnvelopeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("larder-envelope")
            .enable_all()
            .build()
            .map_err(|e| EnvelopeError::Keyring(format!("could not start the blocking runtime: {e}")))?;
        Ok(BlockingEnvelope { envelope, runtime: Arc::new(OwnedRuntime(Some(runtime))) })
    }

    /// The async envelope inside.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn block<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, EnvelopeError>>,
    ) -> Result<T, EnvelopeError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(EnvelopeError::ApiMisuse(
                "BlockingEnvelope used inside an async runtime; use Envelope",
            ));
        }
        match &self.runtime.0 {
            Some(rt) => rt.block_on(fut),
            None => Err(EnvelopeError::ApiMisuse("BlockingEnvelope used after its runtime was dropped")),
        }
    }

    /// See [`Envelope::encrypt`].
    pub fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, EnvelopeError> {
        self.block(self.envelope.encrypt(plaintext, context))
    }

    /// See [`Envelope::decrypt`].
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.block(self.envelope.decrypt(ciphertext, context))
    }

    /// See [`Envelope::encrypt_text`].
    pub fn encrypt_text(
        &self,
        plaintext: &str,
        context: &EncryptionContext,
    ) -> Result<String, EnvelopeError> {
        self.block(self.envelope.encrypt_text(plaintext, context))
    }

    /// See [`Envelope::decrypt_text`].
    pub fn decrypt_text(
        &self,
        ciphertext: &str,
        context: &EncryptionContext,
    ) -> Result<String, EnvelopeError> {
        self.block(self.envelope.decrypt_text(ciphertext, context))
    }

    /// See [`Envelope::stats`].
    pub fn stats(&self) -> EnvelopeStats {
        self.envelope.stats()
    }
}

impl Envelope {
    /// A [`BlockingEnvelope`] sharing this envelope's caches.
    pub fn blocking(&self) -> Result<BlockingEnvelope, EnvelopeError> {
        BlockingEnvelope::new(self.clone())
    }
}
