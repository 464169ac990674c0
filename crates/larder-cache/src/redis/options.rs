//! [`RedisOptions`]: the tuning of a Redis tier (also set from URL parameters, `url.rs`).

use std::time::Duration;

/// How long [`RedisTier::verify`](super::RedisTier::verify) waits for a server at least (a TLS handshake in a debug
/// build can take longer than a call's timeout).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// Tuning of a [`RedisTier`](super::RedisTier).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Upper bound of every call (connect included). Default 250 ms.
    pub timeout: Duration,
    /// Prefix of every key and channel name; must not contain `{` or `}` (it would change the
    /// cluster hash tag). Default `larder:`.
    pub prefix: String,
    /// How often a waiter re-checks when no notification arrives. Default 50 ms.
    pub poll_interval: Duration,
    /// Bound of one connection attempt (background reconnects included). Default: `timeout`.
    pub connect_timeout: Option<Duration>,
    /// Multiplexed connections per server, used in turn (each pipelines every task's
    /// commands). Default 1; more spreads the work of many threads over several sockets.
    pub connections: usize,
    /// Reconnection attempts redis-rs makes inside one call. Default 1.
    pub retries: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            timeout: Duration::from_millis(250),
            prefix: "larder:".to_string(),
            poll_interval: Duration::from_millis(50),
            connect_timeout: None,
            connections: 1,
            retries: 1,
        }
    }
}

impl RedisOptions {
    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`prefix`](Self::prefix).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }
}
