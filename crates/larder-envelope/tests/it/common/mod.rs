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

/// A file under the repository's `docs/` (the checked-in vector files).
pub fn docs_file(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name)
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex (as the vector files write it) to bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// An encryption context from (key, value) pairs.
pub fn context_of(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

/// HMAC-SHA-256 of `label` under `key`, computed with the `hmac` crate directly (the vector
/// tests' independent reading of the format).
#[cfg(feature = "test-vectors")]
pub fn hmac(key: &[u8], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    m.update(label);
    m.finalize().into_bytes().into()
}
