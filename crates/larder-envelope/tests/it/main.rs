//! larder-envelope's integration tests, one binary (ripgrep's `tests/` layout): every file
//! of this directory is a module; `common` holds the shared keyrings. Kept apart:
//! `tests/fork.rs` (forks: a fork in a process whose other test threads hold locks can
//! deadlock the child) and `tests/processes.rs` (re-executes its own binary as workers).

mod blind_index;
mod blind_index_pg;
mod common;
mod concurrency;
mod envelope;
#[cfg(feature = "aws-kms")]
mod kms_envelope;
#[cfg(feature = "aws-kms")]
mod kms_keyring;
#[cfg(feature = "aws-kms")]
mod kms_multi;
mod local_keyring;
mod metrics;
mod multi_keyring;
mod pg_phones;
mod refresh;
mod review_findings;
mod tracing_output;
#[cfg(feature = "test-vectors")]
mod vectors;
#[cfg(feature = "test-vectors")]
mod vectors_v2;
