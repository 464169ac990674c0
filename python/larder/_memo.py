"""``@larder.memoize``: one computation per distinct input across threads, coroutines and
worker processes, on the Rust larder-cache."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import threading
from typing import Any, Callable, TypeVar

from . import _larder

__all__ = ["default_cache", "memoize"]

F = TypeVar("F", bound=Callable[..., Any])

_default: _larder.Cache | None = None
_default_lock = threading.Lock()


def default_cache() -> _larder.Cache:
    """The process-wide cache configured from ``LARDER_CACHE`` (same grammar as Rust:
    ``local[:N]``, ``sqlite:PATH``, ``redis://…``, ``redis+cluster://…``, comma-combined) and
    ``LARDER_KEY_SECRET``; a local tier of 10,000 entries when unset. Created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = _larder.Cache()
        return _default


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that wait (GIL released) for async misses; per process."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=64, thread_name_prefix="larder-memo"
            )
        return _executor


def _after_fork() -> None:
    # The parent's threads do not exist in a child: start a new pool (and locks) there.
    global _executor, _executor_lock, _default_lock
    _executor = None
    _executor_lock = threading.Lock()
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

_P = inspect.Parameter


class _Binder:
    """Turns a call's ``(args, kwargs)`` into the tuple of key values, with the function's
    signature bound and defaults applied, so ``f(1)`` and ``f(x=1)`` share one key."""

    __slots__ = ("first_default", "n", "params", "sig", "simple", "skip_first", "tail")

    def __init__(self, fn: Callable[..., Any], receiver: bool) -> None:
        self.sig = inspect.signature(fn)
        self.params = list(self.sig.parameters.values())
        self.n = len(self.params)
        self.simple = all(p.kind is _P.POSITIONAL_OR_KEYWORD for p in self.params)
        self.tail = tuple(p.default for p in self.params)
        self.first_default = self.n
        for i, p in enumerate(self.params):
            if p.default is not _P.empty:
                self.first_default = i
                break
        if self.simple and any(p.default is _P.empty for p in self.params[self.first_default :]):
            self.simple = False
        self.skip_first = not receiver and self.n > 0 and self.params[0].name in ("self", "cls")

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        n_args = len(args)
        if self.simple and not kwargs and self.first_default <= n_args <= self.n:
            values = args if n_args == self.n else args + self.tail[n_args:]
        else:
            bound = self.sig.bind(*args, **kwargs)
            bound.apply_defaults()
            vals = []
            for p in self.params:
                v = bound.arguments[p.name]
                if p.kind is _P.VAR_POSITIONAL:
                    v = list(v)
                vals.append(v)
            values = tuple(vals)
        return values[1:] if self.skip_first else values


def memoize(
    fn: F | None = None,
    *,
    namespace: str | None = None,
    version: int = 1,
    ttl: float = 600,
    cache: _larder.Cache | None = None,
    receiver: bool = False,
    pickle: bool = False,
) -> Any:
    """Memoizes a function, method or ``async def`` in a larder cache.

    ``namespace`` (default: ``module.qualname``, sanitized as Rust does) and ``version`` name
    the key space; ``ttl`` is in seconds; ``cache`` is a :class:`larder.Cache` (default:
    :func:`default_cache`, from ``LARDER_CACHE``). The key is built from the call's arguments
    bound to the signature (defaults applied; ``self``/``cls`` left out unless
    ``receiver=True``, as in Rust) exactly like Rust's ``#[memoize]``: no argument keys as
    ``()``, one as that value, several as a tuple. Values are stored as CBOR (None, bool, int,
    float, str, bytes, list, dict; tuples come back as lists); ``pickle=True`` stores any
    picklable value and requires a secret. Exceptions are not cached; concurrent callers of the
    same key share the one computation and its exception.

    Helpers on the decorated function (same arguments as the function):
    ``.key(...)``, ``.invalidate(...)``, ``.refresh(...)`` (compute now and store),
    ``.prime(value, ...)``; ``.cache`` is the cache in use.

    >>> @larder.memoize(namespace="loan_calc", version=1, ttl=600)
    ... def quote(user_id, amount_won):
    ...     return amount_won * 45 // 1000
    """
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be an int, got {type(version).__name__}")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    if cache is not None and not isinstance(cache, _larder.Cache):
        raise TypeError(f"cache must be a larder.Cache, got {type(cache).__name__}")

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@larder.memoize decorates a function, got {type(func).__name__}")
        ns = namespace
        if ns is None:
            ns = _larder.sanitize_namespace(f"{func.__module__}.{func.__qualname__}")
        _larder.validate_namespace(ns)
        binder = _Binder(func, receiver)
        lock = threading.Lock()
        state: list[Any] = [None]

        def memo() -> _larder.Memo:
            m = state[0]
            if m is None:
                with lock:
                    if state[0] is None:
                        c = cache if cache is not None else default_cache()
                        state[0] = _larder.Memo(ns, version, float(ttl), c, pickle)
                    m = state[0]
            return m

        if inspect.iscoroutinefunction(func):
            wrapper = _async_wrapper(func, binder, memo)
        else:
            n_params = binder.n if binder.simple else -1
            skip_first = binder.skip_first

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                m = state[0] or memo()
                if not kwargs and len(args) == n_params:
                    # The common call: every parameter given positionally (no binding needed).
                    values = args[1:] if skip_first else args
                else:
                    values = binder(args, kwargs)
                return m.call(values, func, args, kwargs)

            def refresh(*args: Any, **kwargs: Any) -> Any:
                return memo().refresh(
                    binder(args, kwargs), functools.partial(func, *args, **kwargs)
                )

            wrapper.refresh = refresh  # type: ignore[attr-defined]

        def key(*args: Any, **kwargs: Any) -> str:
            return memo().key(binder(args, kwargs))

        def invalidate(*args: Any, **kwargs: Any) -> None:
            memo().invalidate(binder(args, kwargs))

        def prime(value: Any, *args: Any, **kwargs: Any) -> None:
            memo().prime(binder(args, kwargs), value)

        wrapper.key = key  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.prime = prime  # type: ignore[attr-defined]
        wrapper.memo = memo  # type: ignore[attr-defined]
        wrapper.namespace = ns  # type: ignore[attr-defined]
        if binder.skip_first:
            return _MethodMemo(wrapper)  # type: ignore[return-value]
        return wrapper  # type: ignore[return-value]

    if fn is not None:
        return decorate(fn)
    return decorate


def _async_wrapper(func: Any, binder: _Binder, memo: Callable[[], _larder.Memo]) -> Any:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        m = memo()
        values = binder(args, kwargs)
        hit, value = m.lookup(values)
        if hit:
            return value
        loop = asyncio.get_running_loop()

        def run() -> Any:
            # On a pool thread, inside the cache's single-flight: run the coroutine on the
            # caller's loop and wait (GIL released) for it.
            return asyncio.run_coroutine_threadsafe(func(*args, **kwargs), loop).result()

        return await loop.run_in_executor(_pool(), m.call, values, run, ())

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        value = await func(*args, **kwargs)
        m = memo()
        values = binder(args, kwargs)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_pool(), m.prime, values, value)
        hit, stored = m.lookup(values)
        return stored if hit else value

    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper


class _MethodMemo:
    """A memoized method: ``obj.method(...)`` calls it, ``obj.method.invalidate(...)`` and the
    other helpers take the arguments without ``self``, like the call."""

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper
        functools.update_wrapper(self, wrapper)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return _BoundMemo(self._wrapper, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapper, name)


class _BoundMemo:
    __slots__ = ("_obj", "_wrapper")

    def __init__(self, wrapper: Any, obj: Any) -> None:
        self._wrapper = wrapper
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self._obj, *args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._wrapper.key(self._obj, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        self._wrapper.invalidate(self._obj, *args, **kwargs)

    def prime(self, value: Any, *args: Any, **kwargs: Any) -> None:
        self._wrapper.prime(value, self._obj, *args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.refresh(self._obj, *args, **kwargs)
