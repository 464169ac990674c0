//! The one way this crate calls a keyring: count the call, run it inside a `tracing` span,
//! turn a panic into a typed error, and record the outcome and latency.
//!
//! Every `generate_data_key`, `encrypt_data_key` and `decrypt_data_key` call of the envelope
//! (cached flights, the no-cache path, multi-keyring wrapping, decrypt flights) goes through
//! [`generate`], [`wrap`] or [`decrypt`], so a panicking keyring never poisons a shared flight
//! and no call goes uncounted.
//!
//! What is observed (docs/ciphertext-format.md, "Observability"):
//!
//! - span `keyring_call` (target `larder_envelope`, level info) with fields `operation`
//!   (`generate_data_key` / `encrypt_data_key` / `decrypt_data_key`), `keyring` (`local` /
//!   `aws-kms`), then `outcome` (`ok`, `panic` or the error's [`outcome`] name) and
//!   `latency_us` once the call ends;
//! - metrics `larder_envelope_keyring_requests_total` (generate and decrypt, as before, plus
//!   `operation` = `encrypt_data_key` for multi-keyring wraps),
//!   `larder_envelope_keyring_errors_total`, and the histogram
//!   `larder_envelope_keyring_seconds` {`operation`, `keyring`, `outcome`}.
//!
//! No field or message carries key material, plaintext, an EDK or a context value: the span
//! is built from the operation and the keyring kind only, and errors are reduced to their
//! variant name. The test `tracing_output` captures the output of an encrypt and a decrypt
//! and checks it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::cost::{Counters, Op};
use crate::keyring::{DataKey, EncryptedDataKey, GeneratedKey, Keyring};
use crate::{EncryptionContext, EnvelopeError};

/// A keyring's new data key for `context` (its primary master key).
pub(crate) async fn generate(
    keyring: &dyn Keyring,
    context: &EncryptionContext,
    counters: &Counters,
) -> Result<GeneratedKey, EnvelopeError> {
    guarded(Op::Generate, keyring, counters, keyring.generate_data_key(context)).await
}

/// `key` wrapped by `keyring` (the extra EDKs of format v2).
pub(crate) async fn wrap(
    keyring: &dyn Keyring,
    key: &DataKey,
    context: &EncryptionContext,
    counters: &Counters,
) -> Result<EncryptedDataKey, EnvelopeError> {
    guarded(Op::Wrap, keyring, counters, keyring.encrypt_data_key(key, context)).await
}

/// `edk` opened by `keyring`.
pub(crate) async fn decrypt(
    keyring: &dyn Keyring,
    edk: &EncryptedDataKey,
    context: &EncryptionContext,
    counters: &Counters,
) -> Result<DataKey, EnvelopeError> {
    guarded(Op::Decrypt, keyring, counters, keyring.decrypt_data_key(edk, context)).await
}

async fn guarded<T>(
    op: Op,
    keyring: &dyn Keyring,
    counters: &Counters,
    call: impl Future<Output = Result<T, EnvelopeError>>,
) -> Result<T, EnvelopeError> {
    let kind = keyring.kind();
    counters.record_call(op, kind);
    let span = tracing::info_span!(
        target: "larder_envelope",
        "keyring_call",
        operation = op.name(),
        keyring = kind.name(),
        outcome = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    let start = Instant::now();
    let result = AssertUnwindSafe(call).catch_unwind().instrument(span.clone()).await;
    let latency = start.elapsed();
    let (result, outcome) = match result {
        Ok(Ok(v)) => (Ok(v), "ok"),
        Ok(Err(e)) => {
            let o = outcome(&e);
            (Err(e), o)
        }
        Err(_) => (Err(EnvelopeError::Keyring(format!("the keyring panicked in {}", op.name()))), "panic"),
    };
    span.record("outcome", outcome);
    span.record("latency_us", u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    if result.is_err() {
        counters.record_keyring_error();
    }
    metrics::histogram!("larder_envelope_keyring_seconds",
        "operation" => op.name(), "keyring" => kind.name(), "outcome" => outcome)
    .record(latency.as_secs_f64());
    result
}

/// A keyring error's variant, as a span field or metric label: a fixed, small set of names
/// that carries none of the error's text.
pub(crate) fn outcome(e: &EnvelopeError) -> &'static str {
    match e {
        EnvelopeError::UnknownKeyId(_) => "unknown_key_id",
        EnvelopeError::KmsUnavailable(_) => "kms_unavailable",
        EnvelopeError::Throttled(_) => "throttled",
        EnvelopeError::AccessDenied(_) => "access_denied",
        EnvelopeError::KeyNotFound(_) => "key_not_found",
        EnvelopeError::InvalidEncryptedDataKey(_) => "invalid_encrypted_data_key",
        EnvelopeError::WrapLimitReached { .. } => "wrap_limit_reached",
        EnvelopeError::ContextTooLarge(_) => "context_too_large",
        EnvelopeError::KeyringFile(_) => "keyring_file",
        _ => "error",
    }
}
