"""A mixed fleet: the Django example (gunicorn, @larder.memoize) and a Rust service
(examples/rust-quote) share one Redis. A quote computed by either is a hit for the other
(same key text, same frame, CBOR), and an invalidation from either reaches the other's local
tier (Redis pub/sub backplane).

Builds examples/rust-quote with cargo (into the workspace's target directory) and fails with
what to install when cargo, redis-server or the Python packages are missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "django-loan"))
scenario = importlib.import_module("scenario")
formula = importlib.import_module("loan_site.formula")

INPUTS = [scenario.Load().input(i) for i in range(10)]


def _build_rust_quote() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is needed to build examples/rust-quote (install Rust with rustup)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    manifest = ROOT / "examples" / "rust-quote" / "Cargo.toml"
    r = subprocess.run(
        [cargo, "build", "--quiet", "--manifest-path", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, f"cargo build of examples/rust-quote failed:\n{r.stderr[-4000:]}"
    return target / "debug" / "rust-quote"


class RustQuote:
    """The Rust service, driven over stdin/stdout one JSON line per command."""

    def __init__(self, binary: Path, larder_cache: str):
        env = dict(os.environ, LARDER_CACHE=larder_cache)
        env.pop("LARDER_KEY_SECRET", None)
        self.proc = subprocess.Popen(
            [str(binary)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, cmd: str, args: tuple[int, int, int, int]) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{cmd} {' '.join(map(str, args))}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "rust-quote exited"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    try:
        import larder  # noqa: F401
    except ImportError as e:
        pytest.fail(f"larder is not importable ({e}): bash scripts/test.sh builds it")
    for mod in ("django", "gunicorn", "redis"):
        if importlib.util.find_spec(mod) is None:
            pytest.fail(f"{mod} is missing: pip install -r tests/python/requirements-django.txt")
    binary = _build_rust_quote()
    work = tmp_path_factory.mktemp("mixed-fleet")
    with scenario.Scenario(work, log=lambda _: None) as sc:
        env = scenario.child_env("larder", sc.cache, sc.counter, scenario.Load())
        # One worker: its local tier is the one an invalidation from Rust must reach.
        django_app = scenario.Instance(work, "django", env, preload=False, workers=1)
        rust = RustQuote(binary, f"local:1000,{sc.cache.larder_url}")
        try:
            django_app.wait_ready()
            yield sc, django_app, rust
        finally:
            rust.close()
            django_app.stop()


def _django_quote(app, args) -> dict:
    query = urlencode(dict(zip(("user_id", "amount", "rate", "term"), args)))
    status, body = scenario.http_get(app.port, f"/quote?{query}")
    assert status == 200, body
    return json.loads(body)["quote"]


def _django_computations(sc) -> int:
    return int(sc.counter.client().get(scenario.COUNTER_KEY) or 0)


def test_rust_values_are_hits_in_django_and_back(fleet):
    sc, app, rust = fleet
    rust_side, django_side = INPUTS[:5], INPUTS[5:]
    for args in rust_side:
        r = rust("quote", args)
        assert r["computed"] is True and r["quote"] == formula.quote(*args)
    before = _django_computations(sc)
    for args in rust_side:
        assert _django_quote(app, args) == formula.quote(*args)
    assert _django_computations(sc) == before, "Django recomputed quotes Rust had stored"
    for args in django_side:
        assert _django_quote(app, args) == formula.quote(*args)
    assert _django_computations(sc) == before + len(django_side)
    for args in django_side:
        r = rust("quote", args)
        assert r["computed"] is False, f"Rust recomputed {args}, which Django had stored"
        assert r["quote"] == formula.quote(*args)


def test_invalidations_reach_the_other_sides_local_tier(fleet):
    import larder

    sc, app, rust = fleet
    args = INPUTS[0]
    # Rust -> Django: the Django worker holds INPUTS[0] in its local tier (it served it
    # above); after Rust invalidates it, the worker must compute it again.
    assert _django_quote(app, args) == formula.quote(*args)
    before = _django_computations(sc)
    assert rust("invalidate", args) == {"ok": True}
    time.sleep(0.5)  # pub/sub delivery
    assert _django_quote(app, args) == formula.quote(*args)
    assert _django_computations(sc) == before + 1, "Django served a value Rust had invalidated"

    # Django -> Rust: Rust holds INPUTS[1] in its local tier; a Python process invalidates it.
    args = INPUTS[1]
    assert rust("get", args)["quote"] == formula.quote(*args)

    @larder.memoize(
        namespace="loan_calc",
        version=1,
        ttl=600,
        cache=larder.Cache(f"local:100,{sc.cache.larder_url}", secret=None),
    )
    def loan_quote(user_id, amount, rate, term):
        raise AssertionError("not called")

    assert loan_quote.key(*args) == larder.KeySpace("loan_calc", 1).key(args)
    loan_quote.invalidate(*args)
    deadline = time.monotonic() + 5
    while rust("get", args)["quote"] is not None:
        assert time.monotonic() < deadline, "Rust's local tier kept a value Python invalidated"
        time.sleep(0.05)
