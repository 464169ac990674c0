//! [`BlockingEnvelope`]: the envelope for synchronous code.

use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use crate::{EncryptionContext, Envelope, EnvelopeError, EnvelopeStats};

/// A synchronous wrapper around [`Envelope`] with its own small Tokio runtime (one worker
/// thread, which also runs background data-key refreshes).
///
/// Every method blocks the calling thread. Calling them from inside an async runtime returns
/// [`EnvelopeError::ApiMisuse`] (use [`Envelope`] there). Clone it freely and share it between
/// threads. Dropping the last clone inside async code is fine too (the runtime is then shut
/// down in the background instead of blocking).
///
/// Fork-safe: in a child made by `fork()` the parent's runtime has no threads, so the first
/// call there starts a new runtime (the inherited one is left alone, never shut down, since
/// shutting it down would wait for threads that do not exist).
#[derive(Clone, Debug)]
pub struct BlockingEnvelope {
    envelope: Envelope,
    runtime: Arc<OwnedRuntime>,
}

/// The runtime of the current process, with the fork generation it was started in.
#[derive(Debug)]
struct OwnedRuntime(RwLock<Option<(u64, Arc<tokio::runtime::Runtime>)>>);

fn start_runtime() -> Result<tokio::runtime::Runtime, EnvelopeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("larder-envelope")
        .enable_all()
        .build()
        .map_err(|e| EnvelopeError::Keyring(format!("could not start the blocking runtime: {e}")))
}

impl OwnedRuntime {
    /// This process's runtime; in a forked child, a new one.
    fn get(&self) -> Result<Arc<tokio::runtime::Runtime>, EnvelopeError> {
        let generation = larder_fork::generation();
        if let Some((g, rt)) = self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *g == generation {
                return Ok(rt.clone());
            }
        }
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some((g, rt)) if g == generation => {
                *slot = Some((g, rt.clone()));
                return Ok(rt);
            }
            // Inherited through fork(): its worker thread is gone; dropping it would wait for it.
            Some((_, inherited)) => std::mem::forget(inherited),
            None => {}
        }
        let rt = Arc::new(start_runtime()?);
        *slot = Some((generation, rt.clone()));
        Ok(rt)
    }
}

impl Drop for OwnedRuntime {
    /// Drops the runtime without blocking when dropped inside an async context (where Tokio
    /// would panic on a blocking shutdown), and not at all when it was inherited by `fork()`.
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let Some((generation, rt)) = slot else { return };
        if generation != larder_fork::generation() {
            std::mem::forget(rt);
            return;
        }
        if let Ok(rt) = Arc::try_unwrap(rt) {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

impl BlockingEnvelope {
    /// Wraps `envelope`, starting a one-worker Tokio runtime.
    pub fn new(envelope: Envelope) -> Result<Self, EnvelopeError> {
        let runtime = start_runtime()?;
        Ok(BlockingEnvelope {
            envelope,
            runtime: Arc::new(OwnedRuntime(RwLock::new(Some((
                larder_fork::generation(),
                Arc::new(runtime),
            ))))),
        })
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
        self.runtime.get()?.block_on(fut)
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
