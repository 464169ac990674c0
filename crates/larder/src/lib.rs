//! larder keeps what services compute, and the keys they encrypt with, correctly across
//! threads, worker processes and hosts. This is the crate applications depend on; it
//! re-exports the workspace's focused crates behind features.
//!
//! | module | crate | what for |
//! |---|---|---|
//! | [`key`] | `larder-key` | stable, injective cache keys: `StableKey`, `KeySpace`, keyed BLAKE3 |
//! | [`cache`] (feature `cache`) | `larder-cache` | the memo cache: local tier; SQLite (feature `sqlite`), Redis and Redis Cluster (feature `redis`) tiers; [`memoize`] |
//! | [`envelope`] (feature `envelope` / `local-keyring`) | `larder-envelope` | envelope encryption, the local keyring, the data-key cache; the AWS KMS keyring with feature `aws-kms` |
//! | [`mask`] (feature `mask`) | `larder-mask` | masking of phone numbers, e-mail addresses and names for display |
//! | [`manual`] | – | the documents under `docs/`: formats byte by byte, the cache's design, reliability, benchmarks |
//!
//! Every feature is on by default. A service that needs less lists what it uses, for example
//! `larder = { version = "0.1", default-features = false, features = ["sqlite"] }` for keys
//! and a cache shared by the workers of one host, without any Redis or AWS crate.
//!
//! # The roles
//!
//! *key → cache → tier*: arguments become a canonical encoding ([`StableKey`]) and a key text
//! in a [`KeySpace`]; the [`cache::Cache`] looks the key up in an in-process tier, then in a
//! shared tier (a SQLite file for every worker on one host, or Redis / Redis Cluster), and runs
//! the function once per key for the whole fleet when both miss.
//!
//! *keyring → data-key cache → envelope*: a [`envelope::Keyring`] (AWS KMS, or the local
//! keyring file) makes data keys; the envelope's data-key cache keeps one immutable,
//! reference-shared key per (master key, context) within exact limits; the
//! [`envelope::Envelope`] seals and opens fields.
//!
//! # Example
//!
//! ```
//! use larder::{memoize, KeySpace, StableKey};
//!
//! #[derive(StableKey)]
//! struct LoanQuote { user_id: u64, amount_won: u64, rate_bp: u32, term_months: u32 }
//!
//! // Cached in the process-wide default cache (LARDER_CACHE, or a local tier).
//! #[memoize(namespace = "loan_calc", version = 1, ttl = "10m")]
//! fn monthly_payment(q: LoanQuote) -> u64 {
//!     // 100 ms of work in real life.
//!     q.amount_won * (10_000 + u64::from(q.rate_bp)) / 10_000 / u64::from(q.term_months)
//! }
//!
//! let q = || LoanQuote { user_id: 7, amount_won: 3_600_000, rate_bp: 450, term_months: 36 };
//! assert_eq!(monthly_payment(q()), 104_500);
//! assert_eq!(monthly_payment(q()), 104_500); // a hit
//!
//! // The key every worker process computes for this value:
//! let key = KeySpace::new("loan_calc", 1)?.key(&q())?;
//! assert!(key.as_str().starts_with("loan_calc:v1:"));
//! # Ok::<(), larder::KeyError>(())
//! ```
//!
//! # What larder does not do
//!
//! * It is not a KMS and never rotates KMS master keys; it is not a database (cache entries
//!   may vanish at any time); it offers no searchable or deterministic encryption.
//! * It never keys anything on `std::hash::Hash`, `DefaultHasher` or `RandomState`: their
//!   output is seeded per process or unspecified across Rust releases.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod manual;

// The README's Rust snippets, compiled and run as doctests (`cargo test -p larder --doc`).
#[cfg(all(doctest, feature = "cache", feature = "envelope", feature = "mask"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Stable, injective cache keys (`larder-key`).
pub mod key {
    pub use larder_key::*;
}
// `StableKey` names both the trait and `#[derive(StableKey)]`; this one `use` re-exports both.
// The derive finds the trait at `::larder::key` when the user's crate depends on `larder` only.
pub use larder_key::{CacheKey, KeyError, KeySecret, KeySpace, StableKey};

/// The memo cache (`larder-cache`): tiers, single-flight, leases, XFetch, fail-open.
#[cfg(feature = "cache")]
pub mod cache {
    pub use larder_cache::*;
}
/// `#[memoize]`: caches a function's results in a [`cache::Cache`].
#[cfg(feature = "cache")]
pub use larder_cache::memoize;

/// Envelope encryption of personal data (`larder-envelope`): keyrings, the data-key cache,
/// ciphertext format v1.
#[cfg(feature = "envelope")]
pub mod envelope {
    pub use larder_envelope::*;
}
/// Masking of phone numbers, e-mail addresses and names for display (`larder-mask`; the same
/// module as `larder::envelope::mask`).
#[cfg(feature = "mask")]
pub use larder_mask as mask;
