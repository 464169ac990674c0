//! Envelope encryption of personal data fields (being built; see issue 4).
#![forbid(unsafe_code)]

mod context;
mod error;
mod keyring;

pub use context::EncryptionContext;
pub use error::EnvelopeError;
pub use keyring::{BoxFuture, DataKey, EncryptedDataKey, GeneratedKey, Keyring, KeyringKind};
