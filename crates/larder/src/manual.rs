//! The manual: the documents under `docs/` in the repository, the same text, reachable from
//! rustdoc (the way rustls ships its `manual`). Formats are specified byte by byte, with the
//! checked-in vector files named in each page; the other pages describe behaviour, defaults,
//! how things are tested and how each figure was measured.
//!
//! | page | what |
//! |---|---|
//! | [`key_format`] | the cache-key encoding and digest, byte by byte |
//! | [`cache`] | the memo cache: tiers, single-flight, leases, companions, production Redis |
//! | [`cache_value_format`] | the frame every shared-tier value is stored in |
//! | [`ciphertext_format`] | ciphertext formats v1 and v2, and what the envelope logs |
//! | [`keyring_format`] | the local keyring file |
//! | [`blind_index`] | blind indexes for exact-match search over encrypted columns |
//! | [`rewrap`] | `larder rewrap`: re-encrypting a stored column |
//! | [`python`] | the Python package |
//! | [`django`] | the Django cache backend and gunicorn |
//! | [`reliability`] | fuzzing, loom models, the fault-injection soak, advisories |
//! | [`benchmarks`] | every measured figure and the command behind it |
//!
//! Links between pages point at their files in the repository (`docs/…`).

#[doc = include_str!("../../../docs/key-format.md")]
pub mod key_format {}
#[doc = include_str!("../../../docs/cache.md")]
pub mod cache {}
#[doc = include_str!("../../../docs/cache-value-format.md")]
pub mod cache_value_format {}
#[doc = include_str!("../../../docs/ciphertext-format.md")]
pub mod ciphertext_format {}
#[doc = include_str!("../../../docs/keyring-format.md")]
pub mod keyring_format {}
#[doc = include_str!("../../../docs/blind-index.md")]
pub mod blind_index {}
#[doc = include_str!("../../../docs/rewrap.md")]
pub mod rewrap {}
#[doc = include_str!("../../../docs/python.md")]
pub mod python {}
#[doc = include_str!("../../../docs/django.md")]
pub mod django {}
#[doc = include_str!("../../../docs/reliability.md")]
pub mod reliability {}
#[doc = include_str!("../../../docs/benchmarks.md")]
pub mod benchmarks {}
