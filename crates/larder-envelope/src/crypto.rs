//! Per-data-key cryptographic state: the expanded AES-256-GCM key and the key commitment,
//! derived once from a [`DataKey`] and then shared read-only by every thread.

use std::fmt;

use aes_gcm::aead::{AeadInOut, Nonce, Tag};
use aes_gcm::{Aes256Gcm, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{DataKey, EnvelopeError};

/// Length of the AES-GCM nonce (96 bits).
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the key commitment.
pub(crate) const COMMITMENT_LEN: usize = 32;

/// HMAC label of the key commitment (format v1, algorithm 1).
const COMMIT_LABEL: &[u8] = b"larder-envelope v1 key commitment";
/// HMAC label of the AES-256-GCM message key (format v1, algorithm 1).
const ENC_LABEL: &[u8] = b"larder-envelope v1 message encryption key";

type HmacSha256 = Hmac<Sha256>;

/// `HMAC-SHA-256(key, label)`. HMAC accepts keys of any length, so this does not fail for a
/// 32-byte key; if it ever did, the caller gets an error — never an all-zero derived key.
fn hmac_label(key: &[u8; 32], label: &[u8]) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key)
        .map_err(|_| EnvelopeError::Keyring("HMAC-SHA-256 refused a 32-byte data key".into()))?;
    mac.update(label);
    let mut out = Zeroizing::new([0u8; 32]);
    // The finalized tag is zeroized on drop (hmac's `zeroize` feature).
    out.copy_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Everything derived from one data key. Immutable after construction; shared through `Arc`.
///
/// The AES key schedule and GHASH key are computed once here, so warm operations only run the
/// cipher. `Aes256Gcm` zeroizes its state on drop (aes-gcm's `zeroize` feature).
pub(crate) struct KeyMaterial {
    cipher: Aes256Gcm,
    commitment: [u8; COMMITMENT_LEN],
}

impl KeyMaterial {
    /// Derives the message key and the commitment from a data key:
    /// `enc_key = HMAC-SHA-256(data_key, ENC_LABEL)`, `commitment = HMAC-SHA-256(data_key,
    /// COMMIT_LABEL)`.
    pub(crate) fn derive(key: &DataKey) -> Result<Self, EnvelopeError> {
        let enc = hmac_label(key.expose_secret(), ENC_LABEL)?;
        let commit = hmac_label(key.expose_secret(), COMMIT_LABEL)?;
        let cipher = aes_from(&enc);
        // The commitment is public (it is written into every ciphertext); no need to zeroize.
        Ok(KeyMaterial { cipher, commitment: *commit })
    }

    pub(crate) fn commitment(&self) -> &[u8; COMMITMENT_LEN] {
        &self.commitment
    }

    /// Constant-time comparison with a commitment read from a ciphertext.
    pub(crate) fn commitment_matches(&self, other: &[u8]) -> bool {
        other.len() == COMMITMENT_LEN && bool::from(self.commitment.ct_eq(other))
    }

    /// Appends `nonce || ciphertext || tag` of `plaintext` to `out`, authenticating `aad`.
    pub(crate) fn seal_into(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let body = out.get_mut(start..).ok_or(EnvelopeError::ApiMisuse("buffer"))?;
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(nonce), aad, body.into())
            .map_err(|_| EnvelopeError::PlaintextTooLarge)?;
        out.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// Opens `ciphertext || tag` (the nonce is passed separately), authenticating `aad`.
    /// On failure no plaintext is returned (the partially decrypted buffer is zeroized).
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::AuthenticationFailed)?;
        let body_len =
            ciphertext_and_tag.len().checked_sub(TAG_LEN).ok_or(EnvelopeError::AuthenticationFailed)?;
        let (body, tag) = ciphertext_and_tag.split_at(body_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| EnvelopeError::AuthenticationFailed)?;
        let mut buf = Zeroizing::new(body.to_vec());
        self.cipher
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                aad,
                buf.as_mut_slice().into(),
                &Tag::<Aes256Gcm>::from(tag),
            )
            .map_err(|_| EnvelopeError::AuthenticationFailed)?;
        Ok(buf)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(AES-256-GCM, ..)")
    }
}

/// A fresh 96-bit nonce from larder-fork's per-thread ChaCha12 generator: seeded from the OS,
/// reseeded from the OS in a forked child and every 1 MiB, so no two processes of a forked
/// fleet share its stream (see docs/ciphertext-format.md for why not the OS RNG per call).
#[inline]
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], EnvelopeError> {
    let mut n = [0u8; NONCE_LEN];
    larder_fork::fill(&mut n).map_err(|e| EnvelopeError::Keyring(e.to_string()))?;
    Ok(n)
}

/// A fresh 32-byte key (data keys, master keys) or wrap nonce straight from the OS generator:
/// rare values, so the system call does not matter, and no user-space state can be shared.
pub(crate) fn os_random<const N: usize>() -> Result<Zeroizing<[u8; N]>, EnvelopeError> {
    let mut k = Zeroizing::new([0u8; N]);
    larder_fork::fill_os(k.as_mut()).map_err(|e| EnvelopeError::Keyring(e.to_string()))?;
    Ok(k)
}

/// Seals with a raw AES-256-GCM key (used by the local keyring to wrap data keys).
pub(crate) fn wrap_with(
    master: &Aes256Gcm,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(NONCE_LEN..).ok_or(EnvelopeError::ApiMisuse("buffer"))?;
    let tag = master
        .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(nonce), aad, body.into())
        .map_err(|_| EnvelopeError::PlaintextTooLarge)?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Opens `nonce || ciphertext || tag` made by [`wrap_with`].
pub(crate) fn unwrap_with(
    master: &Aes256Gcm,
    aad: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let bad = || EnvelopeError::InvalidEncryptedDataKey("wrapped data key failed authentication".into());
    let nonce = wrapped.get(..NONCE_LEN).ok_or_else(bad)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
    let rest = wrapped.get(NONCE_LEN..).ok_or_else(bad)?;
    let body_len = rest.len().checked_sub(TAG_LEN).ok_or_else(bad)?;
    let (body, tag) = rest.split_at(body_len);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| bad())?;
    let mut buf = Zeroizing::new(body.to_vec());
    master
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(nonce),
            aad,
            buf.as_mut_slice().into(),
            &Tag::<Aes256Gcm>::from(tag),
        )
        .map_err(|_| bad())?;
    Ok(buf)
}

/// Builds an AES-256-GCM instance from raw key bytes. The key is copied into a zeroize-on-drop
/// buffer of the cipher's key type (not a stack temporary), from which the cipher expands its
/// own key schedule (itself zeroized on drop).
pub(crate) fn aes_from(key: &[u8; 32]) -> Aes256Gcm {
    /// The cipher's key type, wiped on drop (hybrid-array's `Array` has no `Zeroize` here).
    struct KeyBuf(aes_gcm::Key<Aes256Gcm>);
    impl Drop for KeyBuf {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(self.0.as_mut_slice());
        }
    }
    let mut k = KeyBuf(Default::default());
    k.0.copy_from_slice(key);
    Aes256Gcm::new(&k.0)
}
