//! The SQLite shared tier (`sqlite:PATH`): the embedded default for one host.
//!
//! Every worker process opens the same file. SQLite's WAL mode lets readers run while one
//! writer writes, `busy_timeout` makes a writer wait for the lock instead of failing, and
//! every statement is its own transaction, so a process killed at any instant leaves the file
//! consistent (at worst without its last write, or with a lease row that expires).
//!
//! Schema (created on open, `IF NOT EXISTS`):
//!
//! ```sql
//! CREATE TABLE larder_entries (key TEXT PRIMARY KEY, frame BLOB NOT NULL,
//!   expires_ms INTEGER NOT NULL, written_ms INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
//! CREATE TABLE larder_leases (key TEXT PRIMARY KEY, token BLOB NOT NULL,
//!   expires_ms INTEGER NOT NULL) WITHOUT ROWID;
//! ```
//!
//! * **Leases**: `INSERT … ON CONFLICT(key) DO UPDATE … WHERE larder_leases.expires_ms <= now`:
//!   one statement takes a free or expired lease atomically (a dead holder's lease expires);
//!   the release deletes the row only if it still carries the caller's token.
//! * **Waiting**: bounded polling (`poll_interval`) for the value, ending early when the lease
//!   row disappears or expires without a value.
//! * **Expiry and size**: every `SWEEP_EVERY` writes (and on open) expired entries and leases
//!   are deleted, then the oldest entries beyond `max_entries` / `max_bytes`. Tag records
//!   (key texts starting with `#`, see `crate::tags`) only expire: evicting one would retire
//!   every entry under its tag.
//! * **Reads on the calling thread**: a `get` (the hit path of every worker) runs where it is
//!   called, on a reader connection whose busy timeout is zero. In WAL mode a reader does not
//!   wait for the writer, so this is a B-tree lookup in pages the OS already caches, a few
//!   microseconds, like reading memory; a hop to the blocking pool and back cost more than the
//!   read itself. Should a read ever find the file busy (WAL recovery or a checkpoint reset by
//!   another process), it is handed to the blocking pool, where waiting is allowed.
//! * **Everything else off the executor**: for async callers, writes, leases and polls run on
//!   the runtime's blocking pool, bounded by the tier's timeout (SQLite's own `busy_timeout` is
//!   set to the same bound, so an abandoned call finishes soon after). A sync caller (the
//!   blocking API, a sync `#[memoize]` function) is blocked on its call anyway, so these run on
//!   its own thread instead: the hand-off to the pool and back cost more than the write (a
//!   miss + store went from 3.4× to 1.4× its raw statements, `docs/benchmarks.md`). Its
//!   waits for the write lock are bounded by the same busy timeout. What it gives up: a stall
//!   of the disk itself holds the caller until the write returns, where through the pool the
//!   tier's timeout would have let it go on (the write finishing behind it).
// Length: the tier's statements, its per-thread read connections and its lease protocol are
// one unit (each relies on the others' transaction boundaries); the file passes 700 lines only
// with its unit tests (from `mod tests`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::tier::{BoxFuture, InvalidationHandler, Lease, SharedTier, TierError, TierOptions};

/// Sweep expired and excess entries after this many writes.
const SWEEP_EVERY: u64 = 512;

/// Settings of a [`SqliteTier`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Most entries kept (oldest written are evicted first). Default 100,000.
    pub max_entries: u64,
    /// Most bytes of frames kept. Default 256 MiB.
    pub max_bytes: u64,
    /// Bound of every call, and SQLite's busy timeout. Default 250 ms.
    pub timeout: Duration,
    /// Poll interval of `wait_for_value`. Default 10 ms.
    pub poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_entries: 100_000,
            max_bytes: 256 << 20,
            timeout: Duration::from_millis(250),
            poll_interval: Duration::from_millis(10),
        }
    }
}

impl SqliteOptions {
    /// Sets [`max_entries`](Self::max_entries).
    #[must_use]
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n.max(1);
        self
    }
    /// Sets [`max_bytes`](Self::max_bytes).
    #[must_use]
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n.max(1);
        self
    }
    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Sets [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub fn poll_interval(mut self, t: Duration) -> Self {
        self.poll_interval = t.max(Duration::from_millis(1));
        self
    }
}

struct Shared {
    path: PathBuf,
    opts: SqliteOptions,
    pool: Mutex<Vec<Connection>>,
    /// Connections for reads on the calling thread: busy timeout zero, so they never wait.
    readers: Mutex<Vec<Connection>>,
    writes: AtomicU64,
}

/// Connections kept per pool.
const POOL_KEEP: usize = 8;

/// One SQLite file shared by every worker process on a host.
#[derive(Clone)]
pub struct SqliteTier {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for SqliteTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTier")
            .field("path", &self.shared.path)
            .field("opts", &self.shared.opts)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn err(e: rusqlite::Error) -> TierError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            TierError::Unavailable(format!("sqlite: {e}"))
        }
        Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            TierError::Unavailable(format!("sqlite: {e}"))
        }
        _ => TierError::Server(format!("sqlite: {e}")),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS larder_entries (
  key TEXT PRIMARY KEY, frame BLOB NOT NULL, expires_ms INTEGER NOT NULL,
  written_ms INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS larder_entries_written ON larder_entries(written_ms);
CREATE TABLE IF NOT EXISTS larder_leases (
  key TEXT PRIMARY KEY, token BLOB NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID;
";

/// How long opening a cache file waits out other processes holding it locked at startup.
const STARTUP_BUSY_WAIT: Duration = Duration::from_secs(10);

impl Shared {
    fn open_conn(&self) -> Result<Connection, TierError> {
        self.open_conn_raw().map_err(err)
    }

    fn open_conn_raw(&self) -> Result<Connection, rusqlite::Error> {
        self.open_conn_waiting(self.opts.timeout.max(Duration::from_millis(50)))
    }

    /// A connection whose busy timeout is `busy` (zero: never waits for a lock).
    fn open_conn_waiting(&self, busy: Duration) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy)?;
        // WAL: readers never block the writer; NORMAL sync is durable enough for a cache and
        // still crash-consistent.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "sqlite cache file is not in WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        Ok(conn)
    }

    /// Runs `f` with a pooled connection (opening one if none is free).
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T, TierError>) -> Result<T, TierError> {
        let pooled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_conn()?,
        };
        let r = f(&conn);
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_KEEP {
            pool.push(conn);
        }
        r
    }

    /// A read on the calling thread, on a reader connection that never waits for a lock.
    /// `None` when the file was busy (or a reader could not be opened because it was): the
    /// caller then reads through the blocking pool, where waiting is allowed.
    fn get_now(&self, key: &str) -> Option<Result<Option<Vec<u8>>, TierError>> {
        let pooled = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match pooled {
            Some(c) => c,
            None => match self.open_conn_waiting(Duration::ZERO) {
                Ok(c) => c,
                Err(e) if is_busy(&e) => return None,
                Err(e) => return Some(Err(err(e))),
            },
        };
        let r = conn
            .prepare_cached("SELECT frame FROM larder_entries WHERE key = ?1")
            .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, Vec<u8>>(0)).optional());
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < POOL_KEEP {
            readers.push(conn);
        }
        drop(readers);
        match r {
            Ok(v) => Some(Ok(v)),
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(err(e))),
        }
    }

    fn sweep(&self, conn: &Connection) -> Result<(), TierError> {
        let now = now_ms();
        conn.execute("DELETE FROM larder_entries WHERE expires_ms <= ?1", params![now]).map_err(err)?;
        conn.execute("DELETE FROM larder_leases WHERE expires_ms <= ?1", params![now]).map_err(err)?;
        let (count, bytes): (i64, i64) = conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM larder_entries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(err)?;
        let max_n = i64::try_from(self.opts.max_entries).unwrap_or(i64::MAX);
        let max_b = i64::try_from(self.opts.max_bytes).unwrap_or(i64::MAX);
        let mut excess = (count - max_n).max(0);
        if bytes > max_b && count > 0 {
            let avg = (bytes / count).max(1);
            excess = excess.max((bytes - max_b) / avg + 1);
        }
        if excess > 0 {
            conn.execute(
                "DELETE FROM larder_entries WHERE key IN \
                 (SELECT key FROM larder_entries WHERE substr(key, 1, 1) <> '#' ORDER BY written_ms LIMIT ?1)",
                params![excess],
            )
            .map_err(err)?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        self.with_conn(|c| {
            c.prepare_cached("SELECT frame FROM larder_entries WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, Vec<u8>>(0)).optional())
                .map_err(err)
        })
    }

    fn set(&self, key: &str, frame: &[u8], ttl: Duration) -> Result<(), TierError> {
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        self.with_conn(|c| {
            let now = now_ms();
            c.prepare_cached(
                "INSERT INTO larder_entries (key, frame, expires_ms, written_ms, size) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(key) DO UPDATE SET frame = excluded.frame, expires_ms = excluded.expires_ms, \
                 written_ms = excluded.written_ms, size = excluded.size",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key,
                    frame,
                    now.saturating_add(dur_ms(ttl)),
                    now,
                    i64::try_from(frame.len()).unwrap_or(i64::MAX)
                ])
            })
            .map_err(err)?;
            if n.checked_rem(SWEEP_EVERY) == Some(0) {
                // A failed sweep is retried at the next round; the write itself succeeded.
                if let Err(e) = self.sweep(c) {
                    tracing::debug!(error = %e, "sqlite cache sweep failed");
                }
            }
            Ok(())
        })
    }

    fn set_if_absent(&self, key: &str, frame: &[u8], ttl: Duration) -> Result<bool, TierError> {
        self.with_conn(|c| {
            let now = now_ms();
            // An expired row counts as absent (it is only waiting for a sweep).
            c.prepare_cached(
                "INSERT INTO larder_entries (key, frame, expires_ms, written_ms, size) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(key) DO UPDATE SET frame = excluded.frame, expires_ms = excluded.expires_ms, \
                 written_ms = excluded.written_ms, size = excluded.size WHERE larder_entries.expires_ms <= ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key,
                    frame,
                    now.saturating_add(dur_ms(ttl)),
                    now,
                    i64::try_from(frame.len()).unwrap_or(i64::MAX)
                ])
            })
            .map(|changed| changed == 1)
            .map_err(err)
        })
    }

    fn delete(&self, key: &str) -> Result<(), TierError> {
        self.with_conn(|c| {
            c.prepare_cached("DELETE FROM larder_entries WHERE key = ?1")
                .and_then(|mut s| s.execute(params![key]))
                .map(|_| ())
                .map_err(err)
        })
    }

    fn try_lease(&self, key: &str, token: &[u8; 16], ttl: Duration) -> Result<Lease, TierError> {
        self.with_conn(|c| {
            let now = now_ms();
            let changed = c
                .prepare_cached(
                    "INSERT INTO larder_leases (key, token, expires_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(key) DO UPDATE SET token = excluded.token, expires_ms = excluded.expires_ms \
                     WHERE larder_leases.expires_ms <= ?4",
                )
                .and_then(|mut s| s.execute(params![key, &token[..], now.saturating_add(dur_ms(ttl)), now]))
                .map_err(err)?;
            Ok(if changed == 1 { Lease::Acquired } else { Lease::HeldByOther })
        })
    }

    fn release(&self, key: &str, token: &[u8; 16]) -> Result<(), TierError> {
        self.with_conn(|c| {
            c.prepare_cached("DELETE FROM larder_leases WHERE key = ?1 AND token = ?2")
                .and_then(|mut s| s.execute(params![key, &token[..]]))
                .map(|_| ())
                .map_err(err)
        })
    }

    /// One poll: the value if present, else whether a live lease still stands.
    fn poll(&self, key: &str) -> Result<Result<Vec<u8>, bool>, TierError> {
        self.with_conn(|c| {
            let frame = c
                .prepare_cached("SELECT frame FROM larder_entries WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, Vec<u8>>(0)).optional())
                .map_err(err)?;
            if let Some(f) = frame {
                return Ok(Ok(f));
            }
            let live = c
                .prepare_cached("SELECT 1 FROM larder_leases WHERE key = ?1 AND expires_ms > ?2")
                .and_then(|mut s| s.query_row(params![key, now_ms()], |_| Ok(())).optional())
                .map_err(err)?;
            Ok(Err(live.is_some()))
        })
    }
}

impl SqliteTier {
    /// Opens (creating if needed) the cache file at `path`. Blocking: call it at startup.
    pub fn open(
        path: impl AsRef<Path>,
        opts: SqliteOptions,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, TierError> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(TierError::Config("sqlite: the path is empty".into()));
        }
        let shared = Arc::new(Shared {
            path,
            opts,
            pool: Mutex::new(Vec::new()),
            readers: Mutex::new(Vec::new()),
            writes: AtomicU64::new(0),
        });
        // Create the schema now so configuration errors surface at startup. Several worker
        // processes opening a new file at once contend for it: switching a fresh file to WAL and
        // creating the tables take SQLite's exclusive lock, and the switch can report "database
        // is locked" without waiting for the busy timeout. Startup may block, so a busy file is
        // retried for up to STARTUP_BUSY_WAIT; `IF NOT EXISTS` makes the schema idempotent.
        let deadline = std::time::Instant::now() + STARTUP_BUSY_WAIT;
        let conn = loop {
            let attempt = shared.open_conn_raw().and_then(|c| c.execute_batch(SCHEMA).map(|()| c));
            match attempt {
                Ok(c) => break c,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(TierError::Config(format!("sqlite: {e}"))),
            }
        };
        let _ = shared.sweep(&conn);
        shared.pool.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        Ok(SqliteTier { shared, rt })
    }

    /// Opens from a URL: `sqlite:PATH[?max_entries=N&max_bytes=N]`.
    pub fn open_url(url: &str, topts: &TierOptions) -> Result<Self, TierError> {
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| TierError::Config(format!("`{url}` is not a sqlite: URL")))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut opts = SqliteOptions::default().timeout(topts.op_timeout).poll_interval(topts.poll_interval);
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let n: u64 = v
                .parse()
                .map_err(|_| TierError::Config(format!("sqlite URL option `{pair}`: expected a number")))?;
            opts = match k {
                "max_entries" => opts.max_entries(n),
                "max_bytes" => opts.max_bytes(n),
                _ => return Err(TierError::Config(format!("unknown sqlite URL option `{k}`"))),
            };
        }
        SqliteTier::open(path, opts, topts.runtime.clone())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Deletes expired entries and leases, then the oldest entries over the size bounds.
    pub fn sweep_now(&self) -> Result<(), TierError> {
        self.shared.with_conn(|c| self.shared.sweep(c))
    }

    /// Number of entries stored (expired ones included until swept).
    pub fn len(&self) -> Result<u64, TierError> {
        self.shared.with_conn(|c| {
            c.query_row("SELECT COUNT(*) FROM larder_entries", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(err)
        })
    }

    /// Whether no entries are stored.
    pub fn is_empty(&self) -> Result<bool, TierError> {
        self.len().map(|n| n == 0)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, TierError> + Send + 'static,
    ) -> Result<T, TierError> {
        if crate::runtime::is_blocking_caller() {
            // A sync caller blocked on this call: run it here (see the module docs). Its waits
            // for the lock are bounded by the connection's busy timeout, the tier's timeout.
            return f(&self.shared);
        }
        let shared = self.shared.clone();
        let handle = self.rt.spawn_blocking(move || f(&shared));
        match tokio::time::timeout(self.shared.opts.timeout, handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(TierError::Unavailable(format!("sqlite worker failed: {join}"))),
            Err(_) => Err(TierError::Timeout),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl SharedTier for SqliteTier {
    fn call_timeout(&self) -> Option<Duration> {
        Some(self.shared.opts.timeout)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>> {
        Box::pin(async move {
            // On the calling thread (see the module docs); through the pool only if busy.
            if let Some(r) = self.shared.get_now(key) {
                return r;
            }
            let key = key.to_owned();
            self.blocking(move |s| s.get(&key)).await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        let key = key.to_owned();
        let frame = frame.to_vec();
        Box::pin(self.blocking(move |s| s.set(&key, &frame, ttl)))
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        frame: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, TierError>> {
        let key = key.to_owned();
        let frame = frame.to_vec();
        Box::pin(self.blocking(move |s| s.set_if_absent(&key, &frame, ttl)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TierError>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |s| s.delete(&key)))
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a str,
        token: &'a [u8; 16],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, TierError>> {
        let key = key.to_owned();
        let token = *token;
        Box::pin(self.blocking(move |s| s.try_lease(&key, &token, ttl)))
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a str,
        token: &'a [u8; 16],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        let key = key.to_owned();
        let token = *token;
        Box::pin(self.blocking(move |s| s.release(&key, &token)))
    }

    fn wait_for_value<'a>(
        &'a self,
        key: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, TierError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let k = key.to_owned();
                match self.blocking(move |s| s.poll(&k)).await? {
                    Ok(frame) => return Ok(Some(frame)),
                    Err(false) => {
                        // The lease is gone (released or expired) without a value: one last
                        // look, since the holder writes the value before releasing.
                        let k = key.to_owned();
                        return self.blocking(move |s| s.get(&k)).await;
                    }
                    Err(true) => {}
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(self.shared.opts.poll_interval.min(deadline - now)).await;
            }
        })
    }

    fn publish_invalidation<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), TierError>> {
        // No backplane: other processes' local tiers age out (see `NO_BACKPLANE_LOCAL_TTL`).
        Box::pin(async { Ok(()) })
    }

    fn subscribe_invalidations(&self, _handler: InvalidationHandler) -> bool {
        false
    }
}

impl SqliteTier {
    /// What the file holds, by namespace (one scan of the entries table).
    pub fn inventory(&self) -> Result<crate::tier::Inventory, TierError> {
        self.shared.with_conn(|c| {
            let now = now_ms();
            let mut inv = crate::tier::Inventory::default();
            let mut stmt = c.prepare("SELECT key, size, expires_ms FROM larder_entries").map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .map_err(err)?;
            for row in rows {
                let (key, size, expires) = row.map_err(err)?;
                inv.add(&key, u64::try_from(size).unwrap_or(0), expires <= now);
            }
            let leases: i64 = c
                .query_row("SELECT COUNT(*) FROM larder_leases WHERE expires_ms > ?1", [now], |r| r.get(0))
                .map_err(err)?;
            inv.leases = u64::try_from(leases).unwrap_or(0);
            Ok(inv)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    #[test]
    fn get_set_delete_and_leases() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let tier =
            SqliteTier::open(dir.path().join("c.db"), SqliteOptions::default(), rt.handle().clone()).unwrap();
        rt.block_on(async {
            assert_eq!(tier.get("k").await.unwrap(), None);
            tier.set("k", b"frame", Duration::from_secs(60)).await.unwrap();
            assert_eq!(tier.get("k").await.unwrap().as_deref(), Some(&b"frame"[..]));
            tier.delete("k").await.unwrap();
            assert_eq!(tier.get("k").await.unwrap(), None);

            let a = [1u8; 16];
            let b = [2u8; 16];
            assert_eq!(tier.try_lease("k", &a, Duration::from_secs(60)).await.unwrap(), Lease::Acquired);
            assert_eq!(tier.try_lease("k", &b, Duration::from_secs(60)).await.unwrap(), Lease::HeldByOther);
            tier.release_lease("k", &b).await.unwrap(); // wrong token: no effect
            assert_eq!(tier.try_lease("k", &b, Duration::from_secs(60)).await.unwrap(), Lease::HeldByOther);
            tier.release_lease("k", &a).await.unwrap();
            assert_eq!(tier.try_lease("k", &b, Duration::from_millis(30)).await.unwrap(), Lease::Acquired);
            // An expired lease is taken over.
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(tier.try_lease("k", &a, Duration::from_secs(60)).await.unwrap(), Lease::Acquired);
        });
    }

    /// A read on the calling thread never waits for a lock: when another connection holds
    /// the file exclusively, the read moves to the blocking pool and waits there (up to the
    /// tier's timeout), so it still returns the value once the lock goes, and reads that do
    /// not contend are served by the calling thread (the reader pool fills up).
    #[test]
    fn reads_on_the_calling_thread_fall_back_to_the_pool_when_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let rt = rt();
        let opts = SqliteOptions::default().timeout(Duration::from_secs(5));
        let tier = SqliteTier::open(&path, opts, rt.handle().clone()).unwrap();
        rt.block_on(tier.set("k", b"frame", Duration::from_secs(60))).unwrap();
        assert_eq!(rt.block_on(tier.get("k")).unwrap().as_deref(), Some(&b"frame"[..]));
        assert_eq!(tier.shared.readers.lock().unwrap().len(), 1, "the read used a reader connection");

        // Another connection takes the file exclusively (in WAL mode only exclusive locking
        // mode keeps readers out, and it needs every other connection closed first) and lets
        // it go after 300 ms.
        tier.shared.readers.lock().unwrap().clear();
        tier.shared.pool.lock().unwrap().clear();
        let locker = Connection::open(&path).unwrap();
        locker.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
        locker.execute("UPDATE larder_entries SET size = size WHERE key = 'k'", []).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            locker.execute_batch("COMMIT;").unwrap();
            drop(locker);
        });
        std::thread::sleep(Duration::from_millis(50));
        // The inline read is busy at once and must not fail: the pool waits for the lock.
        assert!(tier.shared.get_now("k").is_none(), "a busy inline read is handed over");
        let t = std::time::Instant::now();
        assert_eq!(rt.block_on(tier.get("k")).unwrap().as_deref(), Some(&b"frame"[..]));
        assert!(t.elapsed() >= Duration::from_millis(150), "waited for the lock: {:?}", t.elapsed());
        release.join().unwrap();
        assert!(matches!(tier.shared.get_now("k"), Some(Ok(Some(_)))), "inline again once free");
    }

    /// A sync caller's writes run on its own thread: with the runtime's only blocking-pool
    /// thread held, its write, lease and release complete at once, while the same write from
    /// async code (through the pool) waits until the pool thread is let go.
    #[test]
    fn a_sync_callers_writes_run_on_its_thread_and_async_ones_on_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let opts = SqliteOptions::default().timeout(Duration::from_secs(30));
        let tier = Arc::new(SqliteTier::open(dir.path().join("c.db"), opts, rt.handle().clone()).unwrap());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let occupant = rt.spawn_blocking(move || held.recv());
        std::thread::sleep(Duration::from_millis(50)); // the occupant takes the pool's thread
        let token = [3u8; 16];
        crate::runtime::as_blocking_caller(|| {
            rt.block_on(async {
                tier.set("k", b"frame", Duration::from_secs(60)).await.unwrap();
                assert_eq!(
                    tier.try_lease("k", &token, Duration::from_secs(60)).await.unwrap(),
                    Lease::Acquired
                );
                tier.release_lease("k", &token).await.unwrap();
            })
        });
        assert!(!occupant.is_finished(), "the pool's thread was held throughout");
        // From async code the write goes to the pool and waits for its thread.
        let t2 = Arc::clone(&tier);
        let handle = rt.handle().clone();
        let writer =
            std::thread::spawn(move || handle.block_on(t2.set("k2", b"frame", Duration::from_secs(60))));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!writer.is_finished(), "an async caller's write waits for the pool");
        release.send(()).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(rt.block_on(tier.get("k2")).unwrap().as_deref(), Some(&b"frame"[..]));
    }

    #[test]
    fn wait_for_value_sees_the_holders_write_and_ends_when_the_lease_goes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let tier =
            SqliteTier::open(dir.path().join("c.db"), SqliteOptions::default(), rt.handle().clone()).unwrap();
        rt.block_on(async {
            let tok = [9u8; 16];
            assert_eq!(tier.try_lease("w", &tok, Duration::from_secs(5)).await.unwrap(), Lease::Acquired);
            let t2 = tier.clone();
            let writer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                t2.set("w", b"v", Duration::from_secs(60)).await.unwrap();
                t2.release_lease("w", &tok).await.unwrap();
            });
            let got = tier.wait_for_value("w", Duration::from_secs(2)).await.unwrap();
            assert_eq!(got.as_deref(), Some(&b"v"[..]));
            writer.await.unwrap();
            // No lease, no value: returns at once with None.
            let start = std::time::Instant::now();
            assert_eq!(tier.wait_for_value("nothing", Duration::from_secs(2)).await.unwrap(), None);
            assert!(start.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn sweep_bounds_entries_and_drops_expired() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let tier = SqliteTier::open(
            dir.path().join("c.db"),
            SqliteOptions::default().max_entries(10),
            rt.handle().clone(),
        )
        .unwrap();
        rt.block_on(async {
            for i in 0..30 {
                tier.set(&format!("k{i}"), b"x", Duration::from_secs(60)).await.unwrap();
            }
            tier.set("short", b"x", Duration::from_millis(1)).await.unwrap();
        });
        std::thread::sleep(Duration::from_millis(5));
        tier.sweep_now().unwrap();
        assert!(tier.len().unwrap() <= 10, "{}", tier.len().unwrap());
        rt.block_on(async {
            assert_eq!(tier.get("short").await.unwrap(), None);
            assert!(tier.get("k29").await.unwrap().is_some(), "newest kept");
        });
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let rt = rt();
        let topts = TierOptions {
            op_timeout: Duration::from_millis(250),
            poll_interval: Duration::from_millis(10),
            runtime: rt.handle().clone(),
        };
        assert!(matches!(SqliteTier::open_url("sqlite:", &topts), Err(TierError::Config(_))));
        assert!(matches!(
            SqliteTier::open_url("sqlite:/tmp/x.db?max_entries=abc", &topts),
            Err(TierError::Config(_))
        ));
        assert!(matches!(
            SqliteTier::open_url("sqlite:/tmp/x.db?colour=blue", &topts),
            Err(TierError::Config(_))
        ));
        assert!(matches!(
            SqliteTier::open_url("sqlite:/nonexistent-dir-larder/x.db", &topts),
            Err(TierError::Config(_))
        ));
    }
}
