"""@larder.memoize on the Rust cache: local, SQLite, Redis and Redis Cluster tiers;
single-flight across threads; helpers; values; typed errors; fail-open."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Annotated

import pytest

import larder
from conftest import LARDER_MAC_SECRET

SECRET = "00112233445566778899aabbccddeeff"


def counting(fn):
    calls = []

    def wrapped(*a, **k):
        calls.append((a, k))
        return fn(*a, **k)

    wrapped.calls = calls
    return wrapped


@pytest.fixture(params=["local", "sqlite", "redis", "cluster"])
def cache_url(request, tmp_path):
    if request.param == "local":
        return "local:1000"
    if request.param == "sqlite":
        return f"local:1000,sqlite:{tmp_path / 'memo.db'}"
    if request.param == "redis":
        return "local:1000," + request.getfixturevalue("redis").larder_url
    return "local:1000," + request.getfixturevalue("redis_cluster")


def test_calls_once_per_input_in_every_tier(cache_url):
    cache = larder.Cache(cache_url)
    seen = []

    @larder.memoize(namespace="t.once", version=1, ttl=60, cache=cache)
    def quote(user_id, amount_won, rate_bp=450):
        seen.append((user_id, amount_won, rate_bp))
        return {"monthly": amount_won * rate_bp // 10000, "ids": (user_id,)}

    first = quote(7, 5_000_000)
    assert first == {"monthly": 225_000, "ids": [7]}  # tuples come back as lists, on every path
    assert quote(7, 5_000_000) == first
    assert quote(7, amount_won=5_000_000) == first  # kwargs bound to the signature
    assert quote(user_id=7, amount_won=5_000_000, rate_bp=450) == first  # defaults applied
    assert quote(7, 5_000_000, 451) != first
    assert seen == [(7, 5_000_000, 450), (7, 5_000_000, 451)]
    s = cache.stats()
    assert s["computations"] == 2
    assert s["local_hits"] == 3
    if cache.shared_tier:
        assert s["shared_writes"] == 2
        # A fresh process-like cache (no local tier) reads the shared entry: no computation.
        other = larder.Cache(cache_url.split(",", 1)[1])

        @larder.memoize(namespace="t.once", version=1, ttl=60, cache=other)
        def quote2(user_id, amount_won, rate_bp=450):
            raise AssertionError("must not compute: the shared tier has it")

        assert quote2(7, 5_000_000) == first
        assert other.stats()["shared_hits"] == 1


def test_key_matches_rust_memoize_and_keyspace():
    cache = larder.Cache("local")

    @larder.stable(name="LoanQuote", version=1)
    @dataclasses.dataclass
    class LoanQuote:
        user_id: int
        amount_won: int
        rate_bp: Annotated[int, larder.u32]
        term_months: Annotated[int, larder.u32]

    @larder.memoize(namespace="loan_calc", version=1, cache=cache)
    def one(q):
        return 1

    @larder.memoize(namespace="loan_calc", version=1, cache=cache)
    def two(a, b):
        return 2

    @larder.memoize(namespace="loan_calc", version=1, cache=cache)
    def none():
        return 0

    ks = larder.KeySpace("loan_calc", 1)
    q = LoanQuote(7, 5_000_000, 450, 36)
    # One argument keys as itself, several as a tuple, none as () — as Rust's #[memoize].
    assert one.key(q) == ks.key(q) == "loan_calc:v1:t7dwkt76eywwroughfmdhxoja6v7vhp6"
    assert two.key(1, "x") == ks.key((1, "x"))
    assert none.key() == ks.key(None)
    # With a secret, keys are the secret's (the same secret as the value MACs).
    secret_cache = larder.Cache("local", secret=SECRET)

    @larder.memoize(namespace="loan_calc", version=1, cache=secret_cache)
    def three(q):
        return 3

    assert three.key(q) == larder.KeySpace("loan_calc", 1, secret=SECRET).key(q) != ks.key(q)


def test_default_namespace_and_default_cache(monkeypatch, tmp_path):
    @larder.memoize
    def plain(x):
        return x * 2

    assert plain(2) == 4
    # module.qualname, sanitized as Rust's #[memoize] does (long ones: 47 bytes + a digest).
    raw = "test_memoize.test_default_namespace_and_default_cache.<locals>.plain"
    assert plain.namespace == larder._larder.sanitize_namespace(raw)
    assert plain.namespace.startswith("test_memoize.test_default_namespace_and_defaul")
    assert len(plain.namespace) == 64
    assert larder._larder.sanitize_namespace("app.views.Quote.get") == "app.views.quote.get"
    assert plain.key(2).startswith(plain.namespace + ":v1:")
    assert isinstance(larder.default_cache(), larder.Cache)


def test_helpers(cache_url):
    cache = larder.Cache(cache_url)
    n = {"v": 0}

    @larder.memoize(namespace="t.helpers", ttl=60, cache=cache)
    def f(x):
        n["v"] += 1
        return [x, n["v"]]

    assert f(1) == [1, 1]
    assert f(1) == [1, 1]
    f.invalidate(1)
    assert f(1) == [1, 2]
    assert f.refresh(1) == [1, 3]
    assert f(1) == [1, 3]
    f.prime(["primed"], 2)
    assert f(2) == ["primed"]
    assert f(x=2) == ["primed"]
    assert n["v"] == 3


def test_methods_leave_self_out_unless_receiver():
    cache = larder.Cache("local")

    class Calc:
        def __init__(self, rate):
            self.rate = rate
            self.calls = 0

        @larder.memoize(namespace="t.method", cache=cache)
        def price(self, amount):
            self.calls += 1
            return amount * self.rate

    a, b = Calc(2), Calc(3)
    assert a.price(10) == 20
    assert b.price(10) == 20  # same key: self is not part of it (as in Rust)
    assert a.calls == 1 and b.calls == 0
    a.price.invalidate(10)
    assert b.price(10) == 30
    assert a.price.key(10) == larder.KeySpace("t.method", 1).key(10)

    @larder.stable(name="Acct", version=1)
    @dataclasses.dataclass
    class Acct:
        id: int

        @larder.memoize(namespace="t.receiver", cache=cache, receiver=True)
        def balance(self, day):
            return self.id * 100 + day

    assert Acct(1).balance(2) == 102
    assert Acct(2).balance(2) == 202


def test_async_def(cache_url):
    cache = larder.Cache(cache_url)
    calls = []

    @larder.memoize(namespace="t.async", ttl=60, cache=cache)
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return {"x": x}

    async def main():
        results = await asyncio.gather(*[fetch(i % 3) for i in range(30)])
        again = await fetch(1)
        refreshed = await fetch.refresh(1)
        return results, again, refreshed

    results, again, refreshed = asyncio.run(main())
    assert results == [{"x": i % 3} for i in range(30)]
    assert again == refreshed == {"x": 1}
    assert sorted(calls) == [0, 1, 1, 2]  # once per input, plus the explicit refresh


def test_threads_single_flight_and_shared_exceptions(cache_url):
    cache = larder.Cache(cache_url)
    calls = []

    @larder.memoize(namespace="t.flight", ttl=60, cache=cache)
    def slow(x):
        calls.append(x)
        time.sleep(0.2)  # the GIL is released while the others wait
        return x * 10

    barrier = threading.Barrier(50)
    out = []

    def worker(i):
        barrier.wait()
        out.append(slow(i % 5))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(out) == sorted((i % 5) * 10 for i in range(50))
    assert sorted(calls) == [0, 1, 2, 3, 4]

    attempts = []

    @larder.memoize(namespace="t.raises", ttl=60, cache=cache)
    def boom(x):
        attempts.append(x)
        time.sleep(0.1)
        raise ValueError(f"bad {x}")

    errors = []

    def caller():
        try:
            boom(1)
        except ValueError as e:
            errors.append(str(e))

    ts = [threading.Thread(target=caller) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == ["bad 1"] * 10
    assert len(attempts) < 10  # waiters shared the leader's exception
    with pytest.raises(ValueError):
        boom(1)  # not cached: computed again
    # Every computation that raised is counted, as in Rust's CacheStats (all of whose
    # counters the dict carries).
    s = cache.stats()
    assert s["compute_errors"] == len(attempts)
    assert set(s) >= {
        "compute_errors",
        "refreshes_started",
        "refreshes_finished",
        "stale_served",
        "stale_served_by_timeout",
        "hard_timeouts",
        "tag_stale",
    }


def test_values_round_trip_and_unsupported_values():
    cache = larder.Cache("local")
    values = [
        None,
        True,
        0,
        -5,
        2**64 - 1,
        -(2**64),
        1.5,
        "한글",
        b"\x00\xff",
        [1, [2]],
        {"a": {"b": None}},
        {1: "int key"},
        {(1, 2): "tuple key"},
    ]

    @larder.memoize(namespace="t.values", cache=cache)
    def ident(i):
        return values[i]

    for i, v in enumerate(values):
        assert ident(i) == v
        assert ident(i) == v

    @larder.memoize(namespace="t.badvalue", cache=cache)
    def bad(x):
        return object()

    with pytest.raises(TypeError, match="pickle=True"):
        bad(1)

    @larder.memoize(namespace="t.bigint", cache=cache)
    def big(x):
        return 2**70

    with pytest.raises(larder.CacheError, match="as a str"):
        big(1)


def test_pickle_needs_a_secret_and_works_with_one(tmp_path, monkeypatch):
    monkeypatch.delenv("LARDER_KEY_SECRET", raising=False)
    url = f"sqlite:{tmp_path / 'p.db'}"

    @larder.memoize(namespace="t.pickle", cache=larder.Cache(url), pickle=True)
    def f(x):
        return x

    with pytest.raises(larder.CacheError, match="secret"):
        f(1)

    with_secret = larder.Cache(url, secret=SECRET)

    @larder.memoize(namespace="t.pickle", cache=with_secret, pickle=True)
    def g(x):
        return {"when": dataclasses.make_dataclass("P", [])} if False else complex(x, 1)

    assert g(2) == complex(2, 1)
    # Another reader of the same entry without pickle=True never unpickles: it computes.
    computed = []

    @larder.memoize(namespace="t.pickle", cache=larder.Cache(url, secret=SECRET))
    def h(x):
        computed.append(x)
        return "computed"

    assert h(2) == "computed" and computed == [2]


def test_forged_and_foreign_entries_are_misses(tmp_path):
    import sqlite3

    path = tmp_path / "forge.db"
    url = f"sqlite:{path}"
    writer = larder.Cache(url, secret=SECRET)

    @larder.memoize(namespace="t.forge", cache=writer)
    def f(x):
        return "genuine"

    assert f(1) == "genuine"
    key = f.key(1)
    db = sqlite3.connect(path)
    (table,) = [
        r[0]
        for r in db.execute("select name from sqlite_master where type='table'")
        if "entr" in r[0]
    ]
    cols = [r[1] for r in db.execute(f"pragma table_info({table})")]
    value_col = next(c for c in cols if c in ("value", "frame", "data"))
    (frame,) = db.execute(f"select {value_col} from {table} where key=?", (key,)).fetchone()
    forged = bytearray(frame)
    forged[-1] ^= 1  # a bad MAC
    db.execute(f"update {table} set {value_col}=? where key=?", (bytes(forged), key))
    db.commit()
    db.close()
    reader = larder.Cache(url, secret=SECRET)

    @larder.memoize(namespace="t.forge", cache=reader)
    def g(x):
        return "recomputed"

    assert g(1) == "recomputed"
    assert reader.stats()["corrupt_entries"] == 1


def test_fail_open_when_the_shared_tier_is_down():
    cache = larder.Cache(f"redis://127.0.0.1:9?secret={LARDER_MAC_SECRET}", op_timeout=0.2)
    n = []

    @larder.memoize(namespace="t.down", cache=cache)
    def f(x):
        n.append(x)
        return x + 1

    assert f(1) == 2
    assert f(1) == 2
    assert cache.stats()["store_errors"] + cache.stats()["breaker_skips"] >= 1


def test_bad_configuration_and_arguments():
    with pytest.raises(larder.CacheError, match="does not name a tier"):
        larder.Cache("memcached://x")
    with pytest.raises(TypeError, match="url must be a str"):
        larder.Cache(42)
    with pytest.raises(larder.KeyEncodingError):
        larder.Cache("local", secret="abc")
    with pytest.raises(larder.KeyEncodingError, match="namespace"):
        larder.memoize(namespace="Bad Name")(lambda: 1)
    with pytest.raises(ValueError, match="ttl"):
        larder.memoize(ttl=0)
    with pytest.raises(TypeError, match="version"):
        larder.memoize(version="1")
    with pytest.raises(TypeError, match="larder.Cache"):
        larder.memoize(cache="local")

    @larder.memoize(namespace="t.args", cache=larder.Cache("local"))
    def f(x):
        return 1

    with pytest.raises(TypeError, match="cannot make a cache key"):
        f(object())
    with pytest.raises(larder.KeyEncodingError, match="NaN"):
        f(float("nan"))
    with pytest.raises(TypeError):
        f(1, 2)  # the signature's own error
