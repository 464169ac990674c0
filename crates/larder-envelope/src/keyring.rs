//! Keyrings: where data keys come from and how their encrypted copies are opened again.

use std::fmt;

use zeroize::Zeroizing;

use crate::{EncryptionContext, EnvelopeError};

/// A boxed, sendable future (keeps [`Keyring`] usable as `dyn Keyring`): `futures-util`'s own
/// alias, `Pin<Box<dyn Future<Output = T> + Send + 'a>>`, so a keyring written against either
/// name is the same type.
pub use futures_util::future::BoxFuture;

/// Which kind of keyring produced an encrypted data key. Written into every ciphertext as one
/// byte; the values never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyringKind {
    /// [`LocalKeyring`](crate::LocalKeyring): AES-256 master keys in a local file.
    Local,
    /// AWS KMS.
    AwsKms,
}

impl KeyringKind {
    /// The byte written into ciphertexts.
    pub fn to_byte(self) -> u8 {
        match self {
            KeyringKind::Local => 1,
            KeyringKind::AwsKms => 2,
        }
    }

    /// Parses the byte written into ciphertexts.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyringKind::Local),
            2 => Some(KeyringKind::AwsKms),
            _ => None,
        }
    }

    /// A short lowercase name (`local`, `aws-kms`).
    pub fn name(self) -> &'static str {
        match self {
            KeyringKind::Local => "local",
            KeyringKind::AwsKms => "aws-kms",
        }
    }
}

/// A 256-bit plaintext data key.
///
/// Immutable once made, zeroized on drop, intentionally neither `Clone` nor `Debug`-printable:
/// share it by reference (`Arc<DataKey>`), never by copying its bytes into a mutable buffer
/// (the bug this crate exists to make impossible).
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// Takes ownership of 32 key bytes. The caller's copy should be zeroized by the caller.
    pub fn from_array(bytes: [u8; 32]) -> Self {
        DataKey { bytes: Zeroizing::new(bytes) }
    }

    /// Copies a 32-byte slice (for example a KMS response) into a new key.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() != 32 {
            return Err(EnvelopeError::Keyring(format!("data key is {} bytes, expected 32", bytes.len())));
        }
        // Straight into the zeroize-on-drop buffer: no stack copy of the key is left behind.
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(bytes);
        Ok(DataKey { bytes: key })
    }

    /// The key bytes. Named to be noticed in review: nothing but the AEAD should read them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(AES-256, ..)")
    }
}

/// An encrypted copy of a data key, as stored in a ciphertext header.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct EncryptedDataKey {
    /// The keyring kind that can open it.
    pub kind: KeyringKind,
    /// The master key it is encrypted under (a local key id or a KMS key ARN). At most 255
    /// bytes of UTF-8.
    pub key_id: String,
    /// The keyring's opaque ciphertext of the data key. At most 65,535 bytes.
    pub ciphertext: Vec<u8>,
}

/// A fresh data key and its encrypted copy.
pub struct GeneratedKey {
    /// The plaintext key, for encrypting locally.
    pub plaintext: DataKey,
    /// Its encrypted copy, stored with every ciphertext made with it.
    pub edk: EncryptedDataKey,
}

/// A source of data keys: AWS KMS, the local file keyring, or your own.
///
/// Implementations make real remote calls; the envelope's data-key cache is what keeps those
/// calls rare, so a keyring itself should not cache.
pub trait Keyring: Send + Sync + 'static {
    /// The keyring kind, written into ciphertexts.
    fn kind(&self) -> KeyringKind;

    /// The master key that new data keys are generated under.
    fn primary_key_id(&self) -> String;

    /// Generates a new data key under the primary master key, bound to `context`.
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>>;

    /// Opens an encrypted data key. Must refuse (with [`EnvelopeError::UnknownKeyId`]) a key id
    /// it is not configured for, rather than trusting the id found in a ciphertext.
    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>>;

    /// Wraps an existing data key (made by another keyring) under this keyring's primary master
    /// key, bound to `context`: the second EDK of a multi-keyring ciphertext (format v2). The
    /// default refuses; [`LocalKeyring`](crate::LocalKeyring) wraps locally and the AWS KMS
    /// keyring calls KMS `Encrypt`.
    fn encrypt_data_key<'a>(
        &'a self,
        key: &'a DataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
        let _ = (key, context);
        Box::pin(async move {
            Err(EnvelopeError::Keyring(format!(
                "the {} keyring cannot wrap an existing data key (no encrypt_data_key)",
                self.kind().name()
            )))
        })
    }

    /// Whether this keyring would try to open `edk` (its kind, and a master key it is
    /// configured for), decided without a remote call. A multi-keyring envelope asks before
    /// calling [`Keyring::decrypt_data_key`], so a keyring is never called for an EDK it is
    /// not allowed to open. The default accepts every EDK of its kind; the keyring must still
    /// refuse unknown key ids in `decrypt_data_key`.
    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        edk.kind == self.kind()
    }
}

/// A keyring behind a smart pointer is the same keyring: share one with `Arc` (to keep a
/// handle, e.g. on a [`CountingKeyring`](crate::CountingKeyring)), or erase its type with `Box`.
macro_rules! forward_keyring {
    ($($ptr:ident)::+) => {
        impl<K: Keyring + ?Sized> Keyring for $($ptr)::+<K> {
            fn kind(&self) -> KeyringKind {
                (**self).kind()
            }

            fn primary_key_id(&self) -> String {
                (**self).primary_key_id()
            }

            fn generate_data_key<'a>(
                &'a self,
                context: &'a EncryptionContext,
            ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
                (**self).generate_data_key(context)
            }

            fn decrypt_data_key<'a>(
                &'a self,
                edk: &'a EncryptedDataKey,
                context: &'a EncryptionContext,
            ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
                (**self).decrypt_data_key(edk, context)
            }

            fn encrypt_data_key<'a>(
                &'a self,
                key: &'a DataKey,
                context: &'a EncryptionContext,
            ) -> BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
                (**self).encrypt_data_key(key, context)
            }

            fn accepts(&self, edk: &EncryptedDataKey) -> bool {
                (**self).accepts(edk)
            }
        }
    };
}

forward_keyring!(std::sync::Arc);
forward_keyring!(Box);
