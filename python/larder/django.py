"""A Django cache backend on larder: ``"BACKEND": "larder.django.LarderCache"`` in ``CACHES``.

Existing ``cache.get_or_set``, ``cache_page`` and ``{% cache %}`` code keeps working and gets
larder's guarantees: one computation per key across every gunicorn worker and host
(``get_or_set`` is single-flight through larder's leases), keys identical in every process and
release, values in a MAC'd frame, and a cache that answers by computing when Redis is down
instead of raising.

Example settings::

    CACHES = {
        "default": {
            "BACKEND": "larder.django.LarderCache",
            "LOCATION": "local:10000,redis://127.0.0.1:6379/0",   # or "sqlite:/var/tmp/app.db"
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"NAMESPACE": "django"},
        }
    }

``LOCATION`` is larder's tier list, exactly as ``LARDER_CACHE`` (``local[:N]``, ``sqlite:PATH``,
``redis://…``, ``rediss://…``, ``redis+unix://…``, ``redis+cluster://…``, comma-separated).

``OPTIONS``:

* ``NAMESPACE`` (default ``"django"``): the larder key space. A Django key (after
  ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION``, exactly as Django builds it) becomes
  ``KeySpace(NAMESPACE, 1).key(django_key)``, so a Rust service reads the same entry with
  ``KeySpace::new("django", 1)?.key(":1:my-key")``.
* ``SECRET``: the deployment secret (bytes ≥ 16 or hex) keying key digests and value MACs;
  default ``LARDER_KEY_SECRET``.
* ``PICKLE`` (default ``False``): values go through larder's language-neutral CBOR codec
  (None, bool, int, float, str, bytes, list, dict; a tuple reads back as a list). ``cache_page``
  stores ``HttpResponse`` objects, which CBOR cannot carry: set ``PICKLE: True`` for that, and a
  secret is then required — a pickle read from a shared store is code execution for anyone
  who can write to the store, and the secret's MAC is what keeps forged entries out.
* ``op_timeout``, ``lease_ttl``, ``lease_wait``, ``fail_safe``, ``local_max_ttl`` (seconds) and
  ``xfetch_beta``: passed to ``larder.Cache``.

Timeouts follow Django: ``None`` caches forever (larder's limit, 31 years), ``0`` or a negative
number does not cache (and deletes what was there), ``DEFAULT_TIMEOUT`` uses ``TIMEOUT``.

What this backend does not do (see docs/django.md): ``incr``/``decr``/``touch`` are a read then a
write, not atomic across processes, and ``incr`` resets the entry's timeout to ``TIMEOUT``;
``clear()`` drops this cache's namespace (every KEY_PREFIX and version in it), not the whole
Redis database; culling options (``MAX_ENTRIES``, ``CULL_FREQUENCY``) are ignored — larder's
tiers have their own bounds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlparse

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from . import _larder

__all__ = ["LarderCache"]

#: larder refuses TTLs of 1e9 s or more; Django's "forever" (timeout=None) maps to this.
FOREVER_SECONDS = 999_999_999.0

_CACHE_OPTIONS = (
    "op_timeout",
    "lease_ttl",
    "lease_wait",
    "fail_safe",
    "local_max_ttl",
    "xfetch_beta",
)
_SCHEMES = ("local", "sqlite", "redis", "rediss", "redis+unix", "redis+cluster", "none")
_MEMO_LRU = 256
_JOIN_RETRIES = 20

# Django builds one backend object per alias *per thread* (and again under override_settings);
# they share one larder.Cache per configuration, so threads coalesce in-process, share one
# local tier and one set of connections. larder.Cache rebuilds itself in a forked child.
_caches: dict[tuple, Any] = {}
_memos: OrderedDict[tuple, Any] = OrderedDict()
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at fork(); the child has no such thread.
    global _registry_lock
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _shared_cache(location: str, secret: Any, kwargs: dict[str, Any]):
    key = (location, secret, tuple(sorted(kwargs.items())))
    with _registry_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _larder.Cache(location, secret=secret, **kwargs)
            _caches[key] = cache
        return cache


def _shared_memo(cache: Any, namespace: str, ttl: float, pickle: bool):
    key = (id(cache), namespace, ttl, pickle)
    with _registry_lock:
        memo = _memos.get(key)
        if memo is None:
            memo = _larder.Memo(namespace, 1, ttl, cache, pickle)
            _memos[key] = memo
            if len(_memos) > _MEMO_LRU:
                _memos.popitem(last=False)
        else:
            _memos.move_to_end(key)
        return memo


class _Miss(Exception):
    """Raised inside a read's thunk: nothing is cached. Never leaves this module."""


def _shared_item(location: str) -> str | None:
    """The shared tier of a larder tier list (commas inside a cluster URL stay with it)."""
    items: list[str] = []
    for part in (p.strip() for p in location.split(",")):
        if not part:
            continue
        if part.split(":", 1)[0] in _SCHEMES:
            items.append(part)
        elif items:
            items[-1] += "," + part
    for item in items:
        if item.split(":", 1)[0] not in ("local", "none"):
            return item
    return None


# Query options larder reads from a tier URL and removes before the tier sees it; redis-py
# must not see them either (it passes unknown options to its connection class).
_LARDER_URL_OPTIONS = ("secret", "insecure_public_mac")


def _without_larder_options(url: str) -> str:
    base, sep, query = url.partition("?")
    if not sep:
        return url
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in _LARDER_URL_OPTIONS]
    return base + ("?" + "&".join(kept) if kept else "")


class LarderCache(BaseCache):
    """Django's cache API on a larder cache (local tier, SQLite, Redis or Redis Cluster)."""

    def __init__(self, location: str, params: dict[str, Any]):
        super().__init__(params)
        if not isinstance(location, str) or not location.strip():
            raise ImproperlyConfigured(
                "LarderCache needs LOCATION: larder's tier list, e.g. 'redis://127.0.0.1:6379/0', "
                "'sqlite:/var/tmp/app.db' or 'local:10000,redis://…'"
            )
        options = dict(params.get("OPTIONS") or {})
        # Django's culling options belong to its own backends; larder's tiers bound themselves.
        options.pop("MAX_ENTRIES", None)
        options.pop("CULL_FREQUENCY", None)
        self._namespace = str(options.pop("NAMESPACE", "django"))
        secret = options.pop("SECRET", None)
        self._pickle = bool(options.pop("PICKLE", False))
        cache_kwargs = {k: options.pop(k) for k in _CACHE_OPTIONS if k in options}
        if options:
            raise ImproperlyConfigured(
                f"LarderCache: unknown OPTIONS {sorted(options)}; expected NAMESPACE, SECRET, "
                f"PICKLE, {', '.join(_CACHE_OPTIONS)}"
            )
        try:
            self._cache = _shared_cache(location, secret, cache_kwargs)
        except (_larder.CacheError, TypeError, ValueError) as e:
            raise ImproperlyConfigured(f"LarderCache LOCATION {location!r}: {e}") from e
        if self._pickle and not self._cache.has_secret:
            raise ImproperlyConfigured(
                "LarderCache OPTIONS PICKLE=True needs a secret (OPTIONS SECRET or "
                "LARDER_KEY_SECRET): without one, anyone who can write to the shared store can "
                "forge a pickle, which is code execution in every worker that reads it"
            )
        self._location = location
        # Fail now on a bad namespace, not at the first request.
        try:
            self._read_memo()
        except (_larder.LarderError, ValueError) as e:
            raise ImproperlyConfigured(
                f"LarderCache OPTIONS NAMESPACE {self._namespace!r}: {e}"
            ) from e

    # -- plumbing -------------------------------------------------------------------------

    def _ttl(self, timeout: Any) -> float | None:
        """Seconds to keep a value, or None when it must not be cached (timeout <= 0)."""
        t = self.get_backend_timeout(timeout)
        if t is None:
            return FOREVER_SECONDS
        if t <= 0:
            return None
        return min(float(t), FOREVER_SECONDS)

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Relative seconds (as Django's Redis backend): None = forever, 0 = do not cache."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0, timeout)

    def _memo(self, ttl: float):
        """The larder memo object for one TTL (larder binds a TTL to a memo today)."""
        return _shared_memo(self._cache, self._namespace, ttl, self._pickle)

    def _read_memo(self):
        return self._memo(self._ttl(DEFAULT_TIMEOUT) or FOREVER_SECONDS)

    def _raise_miss(self):
        raise _Miss

    def _read(self, key: str) -> tuple[bool, Any]:
        """(found, value) for a made key; never computes, never stores."""
        memo = self._read_memo()
        hit, value = memo.lookup((key,))
        if hit:
            return True, value
        try:
            return True, memo.call((key,), self._raise_miss, ())
        except Exception:
            # _Miss — or, when this read joined another caller's computation of the same key
            # in this process, that computation's exception: either way, nothing is cached.
            return False, None

    def _write(self, key: str, value: Any, ttl: float | None) -> None:
        if ttl is None:
            self._read_memo().invalidate((key,))
            return
        try:
            self._memo(ttl).prime((key,), value)
        except TypeError as e:
            if self._pickle:
                raise
            raise TypeError(
                f"LarderCache stores None, bool, int, float, str, bytes, list and dict values "
                f"(larder's CBOR codec), not a {type(value).__module__}.{type(value).__qualname__}"
                f": set OPTIONS PICKLE=True with a secret to store any picklable value "
                f"(cache_page needs it; see docs/django.md)"
            ) from e

    # -- Django's cache API ---------------------------------------------------------------

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        found, value = self._read(key)
        return value if found else default

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        self._write(key, value, self._ttl(timeout))

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl is None:
            found, _ = self._read(key)
            return not found
        # Through the key's lease: of concurrent add()/get_or_set() callers in every process,
        # exactly one stores its value.
        ran = []

        def store():
            ran.append(True)
            return value

        self._call(self._memo(ttl), key, store)
        return bool(ran)

    def _call(self, memo, key: str, thunk):
        """memo.call, retried when it joined a concurrent read's (empty) flight in this process."""
        for _ in range(_JOIN_RETRIES):
            try:
                return memo.call((key,), thunk, ())
            except _Miss:
                continue
        return thunk()

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        thunk = default if callable(default) else (lambda: default)
        if ttl is None:
            found, value = self._read(key)
            return value if found else thunk()
        # Single-flight: one caller computes while the others (threads and processes) wait
        # for its value.
        return self._call(self._memo(ttl), key, thunk)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        found, value = self._read(key)
        if not found:
            return False
        self._write(key, value, self._ttl(timeout))
        return True

    def delete(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        found, _ = self._read(key)
        self._read_memo().invalidate((key,))
        return found

    def has_key(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        return self._read(key)[0]

    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        found, value = self._read(key)
        if not found:
            raise ValueError(f"Key '{key}' not found")
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"cannot increment the {type(value).__name__} cached under '{key}'")
        new = value + delta
        self._write(key, new, self._ttl(DEFAULT_TIMEOUT))
        return new

    def get_many(self, keys, version=None):
        out = {}
        for k in keys:
            made = self.make_and_validate_key(k, version=version)
            found, value = self._read(made)
            if found:
                out[k] = value
        return out

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        ttl = self._ttl(timeout)
        for k, v in data.items():
            self._write(self.make_and_validate_key(k, version=version), v, ttl)
        return []

    def delete_many(self, keys, version=None):
        memo = self._read_memo()
        for k in keys:
            memo.invalidate((self.make_and_validate_key(k, version=version),))

    def clear(self):
        """Drops every entry of this cache's namespace (all prefixes and versions)."""
        self._cache.clear_local()
        shared = _shared_item(self._location)
        if shared is None:
            return
        scheme = shared.split(":", 1)[0]
        if scheme in ("redis", "rediss", "redis+unix"):
            self._clear_redis(shared)
        elif scheme == "sqlite":
            self._clear_sqlite(shared)
        else:
            raise NotImplementedError(
                f"LarderCache.clear() on a {scheme} tier needs larder's own namespace clear "
                "(see docs/django.md)"
            )

    def larder_key(self, key, version=None) -> str:
        """The larder key text of a Django key: what a Rust service sharing this cache reads
        (``KeySpace::new(NAMESPACE, 1)?.key(django_key)`` with the same secret)."""
        return self._read_memo().key((self.make_and_validate_key(key, version=version),))

    def close(self, **kwargs):
        # larder keeps one multiplexed connection per process; nothing to give back per request.
        pass

    # -- clear() helpers: tier layouts as documented in crates/larder-cache --------------------

    def _clear_redis(self, url: str) -> None:
        import redis

        if url.startswith("redis+unix://"):
            client = redis.Redis(unix_socket_path=unquote(urlparse(url).path), socket_timeout=5)
        else:
            client = redis.Redis.from_url(_without_larder_options(url), socket_timeout=5)
        pattern = "larder:{#" + re.sub(r"([*?\[\]\\])", r"\\\1", self._namespace) + ":v*"
        try:
            batch: list[bytes] = []
            for name in client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    self._drop_redis(client, batch)
                    batch = []
            if batch:
                self._drop_redis(client, batch)
        finally:
            client.close()

    @staticmethod
    def _drop_redis(client, names: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.delete(*names)
        for name in names:
            if not name.endswith(b":lease"):
                # "larder:{#K}" -> K: other processes drop K from their local tiers.
                pipe.publish("larder:invalidate", name[len(b"larder:{#") : -1])
        pipe.execute()

    def _clear_sqlite(self, item: str) -> None:
        # In a child process: this process already has larder's own (bundled) SQLite open on
        # the file, and a second SQLite library in one process breaks SQLite's POSIX locks
        # (closing either one's descriptor drops the other's locks), which corrupts WAL files.
        path = item[len("sqlite:") :].split("?", 1)[0]
        like = self._namespace.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        subprocess.run(
            [sys.executable, "-c", _SQLITE_CLEAR, path, like + ":v%"],
            check=True,
            timeout=60,
            capture_output=True,
        )


_SQLITE_CLEAR = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("DELETE FROM larder_entries WHERE key LIKE ? ESCAPE '\\\\'", (sys.argv[2],))
db.commit()
db.close()
"""
