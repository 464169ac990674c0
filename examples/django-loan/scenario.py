"""Story A on the stack it happened on: Django under gunicorn, a shared Redis, bursts of
identical requests spread over two "hosts", a deploy in the middle, and Redis killed mid-load.

Run it (after `pip install django gunicorn redis` and building larder into the venv):

    python examples/django-loan/scenario.py            # every mode, prints the table
    python examples/django-loan/scenario.py --modes seed,larder

What one run does, per memo mode (LOAN_MEMO, see loan_site/settings.py):

* a fresh redis-server on a free loopback port for the cache (`--save "" --appendonly no`) and
  another one for the computation counter, so the count survives the cache server's death;
* two gunicorn instances ("hosts" A and B), 2 sync workers each, on free loopback ports;
* 1,000 requests over 50 inputs, in bursts of 20 consecutive requests for one input, sent by
  32 client threads, request i going to instance i % 2 (a round-robin load balancer);
* at request 500, a deploy of B: a new gunicorn process (a new interpreter, so a new
  PYTHONHASHSEED) takes B's place, and the old one is stopped once its in-flight requests
  have drained, as a load balancer would do it: no request is lost;
* after the load, both instances are redeployed and every input is requested once on each:
  the computations counted then are what a deploy costs the cache.

With `kill_redis`, the cache's redis-server is SIGKILLed at request 300 and restarted (empty)
on the same port a second later, instead of the deploy.

Every answer is checked against the formula (loan_site/formula.py): a wrong answer is counted,
as is every request that does not return 200.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

EXAMPLE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLE_DIR))
formula = importlib.import_module("loan_site.formula")

COUNTER_KEY = "loan:computations"
ALL_MODES = ("none", "seed", "sha1", "larder", "larder_cache")
MODE_LABELS = {
    "none": "no cache",
    "seed": "seed: hash() keys, get_or_set",
    "sha1": "seed's fix: sha1 keys, get_or_set",
    "larder": "@larder.memoize",
    "larder_cache": "sha1 keys, get_or_set on LarderCache",
}


# The value-MAC secret of every larder cache the tests open on Redis (larder refuses a Redis
# tier without one: anyone who can write to the server could otherwise forge entries). It rides
# in the tier URL (`?secret=HEX`, docs/cache.md), so key texts stay those of the default key.
LARDER_MAC_SECRET = b"larder test mac secret, 32 bytes".hex()


@dataclasses.dataclass(frozen=True)
class Load:
    """The request pattern of one run."""

    requests: int = 1000
    inputs: int = 50
    burst: int = 20
    threads: int = 32
    compute_ms: int = 100

    def input(self, i: int) -> tuple[int, int, int, int]:
        # user_id, amount (won), rate (basis points), term (months): all distinct per i.
        return (1000 + i, 1_000_000 * (i + 1), 300 + 7 * i, 12 * (1 + i % 5))

    def sequence(self) -> list[tuple[int, int, int, int]]:
        seq: list[tuple[int, int, int, int]] = []
        i = 0
        while len(seq) < self.requests:
            seq.extend([self.input(i % self.inputs)] * self.burst)
            i += 1
        return seq[: self.requests]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server of our own on a free loopback port, nothing persisted."""

    def __init__(self, workdir: Path, name: str):
        self.port = free_port()
        self.workdir = workdir
        self.name = name
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def larder_url(self) -> str:
        """The URL larder caches use: the same server, with the value-MAC secret."""
        return f"{self.url}?secret={LARDER_MAC_SECRET}"

    def start(self) -> None:
        log_path = self.workdir / f"redis-{self.name}.log"
        try:
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.workdir)],
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeError("redis-server not found: apt-get install redis-server") from None
        deadline = time.monotonic() + 10
        while not _redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start; see {log_path}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)


class Instance:
    """One gunicorn "host": 2 sync workers of the example, on its own port."""

    seq = 0

    def __init__(
        self, workdir: Path, name: str, env: dict[str, str], preload: bool, workers: int = 2
    ):
        Instance.seq += 1
        self.name = f"{name}{Instance.seq}"
        self.port = free_port()
        self.log_path = workdir / f"gunicorn-{self.name}.log"
        cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLE_DIR)]
        cmd += ["--workers", str(workers), "--bind", f"127.0.0.1:{self.port}"]
        cmd += ["--timeout", "60", "--graceful-timeout", "30", "--log-level", "warning"]
        if preload:
            cmd.append("--preload")
        cmd.append("loan_site.wsgi:application")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.inflight = 0

    def wait_ready(self, timeout: float = 30) -> Instance:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn {self.name} exited:\n{self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/health", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn {self.name} not ready after {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # gunicorn: graceful shutdown, in-flight requests finish
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http_get(port: int, path: str, timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Router:
    """A round-robin load balancer over slots, with connection draining on replacement."""

    def __init__(self, instances: list[Instance]):
        self.slots = list(instances)
        self.cond = threading.Condition()

    def acquire(self, i: int) -> Instance:
        with self.cond:
            inst = self.slots[i % len(self.slots)]
            inst.inflight += 1
            return inst

    def release(self, inst: Instance) -> None:
        with self.cond:
            inst.inflight -= 1
            self.cond.notify_all()

    def replace(self, slot: int, new: Instance, drain_timeout: float = 60) -> Instance:
        with self.cond:
            old = self.slots[slot]
            self.slots[slot] = new
            if not self.cond.wait_for(lambda: old.inflight == 0, drain_timeout):
                raise RuntimeError(
                    f"{old.name} still has {old.inflight} requests after {drain_timeout}s"
                )
        return old


@dataclasses.dataclass
class LoadResult:
    latencies: list[float]
    failed: int
    wrong: int
    wall_s: float
    errors: list[str]

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))]


def run_load(
    router: Router,
    seq: list[tuple[int, int, int, int]],
    threads: int,
    events: dict[int, callable] | None = None,
) -> LoadResult:
    """Sends seq[i] to slot i % 2 from `threads` threads; events[i] starts in its own thread
    when request i is taken. Returns once every request and every event has finished."""
    events = dict(events or {})
    lock = threading.Lock()
    next_i = [0]
    latencies: list[float] = []
    failed = [0]
    wrong = [0]
    errors: list[str] = []
    n_events = len(events)
    event_threads: list[threading.Thread] = []
    events_done: list[int] = []

    def run_event(fn):
        fn()  # an exception is printed by the thread and caught by the count below
        events_done.append(1)

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= len(seq):
                    return
                next_i[0] += 1
                ev = events.pop(i, None)
                if ev is not None:
                    t = threading.Thread(target=run_event, args=(ev,), daemon=True)
                    event_threads.append(t)
                    t.start()
            args = seq[i]
            query = urlencode(dict(zip(("user_id", "amount", "rate", "term"), args)))
            inst = router.acquire(i)
            t0 = time.perf_counter()
            ok, bad, err = False, False, ""
            try:
                status, body = http_get(inst.port, f"/quote?{query}")
                if status == 200:
                    ok = True
                    bad = json.loads(body)["quote"] != formula.quote(*args)
                    if bad:
                        err = f"wrong answer for {args}: {body[:200]!r}"
                else:
                    err = f"HTTP {status} from {inst.name}: {body[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:  # counted
                err = f"{type(e).__name__} from {inst.name}: {e}"
            finally:
                router.release(inst)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if not ok:
                    failed[0] += 1
                if bad:
                    wrong[0] += 1
                if err and len(errors) < 10:
                    errors.append(err)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    for t in event_threads:
        t.join()
    if len(events_done) != n_events:
        raise RuntimeError(
            f"{n_events - len(events_done)} scenario event(s) failed (see the traceback above)"
        )
    return LoadResult(latencies, failed[0], wrong[0], wall, errors)


@dataclasses.dataclass
class Row:
    mode: str
    preload: bool
    kill_redis: bool
    computations: int
    after_redeploy: int | None
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int
    wrong: int
    errors: list[str]

    @property
    def label(self) -> str:
        label = MODE_LABELS[self.mode]
        if self.preload:
            label += " (--preload)"
        if self.kill_redis:
            label += " (Redis SIGKILL)"
        return label


def child_env(mode: str, cache: RedisServer, counter: RedisServer, load: Load) -> dict[str, str]:
    env = dict(os.environ)
    # A fixed PYTHONHASHSEED would hide the seed's bug (every interpreter would agree on hash()).
    env.pop("PYTHONHASHSEED", None)
    env.update(
        DJANGO_SETTINGS_MODULE="loan_site.settings",
        LOAN_MEMO=mode,
        LOAN_REDIS_URL=cache.url,
        LOAN_COUNTER_URL=counter.url,
        LOAN_LARDER_LOCATION=f"local:10000,{cache.larder_url}",
        LARDER_CACHE=f"local:10000,{cache.larder_url}",
        LOAN_COMPUTE_MS=str(load.compute_ms),
    )
    return env


class Scenario:
    """Owns the two redis-servers and runs one mode after another against them."""

    def __init__(self, workdir: Path, load: Load = Load(), log=print):
        self.workdir = workdir
        self.load = load
        self.log = log
        self.cache = RedisServer(workdir, "cache")
        self.counter = RedisServer(workdir, "counter")

    def __enter__(self):
        self.cache.start()
        self.counter.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cache.stop()
        self.counter.stop()

    def _count(self) -> int:
        return int(self.counter.client().get(COUNTER_KEY) or 0)

    def run(self, mode: str, preload: bool = False, kill_redis: bool = False) -> Row:
        load = self.load
        self.cache.client().flushall()
        self.counter.client().delete(COUNTER_KEY)
        env = child_env(mode, self.cache, self.counter, load)

        def start(name: str) -> Instance:
            return Instance(self.workdir, name, env, preload)

        live: list[Instance] = []
        try:
            a, b = start("a"), start("b")
            live += [a, b]
            a.wait_ready()
            b.wait_ready()
            router = Router([a, b])
            events = {}
            if kill_redis:

                def kill_and_restart():
                    self.cache.kill()
                    time.sleep(1.0)
                    self.cache.start()

                events[load.requests * 3 // 10] = kill_and_restart
            else:

                def deploy_b():
                    new = start("b")
                    live.append(new)
                    new.wait_ready()
                    router.replace(1, new).stop()

                events[load.requests // 2] = deploy_b
            flags = (" --preload" if preload else "") + (" kill-redis" if kill_redis else "")
            self.log(f"  {mode}{flags}: load")
            result = run_load(router, load.sequence(), load.threads, events)
            computations = self._count()

            after = None
            if not kill_redis:
                # A deploy of both hosts, then every input once on each: what a deploy costs.
                for slot in (0, 1):
                    new = start("ab"[slot])
                    live.append(new)
                    new.wait_ready()
                    router.replace(slot, new).stop()
                replay = [load.input(i) for i in range(load.inputs) for _ in (0, 1)]
                r2 = run_load(router, replay, 2)
                after = self._count() - computations
                result.failed += r2.failed
                result.wrong += r2.wrong
                result.errors += r2.errors
            return Row(
                mode=mode,
                preload=preload,
                kill_redis=kill_redis,
                computations=computations,
                after_redeploy=after,
                requests_per_s=len(result.latencies) / result.wall_s,
                p50_ms=result.pct(0.50) * 1000,
                p99_ms=result.pct(0.99) * 1000,
                failed=result.failed,
                wrong=result.wrong,
                errors=result.errors,
            )
        finally:
            for inst in live:
                inst.stop()


def render(rows: list[Row], load: Load) -> str:
    head = ["run", "computations", "after redeploy", "requests/s", "p50", "p99", "failed", "wrong"]
    body = [
        [
            r.label,
            str(r.computations),
            "-" if r.after_redeploy is None else str(r.after_redeploy),
            f"{r.requests_per_s:.0f}",
            f"{r.p50_ms:.1f} ms",
            f"{r.p99_ms:.1f} ms",
            str(r.failed),
            str(r.wrong),
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]

    def line(cells):
        return "  ".join(
            c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths))
        )

    out = [
        (
            f"Story A on Django + gunicorn: {load.requests} requests over {load.inputs} inputs "
            f"({load.compute_ms} ms each), bursts of {load.burst}, {load.threads} client threads, "
            "2 instances x 2 sync workers, instance B redeployed mid-run."
        ),
        line(head),
        line(["-" * w for w in widths]),
    ]
    out += [line(b) for b in body]
    return "\n".join(out)


def default_plan(modes: list[str]) -> list[tuple[str, bool, bool]]:
    plan = [(m, False, False) for m in modes]
    plan += [(m, True, False) for m in modes if m in ("seed", "larder", "larder_cache")]
    plan += [(m, False, True) for m in modes if m in ("sha1", "larder", "larder_cache")]
    return plan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default=",".join(ALL_MODES), help="comma-separated LOAN_MEMO modes")
    p.add_argument("--json", action="store_true", help="print the rows as JSON after the table")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ALL_MODES:
            p.error(f"unknown mode {m!r}; expected some of {','.join(ALL_MODES)}")
    load = Load()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="larder-django-") as tmp,
        Scenario(Path(tmp), load) as sc,
    ):
        for mode, preload, kill in default_plan(modes):
            rows.append(sc.run(mode, preload=preload, kill_redis=kill))
    print(render(rows, load))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
