//! Rewrapping stored values, one at a time, idempotently: the decisions behind `larder rewrap`
//! (the database loop, batches, checkpoints and rate limit live in the CLI).
//!
//! * [`RewrapMode::Encrypt`]: plaintext → ciphertext (the first migration of a column). A value
//!   that already is a larder ciphertext (text form that parses) is left alone, so running it
//!   twice never encrypts a ciphertext.
//! * [`RewrapMode::Rotate`]: re-encrypt every ciphertext that is not *current*: current means
//!   the format version this envelope writes and exactly the EDK master keys it writes (the
//!   primary keyring's primary key, then each [`with_keyring`](crate::EnvelopeBuilder::with_keyring)
//!   keyring's). This covers rotation to a new local master key, local keyring → KMS (an
//!   envelope whose primary is KMS and that [`decrypt_with`](crate::EnvelopeBuilder::decrypt_with)
//!   the local keyring), and v1 → v2 ([`format_v2`](crate::EnvelopeBuilder::format_v2) or a
//!   second keyring). Current values are left alone: a rerun does nothing.
//!
//! KMS key ids compare by the key id at the end of the ARN; a keyring configured with an alias
//! cannot tell offline whether a ciphertext is current, so every value is rewrapped once per
//! run: configure the key ARN for rewraps.

use crate::format;
use crate::{EncryptionContext, Envelope, EnvelopeError};

/// What a rewrap does to each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewrapMode {
    /// Plaintext → ciphertext; ciphertexts are left alone.
    Encrypt,
    /// Ciphertexts not made the way this envelope writes now → re-encrypted.
    Rotate,
}

/// The outcome for one value.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrapped {
    /// Already current: leave the stored value as it is.
    Current,
    /// Store this text-form ciphertext instead.
    Changed(String),
}

/// Rewraps values through one envelope (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Rewrapper {
    envelope: Envelope,
    mode: RewrapMode,
}

fn same_key_id(written: &str, wanted: &str) -> bool {
    written == wanted
        || written.rsplit_once('/').is_some_and(|(_, id)| id == wanted)
        || wanted.rsplit_once('/').is_some_and(|(_, id)| id == written)
}

impl Rewrapper {
    /// A rewrapper writing through `envelope` (which must also be able to decrypt the old
    /// values: add the old keyrings with [`decrypt_with`](crate::EnvelopeBuilder::decrypt_with)).
    pub fn new(envelope: Envelope, mode: RewrapMode) -> Self {
        Rewrapper { envelope, mode }
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether `stored` needs no work in this mode (no key needed, nothing decrypted).
    pub fn is_current(&self, stored: &str) -> bool {
        let parsed = format::from_text(stored.trim());
        match self.mode {
            RewrapMode::Encrypt => parsed.is_ok_and(|b| format::parse(&b).is_ok()),
            RewrapMode::Rotate => {
                let Ok(bytes) = parsed else { return false };
                let Ok(p) = format::parse(&bytes) else { return false };
                let Ok(edks) = p.edks() else { return false };
                let (version, wanted) = self.envelope.write_spec();
                p.version == version
                    && edks.len() == wanted.len()
                    && edks
                        .iter()
                        .zip(&wanted)
                        .all(|(e, (kind, id))| e.kind == *kind && same_key_id(&e.key_id, id))
            }
        }
    }

    /// The new stored value for `stored`, or [`Rewrapped::Current`]. In `Rotate` mode a value
    /// that does not decrypt is an error (the row is left alone by the caller); in `Encrypt`
    /// mode an empty value is an error (nothing to protect, probably a mistake).
    pub async fn rewrap(
        &self,
        stored: &str,
        context: &EncryptionContext,
    ) -> Result<Rewrapped, EnvelopeError> {
        if self.is_current(stored) {
            return Ok(Rewrapped::Current);
        }
        let plain = match self.mode {
            RewrapMode::Encrypt => {
                if stored.is_empty() {
                    return Err(EnvelopeError::ApiMisuse("refusing to encrypt an empty value"));
                }
                zeroize::Zeroizing::new(stored.to_owned())
            }
            RewrapMode::Rotate => {
                zeroize::Zeroizing::new(self.envelope.decrypt_text(stored.trim(), context).await?)
            }
        };
        Ok(Rewrapped::Changed(self.envelope.encrypt_text(&plain, context).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalKeyring;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn encrypt_then_rotate_then_v2_each_idempotent() {
        let rt = rt();
        let ctx = EncryptionContext::new().with("column", "phone");
        let k1 = || LocalKeyring::from_key_bytes("k1", [1; 32]).unwrap();
        let k2 = || LocalKeyring::from_key_bytes("k2", [2; 32]).unwrap();
        let enc = Rewrapper::new(Envelope::builder(k1()).build(), RewrapMode::Encrypt);
        let Rewrapped::Changed(c1) = rt.block_on(enc.rewrap("010-1234-5678", &ctx)).unwrap() else {
            panic!()
        };
        assert_eq!(rt.block_on(enc.rewrap(&c1, &ctx)).unwrap(), Rewrapped::Current, "never encrypts twice");
        assert!(rt.block_on(enc.rewrap("", &ctx)).is_err());

        let rot = Rewrapper::new(Envelope::builder(k2()).decrypt_with(k1()).build(), RewrapMode::Rotate);
        assert!(!rot.is_current(&c1));
        let Rewrapped::Changed(c2) = rt.block_on(rot.rewrap(&c1, &ctx)).unwrap() else { panic!() };
        assert_eq!(Envelope::inspect_text(&c2).unwrap().key_id, "k2");
        assert_eq!(rt.block_on(rot.rewrap(&c2, &ctx)).unwrap(), Rewrapped::Current);
        assert!(rt.block_on(rot.rewrap("010-1234-5678", &ctx)).is_err(), "plaintext is not a ciphertext");

        let v2 = Rewrapper::new(Envelope::builder(k2()).with_keyring(k1()).build(), RewrapMode::Rotate);
        let Rewrapped::Changed(c3) = rt.block_on(v2.rewrap(&c2, &ctx)).unwrap() else { panic!() };
        assert!(c3.starts_with("lv2."));
        assert_eq!(rt.block_on(v2.rewrap(&c3, &ctx)).unwrap(), Rewrapped::Current);
        let only_k1 = Envelope::builder(k1()).build();
        assert_eq!(rt.block_on(only_k1.decrypt_text(&c3, &ctx)).unwrap(), "010-1234-5678");
        assert!(same_key_id("arn:aws:kms:r:1:key/abc", "abc") && !same_key_id("k1", "k2"));
    }
}
