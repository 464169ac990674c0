//! Why a cache could not be built: [`CacheError`].

use std::fmt;

use crate::tier::TierError;

/// Why a cache could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// The configuration string or a builder setting is invalid.
    Config(String),
    /// A shared tier could not be opened.
    Tier(TierError),
    /// The cache's background runtime could not be started.
    Runtime(String),
    /// The shared tier has no secret to authenticate its entries (and the public default
    /// was not opted into), or the per-store secret file is unusable. The message says how
    /// to set one.
    Secret(String),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Config(d) => write!(f, "invalid cache configuration: {d}"),
            CacheError::Tier(e) => write!(f, "cannot open cache tier: {e}"),
            CacheError::Runtime(d) => write!(f, "cannot start the cache runtime: {d}"),
            CacheError::Secret(d) => write!(f, "no usable cache secret: {d}"),
        }
    }
}

impl std::error::Error for CacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Tier(e) => Some(e),
            CacheError::Config(_) | CacheError::Runtime(_) | CacheError::Secret(_) => None,
        }
    }
}

impl From<TierError> for CacheError {
    fn from(e: TierError) -> Self {
        CacheError::Tier(e)
    }
}
