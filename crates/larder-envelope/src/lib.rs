//! Envelope encryption of personal data fields (phone numbers, names, addresses) with a
//! data-key cache that is safe under any concurrency by construction.
//!
//! # What it is for
//!
//! A service that stores personal data encrypts each field with a *data key*; the data key is
//! generated and encrypted by a master key in a KMS (or the local keyring file), and its
//! encrypted copy (EDK) is stored in every ciphertext. Calling the KMS for every field costs
//! money and hits request quotas, so data keys are cached. This crate does that caching so that
//! the bug behind it (one mutable key buffer shared by many threads, garbled keys, customers
//! seeing blank phone numbers) cannot happen:
//!
//! - **roles**: a [`Keyring`] makes and opens data keys ([`LocalKeyring`], AWS KMS behind the
//!   `aws-kms` feature) → the data-key cache keeps one active key per (master key, context)
//!   with exact limits → the [`Envelope`] seals and opens fields in [ciphertext format
//!   v1 or v2](format) (v2: one data key wrapped by several keyrings, any one decrypts);
//! - key material is immutable after derivation, shared through `Arc`, zeroized on drop, and
//!   has no `Clone`, `Debug` output, `Display` or serde;
//! - usage limits (age, messages, bytes) are reserved with atomics, so they hold exactly under
//!   any number of threads; the fast path takes only shared (read) locks, never around crypto,
//!   and never waits on a keyring;
//! - any number of concurrent callers on a cold, expired or exhausted key cause exactly one
//!   keyring call (single flight, also on the decrypt side), and a key nearing its limits is
//!   replaced in the background;
//! - every decryption failure is a typed [`EnvelopeError`], never empty or partial plaintext;
//! - [`mask`] renders phone numbers, e-mail addresses and names for display;
//! - [`blind`] computes blind indexes (normalized, keyed, truncated digests) for exact-match
//!   search over encrypted columns (docs/blind-index.md).
//!
//! # What it does not do
//!
//! - It is **not a KMS**: master keys live in AWS KMS or in a local keyring file; this crate
//!   never exports them.
//! - It does **not rotate KMS master keys** (that is KMS's job); [`LocalKeyring::rotate`] only
//!   adds a new local master key, and nothing re-encrypts old ciphertexts.
//! - **No deterministic or searchable encryption**: the same plaintext encrypts differently
//!   every time (random nonces), so encrypted columns cannot be indexed or compared. For
//!   exact-match lookups, store a [`blind`] index (a keyed, truncated digest under a separate
//!   index key) in a separate column.
//! - It does not store the encryption context; the caller must present the same context to
//!   decrypt.
//! - It does not need you to build envelopes after forking: a child of `fork()` (gunicorn
//!   `--preload`, uWSGI, Celery prefork) gets its own data key, nonce stream, runtime and KMS
//!   connections on first use (see `larder-fork` and docs/ciphertext-format.md, "Fork
//!   safety"). It cannot see a child made by a raw `clone` system call.
//!
//! # Defaults and guarantees
//!
//! | what | default | guarantee (tested) |
//! |---|---|---|
//! | data key lifetime | 5 min, 2^20 messages, 2^32 bytes ([`DataKeyLimits`]) | no EDK in more ciphertexts than `max_messages` (hard cap 2^32), under any thread count |
//! | cold key | one keyring call | 100 concurrent callers → exactly 1 `generate_data_key`; cancelled callers do not wedge it |
//! | refresh | a standby key is generated in the background at 75 % of messages/bytes, 30 s before max age | a steady stream of encrypts never waits on the keyring after the first |
//! | decrypt cache | 5 min TTL, 10,000 keys ([`EnvelopeBuilder::decrypt_cache`]) | concurrent misses on one EDK → 1 `decrypt_data_key`; keys of this envelope's own encrypts are pre-seeded |
//! | ciphertext | [format v1](format), `lv1.` text form; v2 (`lv2.`) with [`EnvelopeBuilder::with_keyring`] | 62 bytes + EDK fields of overhead (141 bytes for a phone number with the local keyring); v2: one byte more per ciphertext, all EDKs in the header |
//! | several keyrings | primary generates, each additional keyring wraps the same data key | one call per keyring per cold data key under any concurrency; decryption tries keyrings in order, each only on EDKs it accepts |
//!
//! Counters for the CLI and tests are in [`Envelope::stats`]; the same are published through
//! the `metrics` facade, and [`CostEstimate`] turns request rates into a monthly KMS bill
//! (see [`cost`]).
//!
//! Synchronous code uses [`BlockingEnvelope`] (`envelope.blocking()?`), which shares the
//! envelope's caches and runs refreshes on its own one-thread Tokio runtime. The async methods
//! need no particular runtime for the warm path; background refreshes are spawned on Tokio when
//! a Tokio runtime is present, otherwise the caller that triggered the refresh runs it after
//! making its own ciphertext.
//!
//! # Example
//!
//! ```
//! use larder_envelope::{mask, DataKeyLimits, EncryptionContext, Envelope, LocalKeyring};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("larder-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("keyring");
//! # let _ = std::fs::remove_file(&path);
//! // `larder keys init` does this once; the file gets mode 0600.
//! let keyring = LocalKeyring::init(&path)?;
//! let envelope = Envelope::builder(keyring)
//!     .data_key_limits(DataKeyLimits {
//!         max_age: Duration::from_secs(300),
//!         max_messages: 1 << 20,
//!         max_bytes: 1 << 32,
//!     })
//!     .build();
//! let context = EncryptionContext::new().with("table", "inquiries").with("column", "phone");
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let stored: String = envelope.encrypt_text("010-1234-5678", &context).await?;
//!     assert!(stored.starts_with("lv1."));
//!     let phone = envelope.decrypt_text(&stored, &context).await?;
//!     assert_eq!(mask::phone(&phone).as_deref(), Ok("010-****-5678"));
//!     // Another context (another column) cannot open it.
//!     let other = EncryptionContext::new().with("table", "inquiries").with("column", "name");
//!     assert!(envelope.decrypt_text(&stored, &other).await.is_err());
//!     Ok::<_, larder_envelope::EnvelopeError>(())
//! })?;
//! assert_eq!(envelope.stats().generate_calls, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod blind;
mod blocking;
mod cache;
mod clock;
mod context;
pub mod cost;
mod counting;
mod crypto;
mod envelope;
mod error;
pub mod format;
mod guard;
mod keyring;
mod local;
mod multi;
pub mod rewrap;
mod sync;

/// Masking for display: the `larder-mask` crate, re-exported so `larder_envelope::mask` keeps
/// working.
pub use larder_mask as mask;

#[cfg(feature = "aws-kms")]
pub mod aws;
// The keyring and its configuration at the root; the generic helpers (`aws::retry`,
// `aws::is_retryable`) stay in their module, where their names say what they retry.
#[cfg(feature = "aws-kms")]
pub use aws::{aws_sdk_kms, AwsKmsKeyring, AwsKmsKeyringBuilder, RetryPolicy};

pub use blocking::BlockingEnvelope;
pub use cache::{
    DataKeyLimits, HARD_MAX_MESSAGES, MAX_REFRESH_LEAD, NEGATIVE_DECRYPT_CAPACITY, NEGATIVE_DECRYPT_TTL,
};
pub use context::EncryptionContext;
pub use cost::{CostEstimate, EnvelopeStats, KmsPrices};
pub use counting::CountingKeyring;
#[cfg(feature = "test-vectors")]
#[doc(hidden)]
pub use envelope::dangerous_encrypt_v2_with_fixed_key_and_nonce;
/// Deterministic encryption for test vectors only (feature `test-vectors`).
#[cfg(feature = "test-vectors")]
pub use envelope::dangerous_encrypt_with_fixed_key_and_nonce;
pub use envelope::{
    Envelope, EnvelopeBuilder, DEFAULT_DECRYPT_CAPACITY, DEFAULT_DECRYPT_TTL, DEFAULT_MAX_PARTITIONS,
};
pub use error::{EnvelopeError, KeyringFileError};
pub use format::{EdkInfo, HeaderInfo};
pub use keyring::{BoxFuture, DataKey, EncryptedDataKey, GeneratedKey, Keyring, KeyringKind};
pub use local::{LocalKeyInfo, LocalKeyring, MAX_WRAPS_PER_MASTER_KEY};
