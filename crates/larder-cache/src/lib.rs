//! The memo cache (being built; see issue 3).
#![forbid(unsafe_code)]

pub mod tier;

pub use tier::{BoxFuture, InvalidationHandler, Lease, SharedTier, TierError};
