//! The encryption context: non-secret string pairs bound to a ciphertext.

use std::collections::BTreeMap;

/// Non-secret `key = value` pairs that must be presented again to decrypt (for example
/// `table = customers`, `column = phone`). They are authenticated, not encrypted: a ciphertext
/// moved to another row or column fails to decrypt. Pairs are held sorted, so their order of
/// insertion never matters.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    pairs: BTreeMap<String, String>,
}

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a pair.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.insert(key.into(), value.into());
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
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A map of strings cannot hit the encoder's faults (no floats); the limit is the
        // largest possible, so the only failure left would be a > 4 GiB string.
        larder_key::encode_with_limit(&self.pairs, usize::MAX).unwrap_or_default()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        EncryptionContext { pairs: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

impl std::fmt::Debug for EncryptionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Context values are not secret by contract (they are stored or known by both sides).
        f.debug_map().entries(self.pairs.iter()).finish()
    }
}
