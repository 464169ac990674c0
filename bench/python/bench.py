"""Python benchmarks of larder against what a Python team uses today, side by side in one run
(docs/benchmarks.md, "Python"). Run by scripts/bench-python.sh on a release build:

    bash scripts/bench-python.sh            # all groups
    bash scripts/bench-python.sh keys memo  # some groups: keys memo sqlite redis envelope

Each figure is the median of ROUNDS rounds of a timed loop (time.perf_counter_ns around N
calls), in nanoseconds per call; ratios are computed from medians of the same run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Callable

import larder

ROUNDS = int(os.environ.get("ROUNDS", "7"))
RESULTS: list[dict] = []


def per_call_ns(f: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(n):
            f()
        samples.append((time.perf_counter_ns() - t) / n)
    return statistics.median(samples)


def report(group: str, rows: list[tuple[str, float]], base: str) -> None:
    base_ns = dict(rows)[base]
    print(f"\n## {group}")
    print(f"| what | ns/call | vs {base} |")
    print("|---|---:|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:,.0f} | {ns / base_ns:.2f}x |")
        RESULTS.append({"group": group, "what": name, "ns": round(ns, 1), "ratio": ns / base_ns})


@larder.stable(name="LoanQuote", version=1)
@dataclasses.dataclass(frozen=True)
class LoanQuote:
    user_id: int
    amount_won: int
    rate_bp: Annotated[int, larder.u32]
    term_months: Annotated[int, larder.u32]


Q = LoanQuote(7, 5_000_000, 450, 36)


def bench_keys() -> None:
    ks = larder.KeySpace("loan_calc", 1)
    args = (7, 5_000_000, 450, 36)
    n = 100_000
    rows = [
        ("larder KeySpace.key(LoanQuote)", per_call_ns(lambda: ks.key(Q), n)),
        ("larder KeySpace.key(tuple of 4 ints)", per_call_ns(lambda: ks.key(args), n)),
        (
            "hashlib.sha1(repr(args)).hexdigest()",
            per_call_ns(lambda: hashlib.sha1(repr(Q).encode()).hexdigest(), n),
        ),
        ("hash(args) (per-process, the seed's bug)", per_call_ns(lambda: hash(Q), n)),
    ]
    report("key for a 4-field dataclass", rows, "larder KeySpace.key(LoanQuote)")


def bench_memo() -> None:
    import cachetools

    def compute(q):
        return q.amount_won * q.rate_bp // 10000

    larder_fn = larder.memoize(namespace="bench.memo", cache=larder.Cache("local:10000"))(compute)
    lru_fn = functools.lru_cache(maxsize=10000)(compute)
    ttl_fn = cachetools.cached(cachetools.TTLCache(maxsize=10000, ttl=600))(compute)
    by_sha1: dict[str, int] = {}

    def sha1_fn(q):  # what a user writes to fix hash(): sha1(repr(args)) into a dict
        k = hashlib.sha1(repr(q).encode()).hexdigest()
        v = by_sha1.get(k)
        if v is None:
            v = by_sha1[k] = compute(q)
        return v

    for f in (larder_fn, lru_fn, ttl_fn, sha1_fn):
        f(Q)
    n = 100_000
    rows = [
        ("larder @memoize local hit", per_call_ns(lambda: larder_fn(Q), n)),
        ("functools.lru_cache hit (hash(), per process)", per_call_ns(lambda: lru_fn(Q), n)),
        ("cachetools TTLCache hit (hash(), per process)", per_call_ns(lambda: ttl_fn(Q), n)),
        ("dict keyed by sha1(repr(args)) hit", per_call_ns(lambda: sha1_fn(Q), n)),
    ]
    report("memoized local hit", rows, "larder @memoize local hit")


def bench_sqlite() -> None:
    import diskcache

    d = Path(tempfile.mkdtemp(prefix="larder-bench-"))
    try:

        def compute(q):
            return {"monthly_won": q.amount_won * q.rate_bp // 10000, "currency": "KRW"}

        larder_fn = larder.memoize(
            namespace="bench.sqlite", cache=larder.Cache(f"sqlite:{d / 'larder.db'}")
        )(compute)
        dc = diskcache.Cache(str(d / "diskcache"))
        dc_fn = dc.memoize()(compute)
        key = "loan_calc:v1:t7dwkt76eywwroughfmdhxoja6v7vhp6"
        dc.set(key, compute(Q))
        larder_fn(Q)
        dc_fn(Q)
        n = 5_000
        rows = [
            ("larder @memoize SQLite hit (no local tier)", per_call_ns(lambda: larder_fn(Q), n)),
            ("diskcache memoize hit", per_call_ns(lambda: dc_fn(Q), n)),
            ("diskcache Cache.get hit", per_call_ns(lambda: dc.get(key), n)),
        ]
        report("SQLite-tier hit", rows, "larder @memoize SQLite hit (no local tier)")
        dc.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_redis() -> None:
    import redis as redis_py

    server = shutil.which("redis-server")
    assert server, "redis-server is needed (apt-get install redis-server)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="larder-bench-redis-")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            d,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = redis_py.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis_py.ConnectionError:
                time.sleep(0.05)

        def compute(q):
            return {"monthly_won": q.amount_won * q.rate_bp // 10000, "currency": "KRW"}

        larder_fn = larder.memoize(
            namespace="bench.redis", cache=larder.Cache(f"redis://127.0.0.1:{port}")
        )(compute)
        larder_fn(Q)
        raw = larder.cbor_dumps(compute(Q))
        r.set("bare", raw + bytes(60))  # about the size of larder's framed entry
        n = 5_000
        rows = [
            ("larder @memoize Redis hit (no local tier)", per_call_ns(lambda: larder_fn(Q), n)),
            ("bare redis-py GET", per_call_ns(lambda: r.get("bare"), n)),
        ]
        report("Redis-tier hit", rows, "bare redis-py GET")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def bench_envelope() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
    import esdk_peer  # the project's Python SDK harness: raw AES provider + caching CMM

    d = Path(tempfile.mkdtemp(prefix="larder-bench-env-"))
    try:
        larder.LocalKeyring.init(d / "keyring")
        env = larder.Envelope(larder.LocalKeyring(d / "keyring"))
        ctx = esdk_peer.CONTEXT
        phone = esdk_peer.PHONE
        ct = env.encrypt(phone, ctx)
        sdk = esdk_peer.client()
        cmm = esdk_peer.make_cmm(esdk_peer.BenchRawProvider)

        def sdk_enc():
            return sdk.encrypt(
                source=phone,
                materials_manager=cmm,
                encryption_context=ctx,
                algorithm=esdk_peer.SUITE,
            )[0]

        sdk_ct = sdk_enc()
        rows = [
            (
                "larder Envelope.encrypt (phone number)",
                per_call_ns(lambda: env.encrypt(phone, ctx), 20_000),
            ),
            ("larder Envelope.decrypt", per_call_ns(lambda: env.decrypt(ct, ctx), 20_000)),
            ("AWS Encryption SDK 4.x encrypt (caching CMM)", per_call_ns(sdk_enc, 500)),
            (
                "AWS Encryption SDK 4.x decrypt (caching CMM)",
                per_call_ns(lambda: sdk.decrypt(source=sdk_ct, materials_manager=cmm), 500),
            ),
        ]
        report("envelope, warm", rows, "larder Envelope.encrypt (phone number)")
        print(f"(ciphertext bytes: larder {len(ct)}, SDK {len(sdk_ct)})")
    finally:
        shutil.rmtree(d, ignore_errors=True)


GROUPS = {
    "keys": bench_keys,
    "memo": bench_memo,
    "sqlite": bench_sqlite,
    "redis": bench_redis,
    "envelope": bench_envelope,
}


def main() -> None:
    wanted = sys.argv[1:] or list(GROUPS)
    print(
        f"larder {larder.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, {ROUNDS} rounds"
    )
    for g in wanted:
        GROUPS[g]()
    out = os.environ.get("BENCH_JSON")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
