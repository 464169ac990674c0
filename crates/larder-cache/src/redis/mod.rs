//! The Redis and Redis Cluster shared tiers (`redis://`, `rediss://`, `redis+unix://`,
//! `redis+cluster://host:port,host:port`, `rediss+cluster://…`).
//!
//! [`RedisTier`] implements [`SharedTier`] with redis-rs:
//!
//! * **Connections.** A single server is reached through redis-rs's `ConnectionManager`, a
//!   multiplexed connection (one socket shared by every task) that reconnects by itself after
//!   the server goes away. A cluster is reached through redis-rs's async cluster connection,
//!   which routes every command to the node owning its slot and follows slot moves. Both are
//!   created lazily: building a tier never touches the network, so a service starts even while
//!   Redis is down (the cache answers by computing until it is back). `Cache::from_url` then
//!   calls [`RedisTier::verify`]: wrong credentials, a missing ACL permission or an untrusted
//!   certificate fail the build; a server that is only unreachable does not.
//! * **URLs** carry the password or ACL user, TLS files (`ca`, `client_cert`, `client_key`),
//!   the key prefix, timeouts and the number of connections: see [`connect`] for the grammar.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::tier::{BoxFuture, InvalidationHandler, Lease, SharedTier, TierError};

mod inventory;
mod listener;
mod options;
mod url;

use listener::{Hub, Listener};
pub use options::{RedisOptions, VERIFY_TIMEOUT};
use url::{config_err, RedisUrl};

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

/// Builds a Redis tier from a URL. Nothing is connected yet; the first call connects (and
/// [`RedisTier::verify`] checks credentials and certificates, as `Cache::from_url` does).
///
/// ```text
/// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?PARAMS]            one server
/// rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB][?PARAMS]           one server over TLS
/// redis+unix:///PATH[?db=N&user=USER&pass=PASSWORD&PARAMS]       one server, unix socket
/// redis+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT…[?PARAMS]   a Redis Cluster
/// rediss+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT…[?PARAMS]  a Redis Cluster over TLS
/// ```
///
/// `USER` is an ACL user (`default` when only a password is given, as with `requirepass`);
/// percent-encode `@`, `:`, `/`, `?`, `#` in it or in the password. `PARAMS` (`&`-separated,
/// values percent-decoded):
///
/// | param | meaning | default |
/// |---|---|---|
/// | `prefix=S` | prefix of every key and channel (no `{`, `}`) | `larder:` |
/// | `timeout=D` | bound of every call, connect included (`250ms`, `1s`; also the cache's `op_timeout` when given through `Cache::from_url`) | the cache's `op_timeout` (250 ms) |
/// | `connect_timeout=D` | bound of one connection attempt | `timeout` |
/// | `connections=N` | multiplexed connections per server, used in turn (1–64) | 1 |
/// | `retries=N` | reconnection attempts inside one call | 1 |
/// | `ca=PATH` | PEM file of the CA(s) to trust instead of the system's roots (TLS only) | system roots |
/// | `client_cert=PATH`, `client_key=PATH` | PEM client certificate and key for mutual TLS (both or neither) | none |
/// | `db=N`, `user=U`, `pass=P`, `protocol=resp3` | passed on to redis-rs (for `redis+unix://`) | |
///
/// An unknown parameter is an error (a typo must not silently drop a setting). There is no
/// parameter to skip certificate verification.
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
        conns: Vec<ConnectionManager>,
        client: Box<redis::Client>,
    },
    Cluster {
        client: Box<ClusterClient>,
        conns: Vec<tokio::sync::OnceCell<ClusterConnection>>,
        /// One plain client per configured node, for the pub/sub listener.
        nodes: Vec<redis::Client>,
    },
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
    /// The next connection of the pool to use.
    next: AtomicUsize,
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

fn map_err(e: RedisError) -> TierError {
    if let Some(refused) = refusal(&e) {
        return refused;
    }
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

/// A server that refuses this client — bad credentials, a missing ACL permission, a TLS
/// certificate that is not trusted — as opposed to one that is down or slow.
fn refusal(e: &RedisError) -> Option<TierError> {
    let text = e.to_string();
    let code = e.code().unwrap_or("");
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM")
        || ["WRONGPASS", "NOAUTH", "NOPERM", "uthentication failed", "invalid username-password"]
            .iter()
            .any(|m| text.contains(m))
    {
        return Some(TierError::Auth(text));
    }
    let lower = text.to_ascii_lowercase();
    if ["certificate", "unknownissuer", "tls handshake", "invalidcertificate", "peer is incompatible"]
        .iter()
        .any(|m| lower.contains(m))
    {
        return Some(TierError::Tls(text));
    }
    None
}

/// Milliseconds for `PX`: at least 1 (Redis rejects 0), at most about 100 years.
fn px(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).clamp(1, 100 * 365 * 24 * 3600 * 1000)
}

impl RedisTier {
    /// Builds a tier from a URL (see [`connect`]). Parameters in the URL's query override
    /// `options`.
    pub fn open(url: &str, options: RedisOptions) -> Result<Self, TierError> {
        let parsed = RedisUrl::parse(url)?;
        let options = parsed.apply(options)?;
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
        if parsed.tls {
            // redis-rs builds rustls without a crypto provider: see `ensure_rustls_provider`.
            ensure_rustls_provider();
        }
        let certs = parsed.certificates()?;
        let connect_timeout = options.connect_timeout.unwrap_or(options.timeout);
        let client_for = |u: &str| -> Result<redis::Client, TierError> {
            match &certs {
                Some(c) => redis::Client::build_with_tls(u, c.clone()),
                None => redis::Client::open(u),
            }
            .map_err(|e| config_err(format!("bad redis URL: {e}")))
        };
        let backend = if parsed.cluster {
            let nodes = parsed.node_urls.iter().map(|u| client_for(u)).collect::<Result<Vec<_>, _>>()?;
            let mut builder = ClusterClient::builder(parsed.node_urls.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(options.timeout)
                .retries(options.retries);
            if parsed.tls {
                builder = builder.tls(redis::TlsMode::Secure);
            }
            if let Some(c) = &certs {
                builder = builder.certs(c.clone());
            }
            let client = builder.build().map_err(|e| config_err(format!("bad redis cluster URL: {e}")))?;
            let conns = (0..options.connections).map(|_| tokio::sync::OnceCell::new()).collect();
            Backend::Cluster { client: Box::new(client), conns, nodes }
        } else {
            let client = client_for(&parsed.node_urls[0])?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(options.timeout))
                .set_number_of_retries(options.retries as usize)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(200));
            let conns = (0..options.connections)
                .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_err(format!("redis connection manager: {e}")))?;
            Backend::Single { conns, client: Box::new(client) }
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
            next: AtomicUsize::new(0),
            handle,
            shutdown,
            _runtime: OwnedRuntime(runtime),
        })
    }

    /// Checks that the server accepts this client: connects, authenticates, `PING`s, and reads
    /// one key under the prefix (an ACL user without access to it is refused). On a cluster,
    /// the first node that answers is asked. Bad credentials, a missing permission or an
    /// untrusted certificate are errors ([`TierError::Auth`], [`TierError::Tls`]); a server
    /// that is down or does not answer within [`VERIFY_TIMEOUT`] (or the tier's timeout, if
    /// longer) is not — the cache fails open until it is back — and gives `Ok(false)`.
    ///
    /// `Cache::from_url` and `CacheBuilder::shared_url` call this when the cache is built, so
    /// a misconfigured deployment fails at start instead of computing everything forever.
    pub async fn verify(&self) -> Result<bool, TierError> {
        let bound =
            self.options.timeout.max(self.options.connect_timeout.unwrap_or_default()).max(VERIFY_TIMEOUT);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(bound))
            .set_response_timeout(Some(bound));
        let clients: Vec<&redis::Client> = match &self.backend {
            Backend::Single { client, .. } => vec![&**client],
            Backend::Cluster { nodes, .. } => nodes.iter().collect(),
        };
        let probe = self.value_key("larder:verify");
        let mut last = None;
        for client in clients {
            let check = async {
                let mut c = client.get_multiplexed_async_connection_with_config(&config).await?;
                let _: String = redis::cmd("PING").query_async(&mut c).await?;
                match redis::cmd("GET").arg(&probe).query_async::<Option<Vec<u8>>>(&mut c).await {
                    // On a cluster node that does not own the slot: permissions were checked.
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::Moved)) => {
                        Ok(())
                    }
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                }
            };
            match tokio::time::timeout(bound, check).await {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(e)) => match map_err(e) {
                    refused @ (TierError::Auth(_) | TierError::Tls(_)) => return Err(refused),
                    other => last = Some(other),
                },
                Err(_) => last = Some(TierError::Timeout),
            }
        }
        if let Some(e) = last {
            tracing::warn!(error = %e, "redis not reachable while the cache is built; answering by computing until it is");
        }
        Ok(false)
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
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            match &self.backend {
                Backend::Single { conns, .. } => f(Conn::Single(conns[n % conns.len()].clone())).await,
                Backend::Cluster { client, conns, .. } => {
                    let c = Self::cluster_conn(client, &conns[n % conns.len()]).await?;
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
            Backend::Single { client, .. } => vec![(**client).clone()],
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

impl SharedTier for RedisTier {
    fn call_timeout(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

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

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, TierError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.value_key(key)).arg(frame).arg("NX").arg("PX").arg(px(ttl));
            match self.query::<Value>(cmd).await? {
                Value::Nil => Ok(false),
                Value::Okay => Ok(true),
                Value::SimpleString(s) if s == "OK" => Ok(true),
                other => Err(TierError::Server(format!("unexpected reply to SET NX: {other:?}"))),
            }
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
