//! The AWS KMS keyring (feature `aws-kms`, on by default).
//!
//! [`AwsKmsKeyring`] makes data keys with KMS `GenerateDataKey` (`AES_256`) and opens them with
//! KMS `Decrypt`, passing the encryption context to KMS both times. What it adds to the bare
//! SDK calls:
//!
//! - **An allow-list of master keys.** `Decrypt` always names the KMS key (`KeyId`), and that key
//!   comes from this keyring's configuration (the primary key plus
//!   [`additional_key_id`](AwsKmsKeyringBuilder::additional_key_id)s), never from the ciphertext
//!   alone. An encrypted data key naming any other key is refused with
//!   [`EnvelopeError::UnknownKeyId`] before any request is sent.
//! - **Its own retry loop** ([`retry`], [`RetryPolicy`]): exponential backoff with full jitter on
//!   throttling and transient failures (network, timeouts, HTTP 5xx, `KMSInternalException`,
//!   `DependencyTimeoutException`, `KeyUnavailableException`), bounded by a number of attempts
//!   and an overall deadline. The SDK's own retries are switched off for these calls (whatever
//!   the client was configured with), so what happens under throttling is defined here and
//!   tested.
//! - **Timeouts**: connect and per-attempt timeouts set on every call, plus the policy's overall
//!   operation deadline around all attempts and backoff sleeps.
//! - **Clear errors**: `AccessDeniedException` (and credential rejections) →
//!   [`EnvelopeError::AccessDenied`]; `NotFoundException`, `DisabledException`,
//!   `KMSInvalidStateException` → [`EnvelopeError::KeyNotFound`]; `InvalidCiphertextException`,
//!   `IncorrectKeyException` → [`EnvelopeError::InvalidEncryptedDataKey`]; still throttled after
//!   the retries → [`EnvelopeError::Throttled`]; unreachable, timed out or failing transiently
//!   after the retries → [`EnvelopeError::KmsUnavailable`].
//! - **Metrics**: `larder_envelope_kms_requests_total{operation, outcome}` counts every request
//!   sent to KMS, retries included (each is a billed request).
//! - **Response checks**: the key that answered must be the key that was asked for (key ARN and
//!   key id forms compare equal) and the plaintext must be exactly 32 bytes.
//!
//! # Key material and the SDK
//!
//! The plaintext data key arrives base64-encoded in the JSON body of the HTTP response. The SDK
//! decodes it into a buffer that this keyring takes over, copies into a [`DataKey`] and zeroizes.
//! What it cannot reach: the raw HTTP response body (base64 text of the key) and the TLS and
//! hyper buffers it passed through are freed by the SDK without zeroizing. The SDK's `Debug` of
//! the responses prints the plaintext as redacted.
//!
//! # Aliases
//!
//! Configure keys by key ARN (recommended) or key id. An alias (`alias/name` or an alias ARN)
//! cannot be compared with the key ARN found in a ciphertext without asking KMS, so when no
//! configured key matches an encrypted data key and aliases are configured, `Decrypt` is sent
//! with `KeyId` set to each configured alias in turn and KMS itself checks the ciphertext was
//! made under the alias's current key.
// Length: the keyring, its retry loop and the SDK error mapping are one unit (each
// decides what the others retry); the file passes 700 lines only with its unit tests of the
// retry loop and the error classification (from `mod tests`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::format::{MAX_EDK_LEN, MAX_KEY_ID_LEN};
use crate::{
    BoxFuture, DataKey, EncryptedDataKey, EncryptionContext, EnvelopeError, GeneratedKey, Keyring,
    KeyringKind,
};

/// The AWS SDK for KMS this keyring is built on, re-exported so a client can be configured with
/// exactly the version larder uses.
pub use aws_sdk_kms;

/// How [`retry`] retries: attempts, backoff and an overall deadline.
///
/// The delay before retry `n` (1 for the first retry) is drawn uniformly from
/// `0..=min(max_delay, base_delay × 2^(n-1))` ("full jitter"), so clients throttled together
/// do not come back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1). Default 4.
    pub max_attempts: u32,
    /// The backoff cap before the first retry. Default 50 ms.
    pub base_delay: Duration,
    /// The largest backoff cap. Default 2 s.
    pub max_delay: Duration,
    /// The deadline for the whole operation: every attempt and every backoff sleep. Default 10 s.
    pub operation_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt, still bounded by `operation_timeout`.
    pub fn no_retries() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The upper bound of the jittered delay before retry `retry` (1-based).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `0..=backoff_cap(retry)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter; the modulo bias is below 2^-40 for any cap under an hour.
        Duration::from_nanos(larder_fork::u64() % nanos.saturating_add(1))
    }
}

/// True for the errors [`retry`] retries: [`EnvelopeError::Throttled`] and
/// [`EnvelopeError::KmsUnavailable`] (network failures, timeouts, server-side failures).
pub fn is_retryable(error: &EnvelopeError) -> bool {
    matches!(error, EnvelopeError::Throttled(_) | EnvelopeError::KmsUnavailable(_))
}

/// Runs `op` until it succeeds, fails with an error that is not [retryable](is_retryable), or
/// the policy's attempts or deadline run out; sleeps a jittered exponential backoff between
/// attempts. `op` receives the attempt number (1-based).
///
/// The last error is returned with the number of attempts appended to its detail. An attempt
/// still running at the deadline is abandoned and reported as
/// [`EnvelopeError::KmsUnavailable`]; a backoff that would end past the deadline is not slept.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use larder_envelope::aws::retry;
/// use larder_envelope::{EnvelopeError, RetryPolicy};
/// use std::time::Duration;
///
/// let policy = RetryPolicy { base_delay: Duration::from_millis(1), ..RetryPolicy::default() };
/// let answer = retry(&policy, |attempt| async move {
///     if attempt < 3 { Err(EnvelopeError::Throttled("slow down".into())) } else { Ok(attempt) }
/// })
/// .await;
/// assert_eq!(answer, Ok(3));
/// # });
/// ```
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, EnvelopeError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, EnvelopeError>>,
{
    let deadline = tokio::time::Instant::now() + policy.operation_timeout;
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1u32;
    loop {
        let error = match tokio::time::timeout_at(deadline, op(attempt)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(EnvelopeError::KmsUnavailable(format!(
                    "no answer within the operation timeout of {:?} (attempt {attempt})",
                    policy.operation_timeout
                )))
            }
        };
        if !is_retryable(&error) || attempt >= max_attempts {
            return Err(with_attempts(error, attempt));
        }
        let delay = policy.backoff(attempt);
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(with_attempts(error, attempt));
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn with_attempts(error: EnvelopeError, attempts: u32) -> EnvelopeError {
    if attempts <= 1 {
        return error;
    }
    let note = |d: String| format!("{d} (after {attempts} attempts)");
    match error {
        EnvelopeError::Throttled(d) => EnvelopeError::Throttled(note(d)),
        EnvelopeError::KmsUnavailable(d) => EnvelopeError::KmsUnavailable(note(d)),
        EnvelopeError::AccessDenied(d) => EnvelopeError::AccessDenied(note(d)),
        EnvelopeError::KeyNotFound(d) => EnvelopeError::KeyNotFound(note(d)),
        EnvelopeError::InvalidEncryptedDataKey(d) => EnvelopeError::InvalidEncryptedDataKey(note(d)),
        other => other,
    }
}

/// An AWS KMS keyring: data keys from `GenerateDataKey` under one primary KMS key, opened with
/// `Decrypt` under an allow-list of KMS keys. See the [module docs](self) for the rules.
///
/// Cheap to share: the SDK client is reference-counted inside. The keyring does not cache; put
/// it behind the envelope's data-key cache.
///
/// ```no_run
/// use larder_envelope::aws_sdk_kms::{self, config::{BehaviorVersion, Region}};
/// use larder_envelope::AwsKmsKeyring;
///
/// // Credentials, region and endpoint from wherever your service gets them (here: the SDK's
/// // defaults plus a region; `aws-config` can load the usual environment/profile chain).
/// let config = aws_sdk_kms::Config::builder()
///     .behavior_version(BehaviorVersion::latest())
///     .region(Region::new("ap-northeast-2"))
///     .build();
/// let keyring = AwsKmsKeyring::builder(
///     aws_sdk_kms::Client::from_conf(config),
///     "arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
/// )
/// // Ciphertexts made under the previous key still open.
/// .additional_key_id("arn:aws:kms:ap-northeast-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321")
/// .build();
/// ```
#[derive(Clone)]
pub struct AwsKmsKeyring {
    client: Arc<ProcessClient>,
    primary: String,
    additional: Vec<String>,
    policy: RetryPolicy,
    connect_timeout: Duration,
    attempt_timeout: Duration,
}

/// The SDK client of the current process.
///
/// An SDK client keeps a pool of open HTTPS connections whose driving tasks live on the runtime
/// that opened them. After `fork()` a child would share those sockets with its parent (two
/// processes reading one KMS response stream: a `GenerateDataKey` answer could reach the wrong
/// process) and nothing would drive them. So a child builds a new client from the same
/// configuration, with a fresh default HTTPS client (a custom `http_client` set on the
/// original configuration is replaced by the SDK's default in children).
struct ProcessClient(RwLock<(u64, aws_sdk_kms::Client)>);

impl ProcessClient {
    fn new(client: aws_sdk_kms::Client) -> Self {
        ProcessClient(RwLock::new((larder_fork::generation(), client)))
    }

    fn get(&self) -> aws_sdk_kms::Client {
        let generation = larder_fork::generation();
        {
            let cur = self.0.read().unwrap_or_else(|p| p.into_inner());
            if cur.0 == generation {
                return cur.1.clone();
            }
        }
        let mut cur = self.0.write().unwrap_or_else(|p| p.into_inner());
        if cur.0 != generation {
            let mut config = cur.1.config().to_builder();
            config.set_http_client(None);
            let fresh = aws_sdk_kms::Client::from_conf(config.build());
            // The inherited client's connections belong to the parent: never touch them.
            std::mem::forget(std::mem::replace(&mut cur.1, fresh));
            cur.0 = generation;
        }
        cur.1.clone()
    }
}

/// Builds an [`AwsKmsKeyring`].
#[must_use]
pub struct AwsKmsKeyringBuilder {
    keyring: AwsKmsKeyring,
}

impl AwsKmsKeyringBuilder {
    /// Another KMS key whose encrypted data keys may be decrypted (for example the previous
    /// primary after a key change). New data keys are always made under the primary.
    pub fn additional_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.keyring.additional.push(key_id.into());
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.keyring.policy = policy;
        self
    }

    /// The TCP/TLS connect timeout of each attempt (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.keyring.connect_timeout = timeout;
        self
    }

    /// The timeout of each attempt, connect included (default 3 s). The whole operation is
    /// bounded by [`RetryPolicy::operation_timeout`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.keyring.attempt_timeout = timeout;
        self
    }

    /// The keyring.
    pub fn build(self) -> AwsKmsKeyring {
        self.keyring
    }
}

impl AwsKmsKeyring {
    /// A keyring with primary KMS key `key_id` (a key ARN, key id, or alias) and default retry
    /// policy and timeouts.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> AwsKmsKeyring {
        AwsKmsKeyring::builder(client, key_id).build()
    }

    /// A builder for a keyring with primary KMS key `key_id`.
    pub fn builder(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> AwsKmsKeyringBuilder {
        AwsKmsKeyringBuilder {
            keyring: AwsKmsKeyring {
                client: Arc::new(ProcessClient::new(client)),
                primary: key_id.into(),
                additional: Vec::new(),
                policy: RetryPolicy::default(),
                connect_timeout: Duration::from_secs(1),
                attempt_timeout: Duration::from_secs(3),
            },
        }
    }

    /// The SDK client of this process (a new one in a forked child, see the type docs).
    pub fn client(&self) -> aws_sdk_kms::Client {
        self.client.get()
    }

    /// The KMS keys this keyring decrypts under: the primary first, then the additional ones.
    pub fn allowed_key_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_str()).chain(self.additional.iter().map(String::as_str))
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Per-call SDK configuration: no SDK retries (the loop here owns them) and our timeouts.
    fn call_config(&self) -> aws_sdk_kms::config::Builder {
        aws_sdk_kms::config::Builder::default().retry_config(RetryConfig::disabled()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(self.connect_timeout)
                .operation_attempt_timeout(self.attempt_timeout)
                .operation_timeout(self.attempt_timeout)
                .build(),
        )
    }

    /// The checks every KMS answer carrying a new EDK passes (`GenerateDataKey`, `Encrypt`):
    /// it is for the primary key (for an alias primary, which cannot be compared offline, it
    /// must at least name a key), and the key id and EDK fit the ciphertext format.
    fn checked_edk(&self, op: &str, key_id: &str, ciphertext: Vec<u8>) -> Result<Vec<u8>, EnvelopeError> {
        let answered_for_primary = if is_alias(&self.primary) {
            key_uuid(key_id).is_some()
        } else {
            same_key(&self.primary, key_id)
        };
        if !answered_for_primary {
            return Err(EnvelopeError::Keyring(format!(
                "{op} for {:?} answered with key {key_id:?}",
                self.primary
            )));
        }
        if key_id.len() > MAX_KEY_ID_LEN {
            return Err(EnvelopeError::Keyring(format!("KMS key id longer than {MAX_KEY_ID_LEN} bytes")));
        }
        if ciphertext.is_empty() || ciphertext.len() > MAX_EDK_LEN {
            return Err(EnvelopeError::Keyring(format!(
                "{op} returned a {}-byte encrypted key (expected 1..={MAX_EDK_LEN})",
                ciphertext.len()
            )));
        }
        Ok(ciphertext)
    }

    async fn generate_once(&self, context: &EncryptionContext) -> Result<GeneratedKey, EnvelopeError> {
        let out = self
            .client()
            .generate_data_key()
            .key_id(&self.primary)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(kms_context(context))
            .customize()
            .config_override(self.call_config())
            .send()
            .await
            .map_err(|e| map_sdk_error("GenerateDataKey", e));
        record_attempt("GenerateDataKey", &out);
        let mut out = out?;
        // Take the decoded key first so it is zeroized on every path below.
        let plaintext = Zeroizing::new(out.plaintext.take().map(Blob::into_inner).unwrap_or_default());
        let key_id = out
            .key_id
            .take()
            .ok_or_else(|| EnvelopeError::Keyring("GenerateDataKey response without KeyId".into()))?;
        let key_id = key_id.as_str();
        let ciphertext = out.ciphertext_blob.take().map(Blob::into_inner).unwrap_or_default();
        let ciphertext = self.checked_edk("GenerateDataKey", key_id, ciphertext)?;
        let plaintext = DataKey::from_slice(&plaintext).map_err(|_| {
            EnvelopeError::Keyring(format!("KMS returned a {}-byte data key", plaintext.len()))
        })?;
        Ok(GeneratedKey {
            plaintext,
            edk: EncryptedDataKey { kind: KeyringKind::AwsKms, key_id: key_id.to_owned(), ciphertext },
        })
    }

    async fn decrypt_once(
        &self,
        pinned_key: &str,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, EnvelopeError> {
        let out = self
            .client()
            .decrypt()
            .key_id(pinned_key)
            .ciphertext_blob(Blob::new(edk.ciphertext.clone()))
            .set_encryption_context(kms_context(context))
            .customize()
            .config_override(self.call_config())
            .send()
            .await
            .map_err(|e| map_sdk_error("Decrypt", e));
        record_attempt("Decrypt", &out);
        let mut out = out?;
        let plaintext = Zeroizing::new(out.plaintext.take().map(Blob::into_inner).unwrap_or_default());
        let key_id =
            out.key_id().ok_or_else(|| EnvelopeError::Keyring("Decrypt response without KeyId".into()))?;
        if !same_key(&edk.key_id, key_id) {
            return Err(EnvelopeError::Keyring(format!(
                "Decrypt of a data key under {:?} answered with key {key_id:?}",
                edk.key_id
            )));
        }
        DataKey::from_slice(&plaintext)
            .map_err(|_| EnvelopeError::Keyring(format!("KMS returned a {}-byte data key", plaintext.len())))
    }

    /// KMS `Encrypt` of an existing data key under the primary key (a second EDK, format v2).
    async fn encrypt_once(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<EncryptedDataKey, EnvelopeError> {
        let out = self
            .client()
            .encrypt()
            .key_id(&self.primary)
            .plaintext(Blob::new(key.expose_secret().to_vec()))
            .set_encryption_context(kms_context(context))
            .customize()
            .config_override(self.call_config())
            .send()
            .await
            .map_err(|e| map_sdk_error("Encrypt", e));
        record_attempt("Encrypt", &out);
        let mut out = out?;
        let key_id = out
            .key_id
            .take()
            .ok_or_else(|| EnvelopeError::Keyring("Encrypt response without KeyId".into()))?;
        let ciphertext = out.ciphertext_blob.take().map(Blob::into_inner).unwrap_or_default();
        let ciphertext = self.checked_edk("Encrypt", &key_id, ciphertext)?;
        Ok(EncryptedDataKey { kind: KeyringKind::AwsKms, key_id, ciphertext })
    }

    async fn decrypt_pinned(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, EnvelopeError> {
        if edk.kind != KeyringKind::AwsKms {
            return Err(EnvelopeError::UnknownKeyId(format!("{}:{}", edk.kind.name(), edk.key_id)));
        }
        if let Some(pinned) = self.allowed_key_ids().find(|k| !is_alias(k) && same_key(k, &edk.key_id)) {
            return retry(&self.policy, |_| self.decrypt_once(pinned, edk, context)).await;
        }
        // Only KMS can tell whether an alias covers this key; ask under each configured alias.
        let mut last = None;
        for alias in self.allowed_key_ids().filter(|k| is_alias(k)) {
            match retry(&self.policy, |_| self.decrypt_once(alias, edk, context)).await {
                Ok(key) => return Ok(key),
                // The ciphertext is under another key: try the next alias.
                Err(e @ (EnvelopeError::AccessDenied(_) | EnvelopeError::InvalidEncryptedDataKey(_))) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| EnvelopeError::UnknownKeyId(edk.key_id.clone())))
    }
}

impl fmt::Debug for AwsKmsKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsKeyring")
            .field("primary", &self.primary)
            .field("additional", &self.additional)
            .field("policy", &self.policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl Keyring for AwsKmsKeyring {
    fn kind(&self) -> KeyringKind {
        KeyringKind::AwsKms
    }

    fn primary_key_id(&self) -> String {
        self.primary.clone()
    }

    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        Box::pin(retry(&self.policy, move |_| self.generate_once(context)))
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        Box::pin(self.decrypt_pinned(edk, context))
    }

    fn encrypt_data_key<'a>(
        &'a self,
        key: &'a DataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
        Box::pin(retry(&self.policy, move |_| self.encrypt_once(key, context)))
    }

    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        edk.kind == KeyringKind::AwsKms
            && self.allowed_key_ids().any(|k| is_alias(k) || same_key(k, &edk.key_id))
    }
}

/// Counts one KMS request (one attempt: retries are requests too) by operation and outcome:
/// `larder_envelope_kms_requests_total{operation, outcome}`. The envelope's
/// `larder_envelope_keyring_requests_total` counts keyring calls, which may each make several.
fn record_attempt<T>(operation: &'static str, result: &Result<T, EnvelopeError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(EnvelopeError::Throttled(_)) => "throttled",
        Err(EnvelopeError::KmsUnavailable(_)) => "unavailable",
        Err(EnvelopeError::AccessDenied(_)) => "access_denied",
        Err(EnvelopeError::KeyNotFound(_)) => "key_not_found",
        Err(EnvelopeError::InvalidEncryptedDataKey(_)) => "invalid_ciphertext",
        Err(_) => "error",
    };
    metrics::counter!("larder_envelope_kms_requests_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
}

/// The context as KMS wants it (`None` when empty: no `EncryptionContext` field at all).
fn kms_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    if context.is_empty() {
        None
    } else {
        Some(context.pairs().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn is_alias(key: &str) -> bool {
    key.starts_with("alias/") || key.contains(":alias/")
}

/// The key id part of a key ARN (`arn:...:key/<id>`) or a bare key id; `None` for aliases and
/// anything else.
fn key_uuid(key: &str) -> Option<&str> {
    if key.starts_with("arn:") {
        let (_, id) = key.rsplit_once(":key/")?;
        (!id.is_empty()).then_some(id)
    } else if !key.is_empty() && !key.contains('/') && !key.contains(':') {
        Some(key)
    } else {
        None
    }
}

/// True when two key references name the same KMS key: equal strings, or the same key id in
/// key ARN / bare key id form (an ARN must then match an ARN exactly, region and account
/// included; a bare id matches any ARN with that id).
fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if a.starts_with("arn:") && b.starts_with("arn:") {
        return false;
    }
    matches!((key_uuid(a), key_uuid(b)), (Some(x), Some(y)) if x == y)
}

/// Sorts an SDK failure into the envelope's errors (and so into retryable or not).
fn map_sdk_error<E>(
    operation: &str,
    error: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> EnvelopeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let detail = format!(
                "{operation}: {} (HTTP {status}): {}",
                code.unwrap_or("unknown error"),
                ctx.err().message().unwrap_or("")
            );
            classify_service_error(code, status, detail)
        }
        SdkError::ConstructionFailure(_) => EnvelopeError::Keyring(format!(
            "{operation}: the request could not be built: {}",
            DisplayErrorContext(&error)
        )),
        SdkError::TimeoutError(_) => {
            EnvelopeError::KmsUnavailable(format!("{operation}: timed out: {}", DisplayErrorContext(&error)))
        }
        // Connection refused or reset, DNS, TLS, I/O, an unparseable answer: transient.
        _ => EnvelopeError::KmsUnavailable(format!("{operation}: {}", DisplayErrorContext(&error))),
    }
}

/// Classifies a KMS error response by its error code and HTTP status.
fn classify_service_error(code: Option<&str>, status: u16, detail: String) -> EnvelopeError {
    match code.unwrap_or("") {
        "ThrottlingException"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => EnvelopeError::Throttled(detail),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => EnvelopeError::AccessDenied(detail),
        "NotFoundException" | "DisabledException" | "KMSInvalidStateException" => {
            EnvelopeError::KeyNotFound(detail)
        }
        "InvalidCiphertextException" | "IncorrectKeyException" => {
            EnvelopeError::InvalidEncryptedDataKey(detail)
        }
        "KMSInternalException"
        | "KMSInternal"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalFailure" => EnvelopeError::KmsUnavailable(detail),
        _ if status >= 500 || status == 429 => {
            if status == 429 {
                EnvelopeError::Throttled(detail)
            } else {
                EnvelopeError::KmsUnavailable(detail)
            }
        }
        _ => EnvelopeError::Keyring(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            operation_timeout: Duration::from_secs(5),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    /// An operation failing with `error` for its first `n` calls, then answering its call count.
    async fn fails_first(calls: &AtomicU32, n: u32, error: EnvelopeError) -> Result<u32, EnvelopeError> {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= n {
            Err(error)
        } else {
            Ok(call)
        }
    }

    #[test]
    fn retries_throttling_and_transient_errors_until_success() {
        for error in [EnvelopeError::Throttled("t".into()), EnvelopeError::KmsUnavailable("u".into())] {
            let calls = AtomicU32::new(0);
            let got = rt().block_on(retry(&fast(), |_| fails_first(&calls, 3, error.clone())));
            assert_eq!(got, Ok(4));
            assert_eq!(calls.load(Ordering::SeqCst), 4);
        }
    }

    #[test]
    fn passes_the_attempt_number() {
        let seen = std::sync::Mutex::new(Vec::new());
        let got = rt().block_on(retry(&fast(), |attempt| {
            seen.lock().unwrap().push(attempt);
            async move {
                if attempt < 3 {
                    Err(EnvelopeError::Throttled("t".into()))
                } else {
                    Ok(())
                }
            }
        }));
        assert_eq!(got, Ok(()));
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn gives_up_after_max_attempts_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let got =
            rt().block_on(retry(&fast(), |_| fails_first(&calls, 100, EnvelopeError::Throttled("t".into()))));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        match got {
            Err(EnvelopeError::Throttled(d)) => assert!(d.contains("after 5 attempts"), "{d}"),
            other => panic!("expected Throttled, got {other:?}"),
        }
    }

    #[test]
    fn does_not_retry_permanent_errors() {
        for error in [
            EnvelopeError::AccessDenied("a".into()),
            EnvelopeError::KeyNotFound("k".into()),
            EnvelopeError::InvalidEncryptedDataKey("i".into()),
            EnvelopeError::UnknownKeyId("x".into()),
            EnvelopeError::Keyring("c".into()),
        ] {
            let calls = AtomicU32::new(0);
            let got = rt().block_on(retry(&fast(), |_| fails_first(&calls, 100, error.clone())));
            assert_eq!(got, Err(error));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn a_hanging_operation_ends_at_the_deadline() {
        let policy = RetryPolicy { operation_timeout: Duration::from_millis(200), ..fast() };
        let start = Instant::now();
        let got: Result<(), _> = rt().block_on(retry(&policy, |_| std::future::pending()));
        let took = start.elapsed();
        assert!(matches!(got, Err(EnvelopeError::KmsUnavailable(_))), "{got:?}");
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn the_deadline_bounds_retries_too() {
        // Backoff caps of 1 s would need many seconds for 50 attempts; the deadline stops it.
        let policy = RetryPolicy {
            max_attempts: 50,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            operation_timeout: Duration::from_millis(300),
        };
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let got =
            rt().block_on(retry(&policy, |_| fails_first(&calls, 100, EnvelopeError::Throttled("t".into()))));
        assert!(matches!(got, Err(EnvelopeError::Throttled(_))), "{got:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(calls.load(Ordering::SeqCst) < 50);
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff_cap(1), Duration::from_millis(10));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(20));
        assert_eq!(p.backoff_cap(4), Duration::from_millis(80));
        assert_eq!(p.backoff_cap(5), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(200), Duration::from_millis(100));
        let draws: Vec<Duration> = (0..200).map(|_| p.backoff(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(40)));
        // Full jitter: the draws spread over the range instead of sitting at the cap.
        assert!(draws.iter().any(|d| *d < Duration::from_millis(20)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(20)));
    }

    #[test]
    fn classifies_kms_error_codes() {
        let c = |code: &str, status| classify_service_error(Some(code), status, "d".into());
        assert!(matches!(c("ThrottlingException", 400), EnvelopeError::Throttled(_)));
        assert!(matches!(c("AccessDeniedException", 400), EnvelopeError::AccessDenied(_)));
        assert!(matches!(c("UnrecognizedClientException", 400), EnvelopeError::AccessDenied(_)));
        assert!(matches!(c("NotFoundException", 400), EnvelopeError::KeyNotFound(_)));
        assert!(matches!(c("DisabledException", 400), EnvelopeError::KeyNotFound(_)));
        assert!(matches!(c("KMSInvalidStateException", 400), EnvelopeError::KeyNotFound(_)));
        assert!(matches!(c("InvalidCiphertextException", 400), EnvelopeError::InvalidEncryptedDataKey(_)));
        assert!(matches!(c("IncorrectKeyException", 400), EnvelopeError::InvalidEncryptedDataKey(_)));
        assert!(matches!(c("KMSInternalException", 500), EnvelopeError::KmsUnavailable(_)));
        assert!(matches!(c("DependencyTimeoutException", 503), EnvelopeError::KmsUnavailable(_)));
        assert!(matches!(c("KeyUnavailableException", 500), EnvelopeError::KmsUnavailable(_)));
        assert!(matches!(c("SomethingNew", 502), EnvelopeError::KmsUnavailable(_)));
        assert!(matches!(c("SomethingNew", 429), EnvelopeError::Throttled(_)));
        assert!(matches!(c("ValidationException", 400), EnvelopeError::Keyring(_)));
        assert!(matches!(classify_service_error(None, 500, "d".into()), EnvelopeError::KmsUnavailable(_)));
    }

    #[test]
    fn key_references_compare_by_key_id() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let other_region = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(same_key(arn, arn));
        assert!(same_key("1234abcd-12ab-34cd-56ef-1234567890ab", arn));
        assert!(same_key(arn, "1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!same_key(arn, other_region));
        assert!(!same_key(
            arn,
            "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(!same_key("alias/x", arn));
        assert!(!same_key("", arn));
        assert!(!same_key("arn:aws:kms:us-east-1:123456789012:key/", "arn:aws:kms:us-east-1:1:key/"));
        assert!(is_alias("alias/pii") && is_alias("arn:aws:kms:us-east-1:123456789012:alias/pii"));
        assert!(!is_alias(arn));
    }
}
