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
    /// The local keyring has wrapped as many data keys under its primary master key as it
    /// allows ([`MAX_WRAPS_PER_MASTER_KEY`](crate::MAX_WRAPS_PER_MASTER_KEY) by default): rotate
    /// the keyring (`larder keys rotate`) and load it again.
    WrapLimitReached {
        /// The primary key id.
        key_id: String,
        /// The limit reached.
        limit: u64,
    },
    /// The encryption context cannot be encoded (a key or value longer than the format's
    /// 32-bit length field). Nothing was encrypted or decrypted.
    ContextTooLarge(String),
    /// The local keyring file could not be created, read or parsed.
    KeyringFile(KeyringFileError),
}

/// What is wrong with a local keyring file (see `docs/keyring-format.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringFileError {
    /// An I/O error (`kind` is the `std::io::ErrorKind` name).
    Io {
        /// The file.
        path: String,
        /// `std::io::ErrorKind` as text.
        kind: String,
        /// The OS message.
        message: String,
    },
    /// `init` refuses to overwrite an existing keyring file.
    AlreadyExists(String),
    /// The file is readable or writable by group or others (like ssh, larder refuses it).
    InsecurePermissions {
        /// The file.
        path: String,
        /// Its permission bits, e.g. `0o644`.
        mode: u32,
    },
    /// The path is not a regular file.
    NotAFile(String),
    /// The file is larger than any keyring larder writes (1 MiB).
    TooLarge(String),
    /// The first line is not `larder-keyring <version>`.
    BadHeader,
    /// The keyring format version is not one this build reads.
    UnsupportedVersion(String),
    /// A line could not be parsed: 1-based line number and what is wrong.
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The same key id appears twice.
    DuplicateKeyId(String),
    /// No key is marked `primary`.
    NoPrimary,
    /// More than one key is marked `primary`.
    MultiplePrimaries,
    /// Another `rotate` is in progress (or crashed and left its temporary file behind).
    RotationInProgress(String),
    /// The keyring file belongs to another user than the one this process runs as.
    NotOwned {
        /// The file.
        path: String,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The directory holding the keyring is writable by group or others without the sticky
    /// bit, so another user could replace the file.
    InsecureDirectory {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for KeyringFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringFileError::Io { path, kind, message } => write!(f, "{path}: {kind}: {message}"),
            KeyringFileError::AlreadyExists(p) => {
                write!(f, "{p} already exists; refusing to overwrite a keyring (use rotate to add a key)")
            }
            KeyringFileError::InsecurePermissions { path, mode } => write!(
                f,
                "{path} has permissions {mode:#o}; a keyring must not be accessible by group or others \
                 (run: chmod 600 {path})"
            ),
            KeyringFileError::NotAFile(p) => write!(f, "{p} is not a regular file"),
            KeyringFileError::TooLarge(p) => write!(f, "{p} is larger than 1 MiB; not a larder keyring"),
            KeyringFileError::BadHeader => write!(f, "first line must be `larder-keyring 1`"),
            KeyringFileError::UnsupportedVersion(v) => write!(f, "unsupported keyring format version {v:?}"),
            KeyringFileError::BadLine { line, problem } => write!(f, "line {line}: {problem}"),
            KeyringFileError::DuplicateKeyId(id) => write!(f, "key id {id:?} appears more than once"),
            KeyringFileError::NoPrimary => write!(f, "no key is marked primary"),
            KeyringFileError::MultiplePrimaries => write!(f, "more than one key is marked primary"),
            KeyringFileError::NotOwned { path, owner, euid } => write!(
                f,
                "{path} is owned by uid {owner}, not by this process's user (uid {euid}); a keyring must \
                 belong to the user that uses it (run: chown {euid} {path})"
            ),
            KeyringFileError::InsecureDirectory { path, mode } => write!(
                f,
                "the keyring's directory {path} has permissions {mode:#o}: other users could replace the \
                 keyring; move it to a directory only its owner can write (or run: chmod go-w {path})"
            ),
            KeyringFileError::RotationInProgress(p) => {
                write!(f, "{p} exists: another rotation is running, or one crashed (then delete that file)")
            }
        }
    }
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
            EnvelopeError::WrapLimitReached { key_id, limit } => write!(
                f,
                "the local master key {key_id:?} has wrapped {limit} data keys, the most one process may \
                 wrap under one key (random 96-bit nonces); rotate the keyring (`larder keys rotate`) \
                 and load it again"
            ),
            EnvelopeError::ContextTooLarge(d) => write!(f, "the encryption context cannot be encoded: {d}"),
            EnvelopeError::KeyringFile(e) => write!(f, "keyring file: {e}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}
