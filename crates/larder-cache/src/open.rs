//! Opening a shared tier from its URL: the `match` on the scheme in [`open_shared`] is the one
//! place a new tier is registered (re-exported as `config::open_shared`).

use std::sync::Arc;

use crate::error::CacheError;
use crate::options::Options;
use crate::runtime::runtime;
use crate::tier::{SharedTier, TierError, TierOptions};

/// Opens a shared tier from its URL on this process's runtime.
pub(crate) fn open_url(url: &str, opts: &Options) -> Result<Arc<dyn SharedTier>, CacheError> {
    let rt = runtime()?;
    let topts = TierOptions {
        op_timeout: opts.op_timeout,
        poll_interval: opts.poll_interval,
        runtime: rt.handle().clone(),
    };
    // Tiers that spawn background tasks when opened find the cache's runtime.
    let _entered = rt.enter();
    open_shared(url, &topts)
}

/// Opens a shared tier from its URL. New tiers register here.
pub fn open_shared(url: &str, opts: &TierOptions) -> Result<Arc<dyn SharedTier>, CacheError> {
    // Read by the tiers' arms only: a build with neither tier (local cache only) has none.
    #[cfg(not(any(feature = "sqlite", feature = "redis")))]
    let _ = opts;
    let scheme = url.split(':').next().unwrap_or("");
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(crate::sqlite::SqliteTier::open_url(url, opts)?)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" | "redis+cluster" | "rediss+cluster" => {
            let ropts = crate::redis::RedisOptions::default()
                .timeout(opts.op_timeout)
                .poll_interval(opts.poll_interval.max(std::time::Duration::from_millis(5)));
            let tier = crate::redis::connect(url, ropts)?;
            // Wrong credentials or an untrusted certificate: fail now, not compute forever.
            // A server that is merely down does not stop the cache from being built.
            crate::runtime::block_on(tier.verify())?;
            Ok(Arc::new(tier))
        }
        #[allow(unreachable_patterns)]
        "sqlite" | "redis" | "rediss" | "redis+unix" | "redis+cluster" | "rediss+cluster" => {
            Err(CacheError::Tier(TierError::Config(format!(
                "the `{scheme}` tier is not compiled in (enable larder-cache's `{}` feature)",
                feature_of(scheme)
            ))))
        }
        _ => Err(CacheError::Config(format!("`{url}` is not a shared tier URL"))),
    }
}

fn feature_of(scheme: &str) -> &'static str {
    if scheme == "sqlite" {
        "sqlite"
    } else {
        "redis"
    }
}
