//! The core's tunables (`Options`, set through [`CacheBuilder`](crate::CacheBuilder)) and how
//! the shared tier is to be opened (`SharedSpec`). A leaf: the builder fills these in, the
//! core and the tier opener read them.

use std::sync::Arc;
use std::time::Duration;

use crate::tier::SharedTier;

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) op_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) xfetch_beta: f64,
    pub(crate) ttl_jitter: f64,
    pub(crate) max_value_bytes: usize,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) local_max_ttl: Option<Duration>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) metric_namespaces: usize,
    pub(crate) codec: crate::codec::ValueCodec,
    /// After this, a caller with a stale value gets it while the function goes on.
    pub(crate) soft_timeout: Option<Duration>,
    /// After this, a caller gets [`FactoryTimeout`](crate::FactoryTimeout).
    pub(crate) hard_timeout: Option<Duration>,
    /// How long past its expiry a value is served at once while it is refreshed in the
    /// background (stale-while-revalidate).
    pub(crate) stale_window: Option<Duration>,
    pub(crate) tag_recheck: Duration,
}

impl Options {
    /// How long a shared entry is kept past its expiry: the longer of the fail-safe and
    /// stale-while-revalidate windows.
    pub(crate) fn keep_past_expiry(&self) -> Duration {
        self.fail_safe.unwrap_or(Duration::ZERO).max(self.stale_window.unwrap_or(Duration::ZERO))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            op_timeout: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(5),
            xfetch_beta: 1.0,
            ttl_jitter: 0.1,
            max_value_bytes: 1 << 20,
            fail_safe: None,
            local_max_ttl: None,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            metric_namespaces: crate::stats::DEFAULT_METRIC_NAMESPACES,
            codec: crate::codec::ValueCodec::Postcard,
            soft_timeout: None,
            hard_timeout: None,
            stale_window: None,
            tag_recheck: crate::tags::DEFAULT_RECHECK,
        }
    }
}

/// How the shared tier will be opened by `build()`.
pub(crate) enum SharedSpec {
    None,
    Url(String),
    Tier(Arc<dyn SharedTier>),
}
