//! The encryption context: non-secret string pairs bound to a ciphertext.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use crate::EnvelopeError;

/// Non-secret `key = value` pairs that must be presented again to decrypt (for example
/// `table = customers`, `column = phone`). They are authenticated, not encrypted: a ciphertext
/// moved to another row or column fails to decrypt. Pairs are held sorted, so their order of
/// insertion never matters.
#[derive(Clone, Default)]
pub struct EncryptionContext {
    pairs: BTreeMap<String, String>,
    /// The canonical encoding, computed on first use (reset by every mutation), so a context
    /// reused for many values (one per column, say) is encoded once.
    canonical: OnceLock<Result<Vec<u8>, larder_key::KeyError>>,
}

impl PartialEq for EncryptionContext {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for EncryptionContext {}

impl Hash for EncryptionContext {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pairs.hash(state);
    }
}

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a pair.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.insert(key.into(), value.into());
        self.canonical = OnceLock::new();
    }

    /// The pairs, sorted by key.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.pairs
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The canonical, injective encoding of the pairs (larder-key's map encoding), used as
    /// additional authenticated data and in cache partition keys.
    ///
    /// Fails with [`EnvelopeError::ContextTooLarge`] when a key or value is longer than the
    /// format's 32-bit length field (4 GiB): such a context cannot be encoded, and is never
    /// replaced by an empty encoding.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.canonical().map(<[u8]>::to_vec)
    }

    /// [`EncryptionContext::canonical_bytes`] without copying (cached, failure included).
    pub(crate) fn canonical(&self) -> Result<&[u8], EnvelopeError> {
        // A map of strings cannot hit the encoder's float faults and the limit is the largest
        // possible, so the only failure is a length over the format's 32-bit field.
        match self.canonical.get_or_init(|| larder_key::encode_with_limit(&self.pairs, usize::MAX)) {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(EnvelopeError::ContextTooLarge(e.to_string())),
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        EncryptionContext {
            pairs: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            canonical: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for EncryptionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Context values are not secret by contract (they are stored or known by both sides).
        f.debug_map().entries(self.pairs.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_encoding_follows_mutation() {
        let mut c = EncryptionContext::new().with("a", "1");
        let first = c.canonical_bytes().unwrap();
        c.insert("b", "2");
        assert_ne!(c.canonical_bytes().unwrap(), first);
        let same: EncryptionContext = [("b", "2"), ("a", "1")].into_iter().collect();
        assert_eq!(same.canonical_bytes(), c.canonical_bytes());
        assert_eq!(same, c);
        let clone = c.clone();
        assert_eq!(clone.canonical_bytes(), c.canonical_bytes());
        assert_eq!(EncryptionContext::new().with("a", "1").canonical_bytes().unwrap(), first);
    }
}
