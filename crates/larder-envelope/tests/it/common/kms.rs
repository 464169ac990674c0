//! Shared by the `kms_*.rs` suites: keyring wrappers that count or inject faults around the
//! real [`AwsKmsKeyring`] talking to a real moto server. Nothing here answers for KMS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use larder_envelope::{
    AwsKmsKeyring, BoxFuture, DataKey, EncryptedDataKey, EncryptionContext, EnvelopeError, GeneratedKey,
    Keyring, KeyringKind, RetryPolicy,
};
use larder_testkit::moto::MotoServer;

/// A keyring for `moto` with timeouts short enough for outage tests.
pub fn keyring(moto: &MotoServer, key: &str) -> AwsKmsKeyring {
    keyring_builder(moto, key).build()
}

/// The builder behind [`keyring`], to add key ids or change the policy.
pub fn keyring_builder(moto: &MotoServer, key: &str) -> larder_envelope::AwsKmsKeyringBuilder {
    AwsKmsKeyring::builder(moto.kms_client(), key)
        .connect_timeout(Duration::from_millis(300))
        .attempt_timeout(Duration::from_millis(1500))
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            operation_timeout: Duration::from_secs(4),
        })
}

pub use super::CountingKeyring;

/// Fails its first `failures` calls (generate and decrypt together) with `error` — the
/// throttling KMS that moto never is — then passes calls on to the wrapped keyring.
pub struct FlakyKeyring<K> {
    pub inner: K,
    failures: u64,
    error: EnvelopeError,
    calls: AtomicU64,
}

impl<K> FlakyKeyring<K> {
    pub fn new(inner: K, failures: u64, error: EnvelopeError) -> Self {
        FlakyKeyring { inner, failures, error, calls: AtomicU64::new(0) }
    }
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    fn fail_now(&self) -> Option<EnvelopeError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        (n < self.failures).then(|| self.error.clone())
    }
}

impl<K: Keyring> Keyring for FlakyKeyring<K> {
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
        match self.fail_now() {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.generate_data_key(context),
        }
    }
    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        match self.fail_now() {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.decrypt_data_key(edk, context),
        }
    }
}

/// The context most tests use.
pub fn phone_context() -> EncryptionContext {
    EncryptionContext::new().with("table", "customers").with("column", "phone")
}

/// Calls `op` until it succeeds, for KMS coming back from an outage: a thawed moto first works
/// through the requests queued while it was frozen, so the first attempts may still time out.
/// Only [`EnvelopeError::KmsUnavailable`] is accepted meanwhile; panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EnvelopeError>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(EnvelopeError::KmsUnavailable(d)) if std::time::Instant::now() < deadline => {
                eprintln!("not recovered yet: {d}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("did not recover within {within:?}: {e}"),
        }
    }
}
