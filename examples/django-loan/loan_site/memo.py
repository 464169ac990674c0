"""The quote function and the five ways the example memoizes it (settings.LOAN_MEMO).

Every real computation increments the Redis counter `loan:computations` (on LOAN_COUNTER_URL)
before it sleeps, so the harness counts computations outside any cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time

import redis
from django.conf import settings
from django.core.cache import cache

from . import formula

COUNTER_KEY = "loan:computations"

_counter: redis.Redis | None = None
_counter_pid = 0


def _count_computation() -> None:
    # One client per process: a client made in a gunicorn --preload master is not reused by
    # the forked workers.
    global _counter, _counter_pid
    if _counter is None or _counter_pid != os.getpid():
        _counter = redis.Redis.from_url(settings.LOAN_COUNTER_URL, socket_timeout=5)
        _counter_pid = os.getpid()
    _counter.incr(COUNTER_KEY)


def loan_quote(user_id: int, amount: int, rate: int, term: int) -> dict:
    """The expensive calculation: LOAN_COMPUTE_MS of work, then the formula."""
    _count_computation()
    time.sleep(settings.LOAN_COMPUTE_MS / 1000)
    return formula.quote(user_id, amount, rate, term)


def seed_decorator(digest):
    """Story A's decorator: key `{func.__name__}_{digest(input_string)}`, Django's get_or_set.

    `digest=hash` is the bug (Python's str hash is seeded per interpreter); `digest=sha1` is
    the seed's fix. Neither has single-flight: every worker that misses computes.
    """

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args):
            input_string = ":".join(str(a) for a in args)
            cache_key = f"{func.__name__}_{digest(input_string)}"
            return cache.get_or_set(cache_key, lambda: func(*args), settings.LOAN_TTL)

        return wrapper

    return decorate


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def build(mode: str):
    if mode == "none":
        return loan_quote
    if mode == "seed":
        return seed_decorator(hash)(loan_quote)
    if mode in ("sha1", "larder_cache"):
        # larder_cache: the same code; only CACHES["default"] differs (settings.py).
        return seed_decorator(_sha1)(loan_quote)
    if mode == "larder":
        import larder

        return larder.memoize(namespace="loan_calc", version=1, ttl=settings.LOAN_TTL)(loan_quote)
    raise ValueError(f"unknown LOAN_MEMO {mode!r}")


memo_quote = build(settings.LOAN_MEMO)
