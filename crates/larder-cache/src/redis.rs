//! The Redis and Redis Cluster shared tiers (`redis://`, `rediss://`, `redis+unix://`,
//! `redis+cluster://host:port,host:port`).
//!
//! [`RedisTier`] implements [`SharedTier`] with redis-rs:
//!
//! * **Connections.** A single server is reached through redis-rs's `ConnectionManager`, a
//!   multiplexed connection (one socket shared by every task) that reconnects by itself after
//!   the server goes away. A cluster is reached through redis-rs's async cluster connection,
//!   which routes every command to the node owning its slot and follows slot moves. Both are
//!   created lazily: building a tier never touches the network, so a service starts even while
//!   Redis is down (the cache answers by computing until it is back).
//! * **Timeouts.** Every call is bounded by [`RedisOptions::timeout`] (a `tokio` timeout around
//!   the whole call, plus redis-rs's own connect and response timeouts), so a dead or stalled
//!   server costs a caller at most that long and surfaces as a [`TierError`].
//! * **Key layout.** The value of key text `K` lives under `<prefix>{#K}` and its compute lease
//!   under `<prefix>{#K}:lease` (see [`value_key`] and [`lease_key`]). The braces are a Redis
//!   Cluster hash tag: the slot is computed from `#K` alone, so a value and its lease always
//!   live on the same node (the wait script reads both atomically), while different keys —
//!   whose texts end in a digest — spread over every node. This holds whatever `K` contains:
//!   both names share the prefix `<prefix>{#K}`, Redis takes the tag from the first `{` to the
//!   next `}`, which therefore lies inside that shared prefix, and the `#` keeps the tag
//!   non-empty even for an empty `K` or one starting with `}` (an empty tag would make Redis
//!   hash the whole name, splitting the pair). The prefix may not contain braces. The same
//!   layout is used on a single server, so data reads the same in either deployment mode.
//! * **Leases.** `SET <lease> <token> NX PX <ttl>` with the caller's random 16-byte token; the
//!   release is a Lua compare-and-delete (only the holder's token deletes it) that also
//!   publishes the key text on `<prefix>released`, waking workers in
//!   [`wait_for_value`](SharedTier::wait_for_value).
//! * **Waiting.** A waiter registers for its key with the tier's pub/sub listener, then checks
//!   value and lease in one atomic script call; it is woken by the release notification and
//!   otherwise re-checks by bounded polling ([`RedisOptions::poll_interval`]), so a lost
//!   notification (listener reconnecting, server restart) delays a waiter but never strands it.
//! * **Backplane.** [`publish_invalidation`](SharedTier::publish_invalidation) `PUBLISH`es the
//!   key text on `<prefix>invalidate`; [`subscribe_invalidations`](SharedTier::subscribe_invalidations)
//!   hands every message to the handler from a background task that owns a dedicated pub/sub
//!   connection and reconnects (with capped backoff) after failures. On a cluster, classic
//!   `PUBLISH` is broadcast by Redis to every node over the cluster bus, so the listener
//!   subscribes on any one node and moves to the next one when its node fails. Sharded pub/sub
//!   (`SSUBSCRIBE`) was not used: the backplane channel is a single channel, so sharding would
//!   put all of it on one shard anyway, and would add slot-migration handling for no gain at
//!   invalidation rates.
//!
//! * **TLS (`rediss://`) and the rustls crypto provider.** redis-rs builds its rustls client
//!   configuration with `ClientConfig::builder()`, which takes rustls's *process-wide* default
//!   crypto provider; it offers no way to hand a provider to one connection. So this tier does
//!   not pick one over the application's choice: a provider the process already has
//!   (installed by the application, e.g. `aws-lc-rs`, or by another library) is used as is.
//!   Only when none is installed does opening a `rediss://` tier install *ring*'s provider as
//!   the process default, and it says so in a `tracing` info event. Without that, a build
//!   whose rustls has both `ring` (from this crate) and `aws-lc-rs` (from the AWS SDK, say)
//!   would panic on the first TLS connection, since rustls then cannot choose by itself; with
//!   only `ring` enabled, rustls would install the same provider itself on that connection.
//!   To choose another provider, install it before opening the tier. `redis://`,
//!   `redis+unix://` and cluster URLs never touch the provider.
//!
//! What this tier deliberately does not do: it never interprets the frames it stores (framing,
//! MACs and expiry checks are the cache core's job), and it does not retry failed calls — the
//! core fails open and its circuit breaker decides when to try again.
//!
//! The tier must be created inside a Tokio runtime, or it starts a small runtime of its own for
//! its background tasks (pub/sub listener, reconnects). Calls can then be made from any Tokio
//! runtime that lives as long as the tier.

use std::collections::HashMap;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::tier::{BoxFuture, InvalidationHandler, Lease, SharedTier, TierError};

/// Tuning of a [`RedisTier`].
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
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            timeout: Duration::from_millis(250),
            prefix: "larder:".to_string(),
            poll_interval: Duration::from_millis(50),
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

/// The Redis name holding the value of key text `key` (`<prefix>{#key}`).
pub fn value_key(prefix: &str, key: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + key.len() + 9);
    s.push_str(prefix);
    s.push_str("{#");
    s.push_str(key);
    s.push('}');
    s
}

/// The Redis name holding the compute lease of key text `key` (`<prefix>{#key}:lease`).
pub fn lease_key(prefix: &str, key: &str) -> String {
    let mut s = value_key(prefix, key);
    s.push_str(":lease");
    s
}

/// Builds a Redis tier from a URL: `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS),
/// `redis+unix:///path/to/socket`, or `redis+cluster://host:port,host:port[,…]`.
///
/// Nothing is connected yet; the first call connects.
pub fn connect(url: &str, options: RedisOptions) -> Result<RedisTier, TierError> {
    RedisTier::open(url, options)
}

// KEYS[1] = lease, ARGV[1] = token, ARGV[2] = release channel, ARGV[3] = key text.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
";

// KEYS[1] = value, KEYS[2] = lease. Returns {1, value} or {0, lease_exists}.
const CHECK_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
return {0, redis.call('EXISTS', KEYS[2])}
";

enum Backend {
    Single {
        conn: ConnectionManager,
        client: redis::Client,
    },
    Cluster {
        client: Box<ClusterClient>,
        conn: tokio::sync::OnceCell<ClusterConnection>,
        /// One plain client per configured node, for the pub/sub listener.
        nodes: Vec<redis::Client>,
    },
}

/// State shared with the background listener.
struct Hub {
    waiters: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    handlers: Mutex<Vec<InvalidationHandler>>,
    started: AtomicBool,
    /// True while the listener is subscribed.
    subscribed: watch::Sender<bool>,
}

impl Hub {
    fn register(self: &Arc<Self>, key: &str) -> WaiterGuard {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(key.to_string()).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        WaiterGuard { hub: Arc::clone(self), key: key.to_string(), notify: Arc::clone(&entry.0) }
    }

    fn wake(&self, key: &str) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = map.get(key) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for (n, _) in map.values() {
            n.notify_waiters();
        }
    }

    fn dispatch_invalidation(&self, key: &str) {
        let handlers: Vec<InvalidationHandler> =
            self.handlers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for h in handlers {
            // A panicking handler must not take the listener (and every later invalidation)
            // down with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(key))).is_err() {
                tracing::error!("an invalidation handler panicked; the listener goes on");
            }
        }
    }
}

struct WaiterGuard {
    hub: Arc<Hub>,
    key: String,
    notify: Arc<Notify>,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut map = self.hub.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Keeps a runtime the tier had to start itself; shut down without blocking on drop.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A [`SharedTier`] on a Redis server or a Redis Cluster. See the [module docs](self).
pub struct RedisTier {
    backend: Backend,
    options: RedisOptions,
    release_channel: String,
    invalidate_channel: String,
    release_script: Script,
    check_script: Script,
    hub: Arc<Hub>,
    handle: tokio::runtime::Handle,
    /// Dropping the tier drops this sender, which stops the listener task.
    shutdown: watch::Sender<()>,
    _runtime: OwnedRuntime,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: only the mode is shown.
        f.debug_struct("RedisTier").field("name", &self.name()).field("options", &self.options).finish()
    }
}

fn config_err(e: impl fmt::Display) -> TierError {
    TierError::Config(e.to_string())
}

fn map_err(e: RedisError) -> TierError {
    if e.is_timeout() {
        TierError::Timeout
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_cluster_error()
        || e.is_unrecoverable_error()
    {
        TierError::Unavailable(e.to_string())
    } else {
        TierError::Server(e.to_string())
    }
}

/// Milliseconds for `PX`: at least 1 (Redis rejects 0), at most about 100 years.
fn px(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).clamp(1, 100 * 365 * 24 * 3600 * 1000)
}

impl RedisTier {
    /// Builds a tier from a URL (see [`connect`]).
    pub fn open(url: &str, options: RedisOptions) -> Result<Self, TierError> {
        if options.prefix.contains(['{', '}']) {
            return Err(config_err("redis key prefix must not contain '{' or '}'"));
        }
        if options.timeout.is_zero() {
            return Err(config_err("redis timeout must be positive"));
        }
        let (handle, runtime) = match tokio::runtime::Handle::try_current() {
            Ok(h) => (h, None),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("larder-redis")
                    .enable_all()
                    .build()
                    .map_err(|e| config_err(format!("cannot start a runtime for the redis tier: {e}")))?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let _enter = handle.enter();
        let backend = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let node_urls: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| format!("redis://{s}"))
                .collect();
            if node_urls.is_empty() {
                return Err(config_err("redis+cluster:// needs at least one host:port"));
            }
            let nodes = node_urls
                .iter()
                .map(|u| redis::Client::open(u.as_str()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_err(format!("bad redis cluster URL: {e}")))?;
            let client = ClusterClient::builder(node_urls)
                .connection_timeout(options.timeout)
                .response_timeout(options.timeout)
                .retries(1)
                .build()
                .map_err(|e| config_err(format!("bad redis cluster URL: {e}")))?;
            Backend::Cluster { client: Box::new(client), conn: tokio::sync::OnceCell::new(), nodes }
        } else if url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://")
        {
            if url.starts_with("rediss://") {
                ensure_rustls_provider();
            }
            let client = redis::Client::open(url).map_err(|e| config_err(format!("bad redis URL: {e}")))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(options.timeout))
                .set_response_timeout(Some(options.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(200));
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| config_err(format!("redis connection manager: {e}")))?;
            Backend::Single { conn, client }
        } else {
            return Err(config_err("not a redis URL (redis://, rediss://, redis+unix://, redis+cluster://)"));
        };
        let (subscribed, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(());
        Ok(RedisTier {
            backend,
            release_channel: format!("{}released", options.prefix),
            invalidate_channel: format!("{}invalidate", options.prefix),
            options,
            release_script: Script::new(RELEASE_LUA),
            check_script: Script::new(CHECK_LUA),
            hub: Arc::new(Hub {
                waiters: Mutex::new(HashMap::new()),
                handlers: Mutex::new(Vec::new()),
                started: AtomicBool::new(false),
                subscribed,
            }),
            handle,
            shutdown,
            _runtime: OwnedRuntime(runtime),
        })
    }

    /// The options this tier was built with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The Redis name of the value stored for key text `key` (see [`value_key`]).
    pub fn value_key(&self, key: &str) -> String {
        value_key(&self.options.prefix, key)
    }

    /// The Redis name of the lease for key text `key` (see [`lease_key`]).
    pub fn lease_key(&self, key: &str) -> String {
        lease_key(&self.options.prefix, key)
    }

    async fn cluster_conn(
        client: &ClusterClient,
        cell: &tokio::sync::OnceCell<ClusterConnection>,
    ) -> Result<ClusterConnection, RedisError> {
        // A failed first connection leaves the cell empty, so the next call tries again.
        cell.get_or_try_init(|| client.get_async_connection()).await.cloned()
    }

    /// Runs `f` on a connection, bounded by the call timeout.
    async fn with_conn<T, F, Fut>(&self, f: F) -> Result<T, TierError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let work = async {
            match &self.backend {
                Backend::Single { conn, .. } => f(Conn::Single(conn.clone())).await,
                Backend::Cluster { client, conn, .. } => {
                    let c = Self::cluster_conn(client, conn).await?;
                    f(Conn::Cluster(c)).await
                }
            }
        };
        match tokio::time::timeout(self.options.timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => Err(TierError::Timeout),
        }
    }

    async fn query<T: FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, TierError> {
        self.with_conn(|mut c| async move { cmd.query_async(&mut c).await }).await
    }

    /// Starts the pub/sub listener once.
    fn ensure_listener(&self) {
        if self.hub.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let clients: Vec<redis::Client> = match &self.backend {
            Backend::Single { client, .. } => vec![client.clone()],
            Backend::Cluster { nodes, .. } => nodes.clone(),
        };
        let listener = Listener {
            hub: Arc::clone(&self.hub),
            clients,
            release_channel: self.release_channel.clone(),
            invalidate_channel: self.invalidate_channel.clone(),
            timeout: self.options.timeout,
            shutdown: self.shutdown.subscribe(),
        };
        self.handle.spawn(listener.run());
    }

    /// Waits (bounded) until the listener is subscribed, so a notification sent after this
    /// returns is not missed. Polling covers the case where it does not get there in time.
    async fn await_subscribed(&self, limit: Duration) {
        let mut rx = self.hub.subscribed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
    }

    async fn check(&self, key: &str) -> Result<(Option<Vec<u8>>, bool), TierError> {
        let vk = self.value_key(key);
        let lk = self.lease_key(key);
        let script = &self.check_script;
        let v: Value =
            self.with_conn(|mut c| async move { script.key(vk).key(lk).invoke_async(&mut c).await }).await?;
        match v {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(1), Value::BulkString(bytes)] => Ok((Some(bytes.clone()), true)),
                [Value::Int(0), Value::Int(exists)] => Ok((None, *exists != 0)),
                _ => Err(TierError::Server("unexpected reply from the wait script".into())),
            },
            _ => Err(TierError::Server("unexpected reply from the wait script".into())),
        }
    }

    async fn wait_inner(&self, key: &str, timeout: Duration) -> Result<Option<Vec<u8>>, TierError> {
        let deadline = Instant::now() + timeout;
        self.ensure_listener();
        let guard = self.hub.register(key);
        self.await_subscribed(self.options.timeout.min(timeout)).await;
        loop {
            let notified = guard.notify.notified();
            let mut notified = pin!(notified);
            // Registered before the check: a release published after it wakes this waiter.
            notified.as_mut().enable();
            let (value, lease_held) = self.check(key).await?;
            if value.is_some() {
                return Ok(value);
            }
            if !lease_held {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = (deadline - now).min(self.options.poll_interval);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }
}

/// A connection of either kind (both are cheap clones of a shared multiplexed connection).
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The background task owning the pub/sub connection.
struct Listener {
    hub: Arc<Hub>,
    clients: Vec<redis::Client>,
    release_channel: String,
    invalidate_channel: String,
    timeout: Duration,
    shutdown: watch::Receiver<()>,
}

impl Listener {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(20);
        let mut node = 0usize;
        loop {
            if self.shutdown.has_changed().is_err() {
                return;
            }
            let client = &self.clients[node % self.clients.len()];
            let connected = tokio::time::timeout(self.timeout, async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&[self.release_channel.as_str(), self.invalidate_channel.as_str()]).await?;
                Ok::<_, RedisError>(ps)
            })
            .await;
            match connected {
                Ok(Ok(ps)) => {
                    backoff = Duration::from_millis(20);
                    self.hub.subscribed.send_replace(true);
                    // Notifications may have been lost while disconnected: let waiters re-check.
                    self.hub.wake_all();
                    let mut stream = ps.into_on_message();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    let Ok(key) = std::str::from_utf8(msg.get_payload_bytes()) else {
                                        continue;
                                    };
                                    if msg.get_channel_name() == self.release_channel {
                                        self.hub.wake(key);
                                    } else {
                                        self.hub.dispatch_invalidation(key);
                                    }
                                }
                                None => break,
                            },
                            changed = self.shutdown.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    self.hub.subscribed.send_replace(false);
                    tracing::debug!("redis pub/sub connection lost; reconnecting");
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "redis pub/sub connect failed");
                    node += 1;
                }
                Err(_) => node += 1,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

impl SharedTier for RedisTier {
    fn name(&self) -> &'static str {
        match self.backend {
            Backend::Single { .. } => "redis",
            Backend::Cluster { .. } => "redis-cluster",
        }
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.value_key(key));
            self.query(cmd).await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.value_key(key)).arg(frame).arg("PX").arg(px(ttl));
            self.query::<()>(cmd).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.value_key(key));
            self.query::<()>(cmd).await
        })
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a str,
        token: &'a [u8; 16],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.lease_key(key)).arg(&token[..]).arg("NX").arg("PX").arg(px(ttl));
            match self.query::<Value>(cmd).await? {
                Value::Nil => Ok(Lease::HeldByOther),
                Value::Okay => Ok(Lease::Acquired),
                Value::SimpleString(s) if s == "OK" => Ok(Lease::Acquired),
                other => Err(TierError::Server(format!("unexpected reply to SET NX: {other:?}"))),
            }
        })
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a str,
        token: &'a [u8; 16],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            let lk = self.lease_key(key);
            let script = &self.release_script;
            let channel = self.release_channel.as_str();
            self.with_conn(|mut c| async move {
                script.key(lk).arg(&token[..]).arg(channel).arg(key).invoke_async::<i64>(&mut c).await
            })
            .await
            .map(|_| ())
        })
    }

    fn wait_for_value<'a>(
        &'a self,
        key: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>> {
        Box::pin(self.wait_inner(key, timeout))
    }

    fn publish_invalidation<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&self.invalidate_channel).arg(key);
            self.query::<()>(cmd).await
        })
    }

    fn subscribe_invalidations(&self, handler: InvalidationHandler) -> bool {
        self.hub.handlers.lock().unwrap_or_else(|p| p.into_inner()).push(handler);
        self.ensure_listener();
        true
    }
}

/// Tells whether the listener of `tier` is currently subscribed (for tests and diagnostics).
pub fn listener_subscribed(tier: &RedisTier) -> bool {
    *tier.hub.subscribed.borrow()
}

/// Makes sure rustls has a process-wide crypto provider before redis-rs builds a TLS client
/// configuration: keeps the application's (or any library's) if one is installed, else
/// installs ring's and logs it. See the module docs ("TLS") for why it cannot be per
/// connection.
fn ensure_rustls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none()
        && rustls::crypto::ring::default_provider().install_default().is_ok()
    {
        tracing::info!(
            target: "larder_cache",
            "rediss://: no rustls crypto provider was installed; installed ring's as the process default \
             (install another before opening the tier to choose it)"
        );
    }
}
