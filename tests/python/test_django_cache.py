"""larder.django.LarderCache: Django's cache API on larder, on a real redis-server and SQLite.

Django's own cache tests run against it in test_django_cache_suite.py; these tests cover what
they do not: single-flight get_or_set across real processes (against Django's RedisCache as
the baseline), the safe codec and the pickle opt-in, forged entries, fail-open with Redis down,
clear() across namespaces, and the SQLite location.
"""

from __future__ import annotations

import importlib
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "examples" / "django-loan"))
scenario = importlib.import_module("scenario")

try:
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
except ImportError as e:  # pragma: no cover - reported as a failure below
    _IMPORT_ERROR: ImportError | None = e
else:
    _IMPORT_ERROR = None

SECRET = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def lc():
    """larder.django, with Django settings configured for this process."""
    if _IMPORT_ERROR is not None:
        pytest.fail(
            f"{_IMPORT_ERROR}: pip install -r tests/python/requirements-django.txt (into .venv)"
        )
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    try:
        return importlib.import_module("larder.django")
    except ImportError as e:
        pytest.fail(f"larder.django is not importable ({e}): build it with bash scripts/test.sh")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = scenario.RedisServer(tmp_path_factory.mktemp("redis"), "django-cache")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make(lc, redis_server):
    made = []

    def _make(location=None, **params):
        c = lc.LarderCache(location or redis_server.larder_url, params)
        made.append(c)
        return c

    yield _make
    for c in made:
        try:
            c.clear()
        except NotImplementedError:
            pass


def test_api_semantics(make):
    c = make(TIMEOUT=60)
    assert c.get("missing") is None
    assert c.get("missing", "dflt") == "dflt"
    c.set("k", {"a": [1, 2.5, "x", None, True, b"\x00"]})
    assert c.get("k") == {"a": [1, 2.5, "x", None, True, b"\x00"]}
    c.set("none", None)
    assert c.get("none", "dflt") is None and c.has_key("none") and "none" in c
    assert c.add("k", "other") is False and c.add("fresh", 1) is True and c.get("fresh") == 1
    assert c.incr("fresh", 41) == 42 and c.decr("fresh", 2) == 40 and c.get("fresh") == 40
    with pytest.raises(ValueError):
        c.incr("absent")
    with pytest.raises(TypeError):
        c.incr("k")
    assert c.delete("fresh") is True and c.delete("fresh") is False and not c.has_key("fresh")
    c.set_many({"m1": 1, "m2": 2})
    assert c.get_many(["m1", "m2", "m3"]) == {"m1": 1, "m2": 2}
    c.delete_many(["m1", "m2"])
    assert c.get_many(["m1", "m2"]) == {}
    assert c.touch("k", 30) is True and c.touch("absent") is False


def test_key_text_is_the_keyspace_key_of_the_django_key(make):
    import larder

    c = make(KEY_PREFIX="shop", OPTIONS={"NAMESPACE": "django_shop"})
    assert c.make_key("k", version=3) == "shop:3:k"
    assert c.larder_key("k", version=3) == larder.KeySpace("django_shop", 1).key("shop:3:k")
    keyed = make(OPTIONS={"SECRET": SECRET})
    assert keyed.larder_key("k") != c.larder_key("k")


def test_versions_prefixes_and_key_functions_separate_entries(make):
    a = make()
    b = make(KEY_PREFIX="other")
    v2 = make(VERSION=2)
    custom = make(KEY_FUNCTION=lambda key, prefix, version: f"custom-{key}")
    a.set("k", "a")
    assert b.get("k") is None and v2.get("k") is None and custom.get("k") is None
    assert v2.get("k", version=1) == "a"
    a.set("k", "a2", version=2)
    assert v2.get("k") == "a2"
    assert a.incr_version("k") == 2 and a.get("k") is None and a.get("k", version=2) == "a"


def test_timeouts(make):
    c = make(TIMEOUT=1)
    c.set("default", 1)  # TIMEOUT=1
    c.set("forever", 2, None)
    c.set("zero", 3, 0)
    c.set("negative", 4, -5)
    assert c.get("zero") is None and c.get("negative") is None
    assert c.add("zero", 5, 0) is True and c.get("zero") is None
    c.set("gone", 6, 30)
    c.set("gone", 7, 0)  # timeout 0 deletes what was there
    assert c.get("gone") is None
    assert c.get("default") == 1
    time.sleep(1.6)
    assert c.get("default") is None
    assert c.get("forever") == 2


def test_safe_codec_by_default(lc, make):
    c = make()

    class Obj:
        pass

    with pytest.raises(TypeError, match="PICKLE=True"):
        c.set("obj", Obj())
    assert c.get("obj") is None
    c.set("tuple", (1, 2))
    assert c.get("tuple") == [1, 2]  # CBOR has arrays, not tuples


def test_pickle_needs_a_secret(lc, redis_server, monkeypatch):
    monkeypatch.delenv("LARDER_KEY_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="secret"):
        lc.LarderCache(redis_server.url, {"OPTIONS": {"PICKLE": True}})
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS"):
        lc.LarderCache(redis_server.larder_url, {"OPTIONS": {"PIKLE": True}})
    with pytest.raises(ImproperlyConfigured):
        lc.LarderCache("", {})
    with pytest.raises(ImproperlyConfigured, match="NAMESPACE"):
        lc.LarderCache(redis_server.larder_url, {"OPTIONS": {"NAMESPACE": "bad namespace:{"}})


def test_pickle_with_secret_and_forged_entries(make, redis_server):
    from django.http import HttpResponse

    c = make(OPTIONS={"PICKLE": True, "SECRET": SECRET})
    r = HttpResponse("cached page", headers={"X-A": "1"})
    c.set("page", r)
    back = c.get("page")
    assert back.content == b"cached page" and back["X-A"] == "1"
    # Another deployment secret: the same key text is a different digest and a different MAC,
    # so nothing written under the first secret is ever unpickled.
    other = make(OPTIONS={"PICKLE": True, "SECRET": "ff" * 16})
    assert other.get("page") is None
    # A pickle written straight into Redis under every name the namespace uses is a miss.
    cli = redis_server.client()
    forged = pickle.dumps(HttpResponse("forged"))
    for name in cli.scan_iter(match="larder:{#django:v*"):
        if not name.endswith(b":lease"):
            cli.set(name, forged)
    assert c.get("page") is None


def test_clear_drops_only_its_namespace(make):
    a = make()
    b = make(OPTIONS={"NAMESPACE": "django_b"})
    a.set("k", 1)
    a.set("k", 2, version=7)
    b.set("k", 3)
    a.clear()
    assert a.get("k") is None and a.get("k", version=7) is None
    assert b.get("k") == 3


def test_clear_reaches_other_processes_local_tiers(make, redis_server, tmp_path):
    # Another process with a local tier reads the entry, this process clears, and the other
    # process must miss afterwards (Redis invalidation backplane).
    loc = f"local:1000,{redis_server.larder_url}"
    c = make(loc)
    c.set("shared", "v1")
    script = (
        "import sys, time, django; from django.conf import settings\n"
        "settings.configure(CACHES={}); django.setup()\n"
        "from larder.django import LarderCache\n"
        f"c = LarderCache({loc!r}, {{}})\n"
        "print(c.get('shared'), flush=True)\n"
        "sys.stdin.readline(); time.sleep(0.5)\n"
        "print(c.get('shared'), flush=True)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "v1"
        c.clear()
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "None"
    finally:
        p.kill()
        p.wait()


def test_fail_open_when_redis_is_down(lc):
    url = f"redis://127.0.0.1:{scenario.free_port()}/0?secret={scenario.LARDER_MAC_SECRET}"
    c = lc.LarderCache(url, {"OPTIONS": {"op_timeout": 0.2}})
    c.set("k", 1)  # no exception
    assert c.get("k") is None
    assert c.get_or_set("k", lambda: 42) == 42
    assert c.add("k2", 1) in (True, False)


def test_sqlite_location(make, tmp_path):
    path = tmp_path / "django.db"
    c = make(f"sqlite:{path}")
    c.set("k", {"v": 1})
    assert c.get("k") == {"v": 1}
    assert make(f"sqlite:{path}").get("k") == {"v": 1}
    c.clear()
    assert c.get("k") is None


def _stampede(backend: str, location: str, redis_server, processes=4, threads=8):
    counter = redis_server.client()
    counter.delete("computations")
    key = f"stampede-{backend}-{time.time_ns()}"
    start_at = time.time() + 2.0
    worker = str(HERE / "django_worker.py")
    args = [worker, backend, location, redis_server.url, key, str(threads), str(start_at)]
    procs = [
        subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    values = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        values += json.loads(out)
    return int(counter.get("computations") or 0), values


def test_get_or_set_is_single_flight_across_processes(lc, redis_server):
    n, values = _stampede("larder", redis_server.larder_url, redis_server)
    assert len(values) == 32
    assert all(v == {"answer": 42, "by": "one computation"} for v in values)
    assert n == 1, f"{n} computations for one key from 4 processes x 8 threads"


def test_django_redis_get_or_set_is_not(lc, redis_server):
    # The baseline the issue measures: Django's own backend computes in every thread that
    # misses at the same time.
    n, values = _stampede("django", redis_server.url, redis_server)
    assert len(values) == 32
    assert n > 1


FORK_SCRIPT = """
import json, os, sys, time
import django
from django.conf import settings
settings.configure(CACHES={"default": {
    "BACKEND": "larder.django.LarderCache", "LOCATION": sys.argv[1]}})
django.setup()
import redis
from django.core.cache import cache

cache.set("warm", "from the parent")  # builds the cache and connects before the fork
assert cache.get("warm") == "from the parent"
key, start_at = sys.argv[2], time.time() + 1.0
pipes = []
for _ in range(4):
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        counter = redis.Redis.from_url(sys.argv[3])

        def compute():
            counter.incr("fork-computations")
            time.sleep(0.3)
            return "computed once"

        time.sleep(max(0.0, start_at - time.time()))
        got = [cache.get("warm"), cache.get_or_set(key, compute, 60)]
        os.write(w, json.dumps(got).encode())
        os._exit(0)
    os.close(w)
    pipes.append(r)
results = []
for r in pipes:
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    results.append(json.loads(data) if data else None)
for _ in pipes:
    os.wait()
print(json.dumps(results))
"""


def test_works_in_children_forked_after_use(lc, redis_server):
    # gunicorn --preload with an app that touches the cache at import time (warming, checks):
    # the workers are forked from a process whose LarderCache is built and connected. Run in
    # its own session with a hard timeout: the bug above hangs or crashes processes.
    import os
    import signal

    redis_server.client().delete("fork-computations")
    key = f"forked-{time.time_ns()}"
    location = f"local:100,{redis_server.larder_url}"
    p = subprocess.Popen(
        [sys.executable, "-c", FORK_SCRIPT, location, key, redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError("the forked processes hung") from None
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # children left behind by a crashed parent
        except ProcessLookupError:
            pass
    assert p.returncode == 0, f"exit {p.returncode}: {err[-2000:]}"
    assert json.loads(out) == [["from the parent", "computed once"]] * 4
    assert int(redis_server.client().get("fork-computations")) == 1
