//! Shared test helpers: a counting wrapper around the real local keyring.

use std::sync::Arc;
use std::time::Duration;

use larder_envelope::{EncryptionContext, LocalKeyring};

pub use larder_envelope::CountingKeyring;

/// The AWS KMS keyring against moto, with fault-injecting wrappers.
#[cfg(feature = "aws-kms")]
pub mod kms;

/// The real [`LocalKeyring`] with a fixed test master key, counted, optionally slowed to a
/// KMS-like latency.
pub fn counting_test_key(delay: Option<Duration>) -> Arc<CountingKeyring<LocalKeyring>> {
    let keyring = CountingKeyring::new(LocalKeyring::from_key_bytes("k1", [0x11; 32]).unwrap());
    Arc::new(match delay {
        Some(d) => keyring.with_latency(d),
        None => keyring,
    })
}

pub fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}
