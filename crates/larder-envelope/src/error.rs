//! The envelope's error type.

use std::fmt;

/// Everything that can go wrong when encrypting or decrypting.
///
/// Decryption failures never return partial or empty plaintext: the caller gets one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input is not a well-formed larder ciphertext: `what` is wrong at byte `offset`.
    Malformed {
        /// What was expected or found.
        what: &'static str,
        /// Byte offset into the (binary) ciphertext.
        offset: usize,
    },
    /// The ciphertext's format version is not one this build reads.
    UnsupportedVersion(u8),
    /// The ciphertext's algorithm id is not one this build knows.
    UnsupportedAlgorithm(u8),
    /// The ciphertext's keyring kind byte is unknown.
    UnsupportedKeyring(u8),
    /// The ciphertext names a master key this keyring is not configured to use.
    UnknownKeyId(String),
    /// Authentication failed: wrong encryption context, or the ciphertext was altered.
    AuthenticationFailed,
    /// The data key does not match the key commitment in the header (the ciphertext was
    /// built to decrypt under more than one key, or its EDK was swapped).
    KeyCommitmentMismatch,
    /// The KMS (or another remote keyring) could not be reached or failed transiently, after
    /// retries.
    KmsUnavailable(String),
    /// The KMS refused the request rate (ThrottlingException), after retries.
    Throttled(String),
    /// The KMS denied access to the key.
    AccessDenied(String),
    /// The KMS key does not exist or is disabled.
    KeyNotFound(String),
    /// The KMS (or local keyring) could not decrypt the encrypted data key.
    InvalidEncryptedDataKey(String),
    /// A keyring file or keyring configuration problem.
    Keyring(String),
    /// The plaintext is too large for the format (or for the key's remaining byte budget).
    PlaintextTooLarge,
    /// Decrypted bytes were expected to be UTF-8 text and are not.
    NotUtf8,
    /// A caller mistake (API misuse), never caused by untrusted data.
    ApiMisuse(&'static str),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Malformed { what, offset } => {
                write!(f, "malformed ciphertext: {what} (at byte {offset})")
            }
            EnvelopeError::UnsupportedVersion(v) => write!(f, "unsupported ciphertext format version {v}"),
            EnvelopeError::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm id {a}"),
            EnvelopeError::UnsupportedKeyring(k) => write!(f, "unsupported keyring kind {k}"),
            EnvelopeError::UnknownKeyId(id) => {
                write!(f, "the ciphertext's master key {id:?} is not one this keyring is configured for")
            }
            EnvelopeError::AuthenticationFailed => {
                write!(f, "authentication failed: wrong encryption context, or the ciphertext was altered")
            }
            EnvelopeError::KeyCommitmentMismatch => {
                write!(f, "key commitment mismatch: the data key does not belong to this ciphertext")
            }
            EnvelopeError::KmsUnavailable(d) => write!(f, "KMS unavailable: {d}"),
            EnvelopeError::Throttled(d) => write!(f, "KMS throttled the request: {d}"),
            EnvelopeError::AccessDenied(d) => write!(f, "KMS access denied: {d}"),
            EnvelopeError::KeyNotFound(d) => write!(f, "KMS key not found or disabled: {d}"),
            EnvelopeError::InvalidEncryptedDataKey(d) => {
                write!(f, "the encrypted data key could not be decrypted: {d}")
            }
            EnvelopeError::Keyring(d) => write!(f, "keyring error: {d}"),
            EnvelopeError::PlaintextTooLarge => write!(f, "plaintext too large"),
            EnvelopeError::NotUtf8 => write!(f, "decrypted value is not UTF-8 text"),
            EnvelopeError::ApiMisuse(d) => write!(f, "API misuse: {d}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}
