//! `larder.Cache` and the core of `@larder.memoize` on larder-cache.
//!
//! Every blocking step (waiting for another thread's computation, a shared-tier round trip,
//! a lease) runs with the GIL released; the function itself runs with the GIL held, on the
//! calling thread, inside the Rust cache's single-flight.

use std::sync::Arc;
use std::time::Duration;

use larder_cache::{Cache, CacheStats, KeySecret, KeySpace, Lookup, StableKey, ValueCodec};
use larder_key::Encoder;
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::keys::{parse_secret, Walk};
use crate::values::{from_stored, to_stored, Stored};
use crate::CacheError;

/// An encoding made by [`Walk`], handed to the cache as a `StableKey`.
struct Raw<'a>(&'a [u8]);

impl StableKey for Raw<'_> {
    fn encode(&self, enc: &mut Encoder) {
        enc.raw(self.0);
    }
}

/// A Python exception shared by the callers that waited for one computation.
#[derive(Clone)]
struct SharedErr(Arc<PyErr>);

struct Built {
    pid: u32,
    cache: Cache,
}

/// `larder.Cache(url=None, *, secret=None, ...)`: a memo cache (local tier, SQLite, Redis or
/// Redis Cluster) configured like Rust's `LARDER_CACHE`. Per process: after `fork()` the
/// child builds its own on first use (own connections, own local tier).
#[pyclass(module = "larder._larder", frozen, name = "Cache")]
pub(crate) struct PyCache {
    spec: String,
    secret: Option<KeySecret>,
    opts: CacheOpts,
    built: Mutex<Option<Built>>,
    building: Mutex<()>,
}

#[derive(Clone, Copy)]
struct CacheOpts {
    op_timeout: Option<f64>,
    lease_ttl: Option<f64>,
    lease_wait: Option<f64>,
    xfetch_beta: Option<f64>,
    fail_safe: Option<f64>,
    local_max_ttl: Option<f64>,
}

fn secs(name: &str, v: Option<f64>) -> PyResult<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if (0.0..1e9).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!("{name} must be a number of seconds >= 0, got {s}"))),
    }
}

impl PyCache {
    fn build(&self) -> Result<Cache, String> {
        let mut b = larder_cache::config::parse(&self.spec).map_err(|e| e.to_string())?;
        b = b.value_codec(ValueCodec::Cbor);
        if let Some(s) = &self.secret {
            b = b.secret(s);
        }
        let o = self.opts;
        let d = |v: Option<f64>| v.map(Duration::from_secs_f64);
        if let Some(t) = d(o.op_timeout) {
            b = b.op_timeout(t);
        }
        if let Some(t) = d(o.lease_ttl) {
            b = b.lease_ttl(t);
        }
        if let Some(t) = d(o.lease_wait) {
            b = b.lease_wait(t);
        }
        if let Some(beta) = o.xfetch_beta {
            b = b.xfetch_beta(beta);
        }
        if let Some(t) = d(o.fail_safe) {
            b = b.fail_safe(t);
        }
        if let Some(t) = d(o.local_max_ttl) {
            b = b.local_max_ttl(t);
        }
        b.build().map_err(|e| e.to_string())
    }

    /// This process's cache, built on first use (and again in a forked child) by one thread
    /// while concurrent first callers wait without the GIL.
    pub(crate) fn get(&self, py: Python<'_>) -> PyResult<Cache> {
        let pid = std::process::id();
        if let Some(b) = self.built.lock().as_ref() {
            if b.pid == pid {
                return Ok(b.cache.clone());
            }
        }
        // Opening a shared tier connects to servers: without the GIL.
        py.detach(|| -> Result<Cache, String> {
            let _building = self.building.lock();
            if let Some(b) = self.built.lock().as_ref() {
                if b.pid == pid {
                    return Ok(b.cache.clone());
                }
            }
            let cache = self.build()?;
            if let Some(old) = self.built.lock().replace(Built { pid, cache: cache.clone() }) {
                // The parent's cache: its connections and threads belong to the parent.
                std::mem::forget(old);
            }
            Ok(cache)
        })
        .map_err(CacheError::new_err)
    }

    pub(crate) fn secret(&self) -> Option<&KeySecret> {
        self.secret.as_ref()
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &CacheStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("local_hits", s.local_hits)?;
    d.set_item("local_misses", s.local_misses)?;
    d.set_item("shared_hits", s.shared_hits)?;
    d.set_item("shared_misses", s.shared_misses)?;
    d.set_item("computations", s.computations)?;
    d.set_item("coalesced", s.coalesced)?;
    d.set_item("lease_waits", s.lease_waits)?;
    d.set_item("lease_timeouts", s.lease_timeouts)?;
    d.set_item("store_errors", s.store_errors)?;
    d.set_item("breaker_skips", s.breaker_skips)?;
    d.set_item("corrupt_entries", s.corrupt_entries)?;
    d.set_item("oversize_values", s.oversize_values)?;
    d.set_item("early_refreshes", s.early_refreshes)?;
    d.set_item("fail_safe_served", s.fail_safe_served)?;
    d.set_item("shared_writes", s.shared_writes)?;
    d.set_item("invalidations_received", s.invalidations_received)?;
    d.set_item("compute_errors", s.compute_errors)?;
    d.set_item("refreshes_started", s.refreshes_started)?;
    d.set_item("refreshes_finished", s.refreshes_finished)?;
    d.set_item("stale_served", s.stale_served)?;
    d.set_item("stale_served_by_timeout", s.stale_served_by_timeout)?;
    d.set_item("hard_timeouts", s.hard_timeouts)?;
    d.set_item("tag_stale", s.tag_stale)?;
    Ok(d)
}

#[pymethods]
impl PyCache {
    /// `url`: `local[:N]`, `sqlite:PATH`, `redis://…`, `redis+cluster://h:p,h:p`, combined
    /// with commas (`local:10000,sqlite:/var/tmp/larder.db`); default `LARDER_CACHE`, else a
    /// local tier of 10,000 entries. `secret`: bytes (≥ 16) or hex keying both key digests and
    /// value MACs (default `LARDER_KEY_SECRET`). Durations are in seconds.
    #[new]
    #[pyo3(signature = (url=None, *, secret=None, op_timeout=None, lease_ttl=None, lease_wait=None, xfetch_beta=None, fail_safe=None, local_max_ttl=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: Option<&Bound<'_, PyAny>>,
        secret: Option<&Bound<'_, PyAny>>,
        op_timeout: Option<f64>,
        lease_ttl: Option<f64>,
        lease_wait: Option<f64>,
        xfetch_beta: Option<f64>,
        fail_safe: Option<f64>,
        local_max_ttl: Option<f64>,
    ) -> PyResult<Self> {
        let spec = match url {
            Some(u) if !u.is_none() => u.extract::<String>().map_err(|_| {
                PyTypeError::new_err("url must be a str such as \"local:10000,sqlite:/var/tmp/larder.db\"")
            })?,
            _ => match std::env::var("LARDER_CACHE") {
                Ok(s) if !s.trim().is_empty() => s,
                _ => "local".to_owned(),
            },
        };
        // Validate the grammar now, so a typo fails at construction.
        let _checked = larder_cache::config::parse(&spec).map_err(|e| CacheError::new_err(e.to_string()))?;
        let secret = match secret {
            Some(s) if !s.is_none() => Some(parse_secret(s)?),
            _ => KeySecret::from_env().map_err(|e| CacheError::new_err(format!("LARDER_KEY_SECRET: {e}")))?,
        };
        for (n, v) in [
            ("op_timeout", op_timeout),
            ("lease_ttl", lease_ttl),
            ("lease_wait", lease_wait),
            ("fail_safe", fail_safe),
            ("local_max_ttl", local_max_ttl),
        ] {
            secs(n, v)?;
        }
        Ok(PyCache {
            spec,
            secret,
            opts: CacheOpts { op_timeout, lease_ttl, lease_wait, xfetch_beta, fail_safe, local_max_ttl },
            built: Mutex::new(None),
            building: Mutex::new(()),
        })
    }

    /// Opens the tiers now (otherwise on first use); raises `CacheError` if they cannot be.
    fn open(&self, py: Python<'_>) -> PyResult<()> {
        self.get(py).map(|_| ())
    }

    /// Counters of this process's cache since it was built (a dict of ints).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.get(py)?;
        stats_dict(py, &c.stats())
    }

    /// Empties this process's local tier.
    fn clear_local(&self, py: Python<'_>) -> PyResult<()> {
        self.get(py)?.clear_local();
        Ok(())
    }

    /// The configuration string.
    #[getter]
    fn url(&self) -> &str {
        &self.spec
    }

    /// The shared tier's name (`sqlite`, `redis`, `redis-cluster`), or None.
    #[getter]
    fn shared_tier(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        Ok(self.get(py)?.shared_tier_name())
    }

    /// Is the circuit breaker in front of the shared tier open?
    #[getter]
    fn breaker_open(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.get(py)?.breaker_open())
    }

    #[getter]
    fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    fn __repr__(&self) -> String {
        format!("larder.Cache({:?})", self.spec)
    }
}

/// The memo state of one decorated function: its key space, TTL and cache.
#[pyclass(module = "larder._larder", frozen, name = "Memo")]
pub(crate) struct Memo {
    space: KeySpace,
    ttl: Duration,
    cache: Py<PyCache>,
    pickle: bool,
}

impl Memo {
    /// The key encoding of a call's bound arguments, as Rust's `#[memoize]` builds it: no
    /// argument → `()`, one → that value, several → a tuple.
    fn encode(&self, values: &Bound<'_, PyTuple>) -> PyResult<Walk> {
        let mut w = Walk::new(self.space.max_encoded_len());
        if values.len() == 1 {
            w.value(&values.get_item(0)?, 0)?;
        } else {
            w.value(values.as_any(), 0)?;
        }
        w.finish()?;
        Ok(w)
    }

    fn ttl_or(&self, ttl: Option<f64>) -> PyResult<Duration> {
        match secs("ttl", ttl)? {
            None => Ok(self.ttl),
            Some(t) if t.is_zero() => Err(PyValueError::new_err("ttl must be > 0 seconds")),
            Some(t) => Ok(t),
        }
    }

    fn back<'py>(&self, py: Python<'py>, v: &Stored) -> PyResult<Option<Bound<'py, PyAny>>> {
        from_stored(py, v, self.pickle)
    }
}

#[pymethods]
impl Memo {
    #[new]
    #[pyo3(signature = (namespace, version, ttl, cache, pickle=false))]
    fn new(
        py: Python<'_>,
        namespace: &str,
        version: u32,
        ttl: f64,
        cache: Py<PyCache>,
        pickle: bool,
    ) -> PyResult<Self> {
        let ttl = secs("ttl", Some(ttl))?.unwrap_or_default();
        if ttl.is_zero() {
            return Err(PyValueError::new_err("ttl must be > 0 seconds"));
        }
        let mut space =
            KeySpace::new(namespace, version).map_err(|e| crate::KeyEncodingError::new_err(e.to_string()))?;
        let c = cache.bind(py).get();
        if let Some(s) = c.secret() {
            space = space.with_secret(s);
        }
        if pickle && c.secret().is_none() {
            return Err(CacheError::new_err(
                "memoize(pickle=True) needs a configured secret (LARDER_KEY_SECRET or Cache(secret=...)): without one, anyone who can write to the shared store can forge a pickle, which is code execution",
            ));
        }
        Ok(Memo { space, ttl, cache, pickle })
    }

    /// `(True, value)` on a local-tier hit, `(False, None)` otherwise (no computation).
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyTuple>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let w = self.encode(values)?;
        let cache = self.cache.bind(py).get().get(py)?;
        if let Lookup::Hit(v) = cache.lookup::<Raw<'_>, Stored>(&self.space, &Raw(w.enc.as_bytes()), self.ttl)
        {
            if let Some(out) = self.back(py, &v)? {
                return Ok((true, out));
            }
        }
        Ok((false, py.None().into_bound(py)))
    }

    /// The memoized call: a hit, or `func(*args, **kwargs)` run once per key across threads
    /// (and, with a shared tier, across processes), its result stored and returned.
    /// `ttl` (seconds) overrides the function's TTL for a value stored by this call.
    #[pyo3(signature = (values, func, args, kwargs=None, ttl=None))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyTuple>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ttl = self.ttl_or(ttl)?;
        let w = self.encode(values)?;
        let cache = self.cache.bind(py).get().get(py)?;
        let run = |py: Python<'py>| func.bind(py).call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)));
        let pending = match cache.lookup::<Raw<'_>, Stored>(&self.space, &Raw(w.enc.as_bytes()), ttl) {
            Lookup::Hit(v) => match self.back(py, &v)? {
                Some(out) => return Ok(out),
                // A pickled entry for a function that does not allow pickles: computed, not read.
                None => return run(py),
            },
            Lookup::Miss(p) => p,
        };
        let pickle = self.pickle;
        let (f, a, k) = (func.clone_ref(py), args.clone_ref(py), kwargs.as_ref().map(|k| k.clone_ref(py)));
        let r: Result<Stored, SharedErr> = py.detach(move || {
            pending.try_compute_blocking(move || {
                Python::attach(|py| {
                    let out = f
                        .bind(py)
                        .call(a.bind(py), k.as_ref().map(|k| k.bind(py)))
                        .map_err(|e| SharedErr(Arc::new(e)))?;
                    to_stored(&out, pickle).map_err(|e| SharedErr(Arc::new(e)))
                })
            })
        });
        match r {
            Ok(v) => match self.back(py, &v)? {
                Some(out) => Ok(out),
                None => run(py),
            },
            Err(e) => Err(e.0.clone_ref(py)),
        }
    }

    /// The key text of a call's bound arguments.
    fn key(&self, values: &Bound<'_, PyTuple>) -> PyResult<String> {
        let w = self.encode(values)?;
        Ok(self.space.key_from_encoding(w.enc.as_bytes()).as_str().to_owned())
    }

    /// Removes the entry from every tier (and, through Redis pub/sub, other processes' local tiers).
    fn invalidate(&self, py: Python<'_>, values: &Bound<'_, PyTuple>) -> PyResult<()> {
        let w = self.encode(values)?;
        let cache = self.cache.bind(py).get().get(py)?;
        let bytes = w.enc.as_bytes().to_vec();
        let space = self.space.clone();
        py.detach(move || cache.invalidate_blocking(&space, &Raw(&bytes)));
        Ok(())
    }

    /// `(True, value)` if a tier (local or shared) holds a fresh value, else `(False, None)`;
    /// never computes and takes no lease.
    fn get<'py>(&self, py: Python<'py>, values: &Bound<'py, PyTuple>) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let w = self.encode(values)?;
        let cache = self.cache.bind(py).get().get(py)?;
        let bytes = w.enc.as_bytes().to_vec();
        let space = self.space.clone();
        let found: Option<Stored> =
            py.detach(move || cache.get_blocking::<Raw<'_>, Stored>(&space, &Raw(&bytes)));
        if let Some(v) = found {
            if let Some(out) = self.back(py, &v)? {
                return Ok((true, out));
            }
        }
        Ok((false, py.None().into_bound(py)))
    }

    /// Stores `value` as the result for these arguments (in every tier), for `ttl` seconds
    /// (default: the function's TTL).
    #[pyo3(signature = (values, value, ttl=None))]
    fn prime(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyTuple>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let ttl = self.ttl_or(ttl)?;
        let w = self.encode(values)?;
        let stored = to_stored(value, self.pickle)?;
        let cache = self.cache.bind(py).get().get(py)?;
        let bytes = w.enc.as_bytes().to_vec();
        let space = self.space.clone();
        py.detach(move || cache.set_blocking(&space, &Raw(&bytes), stored, ttl));
        Ok(())
    }

    /// Runs `thunk()` now, stores its result and returns it (what the callers then read).
    fn refresh<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyTuple>,
        thunk: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let w = self.encode(values)?;
        let out = thunk.call0()?;
        let stored = to_stored(&out, self.pickle)?;
        let cache = self.cache.bind(py).get().get(py)?;
        let bytes = w.enc.as_bytes().to_vec();
        let space = self.space.clone();
        let ttl = self.ttl;
        let back = stored.clone();
        py.detach(move || cache.set_blocking(&space, &Raw(&bytes), stored, ttl));
        Ok(self.back(py, &back)?.unwrap_or(out))
    }

    #[getter]
    fn namespace(&self) -> &str {
        self.space.namespace()
    }

    #[getter]
    fn version(&self) -> u32 {
        self.space.version()
    }

    #[getter]
    fn ttl(&self) -> f64 {
        self.ttl.as_secs_f64()
    }

    #[getter]
    fn cache(&self, py: Python<'_>) -> Py<PyCache> {
        self.cache.clone_ref(py)
    }
}
