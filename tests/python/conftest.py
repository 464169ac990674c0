"""Shared fixtures of the Python suite: real servers (redis-server, a 3-node Redis Cluster,
moto's KMS server), the Rust `larder` CLI and the Rust cache peer, built with cargo.

Nothing here skips: a missing tool fails with what to install (``bash scripts/test.sh``
installs all of it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; for a cluster node also its bus port (port + 10000 <= 65535)."""
    import random

    for _ in range(1000):
        port = random.randint(20000, 45000)
        if _bindable(port) and (not cluster or _bindable(port + 10000)):
            return port
    raise AssertionError("no free port found")


def need(binary: str, env: str, hint: str) -> str:
    path = os.environ.get(env) or shutil.which(binary)
    if not path or not os.path.exists(path):
        pytest.fail(f"{binary} not found (set ${env} or install it: {hint})", pytrace=False)
    return path


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# The value-MAC secret of every larder cache the tests open on Redis (larder refuses a Redis
# tier without one: anyone who can write to the server could otherwise forge entries). It rides
# in the tier URL (`?secret=HEX`, docs/cache.md), so key texts stay those of the default key.
LARDER_MAC_SECRET = b"larder test mac secret, 32 bytes".hex()


class Redis:
    """One redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path, cluster: bool = False) -> None:
        self.server = need("redis-server", "LARDER_REDIS_SERVER", "apt-get install redis-server")
        self.cli = need("redis-cli", "LARDER_REDIS_CLI", "apt-get install redis-server")
        self.port = free_port(cluster)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)

        def up() -> bool:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                raise AssertionError(f"redis-server exited: {log[-2000:]}")
            return self.cmd("PING") == "PONG"

        wait_until(up, 30, f"redis-server on {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def larder_url(self) -> str:
        """The URL larder caches use: the same server, with the value-MAC secret."""
        return f"{self.url}?secret={LARDER_MAC_SECRET}"

    def cmd(self, *args: str) -> str:
        out = subprocess.run(
            [self.cli, "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    nodes = [Redis(base / f"n{i}", cluster=True) for i in range(3)]
    try:
        out = subprocess.run(
            [
                nodes[0].cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        wait_until(
            lambda: all("cluster_state:ok" in n.cmd("CLUSTER", "INFO") for n in nodes),
            30,
            "the cluster to be ok",
        )
        nodes_list = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        yield f"redis+cluster://{nodes_list}?secret={LARDER_MAC_SECRET}"
    finally:
        for n in nodes:
            n.stop()


class Moto:
    """moto's KMS server (the AWS wire protocol), with its request recorder on."""

    def __init__(self, workdir: Path) -> None:
        default = Path(sys.prefix) / "bin" / "moto_server"
        binary = os.environ.get("LARDER_MOTO_SERVER") or str(default)
        if not os.path.exists(binary):
            pytest.fail(
                f"moto_server not found at {binary}: .venv/bin/pip install 'moto[server]' "
                "(bash scripts/test.sh does)",
                pytrace=False,
            )
        self.port = free_port()
        self.recording = workdir / "requests.jsonl"
        self.log = open(workdir / "moto.log", "ab")
        env = dict(
            os.environ,
            MOTO_ENABLE_RECORDING="true",
            MOTO_RECORDER_FILEPATH=str(self.recording),
        )
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=self.log,
            env=env,
        )

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True

        wait_until(up, 60, "moto_server")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3

        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_key(self) -> str:
        return self.client().create_key(Description="larder python test")["KeyMetadata"]["Arn"]

    def count(self, operation: str) -> int:
        """Requests for ``operation`` that reached the server (moto's recording)."""
        if not self.recording.exists():
            return 0
        needle = f'"TrentService.{operation}"'
        n = 0
        for line in self.recording.read_text().splitlines():
            if '"X-Amz-Target"' in line and needle in line:
                n += 1
        return n

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory, monkeysession):
    m = Moto(tmp_path_factory.mktemp("moto"))
    monkeysession.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeysession.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeysession.setenv("AWS_REGION", "us-east-1")
    monkeysession.delenv("AWS_PROFILE", raising=False)
    yield m
    m.stop()


@pytest.fixture(scope="session")
def monkeysession():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def cargo_build(args: list[str], artifact: Path) -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        if artifact.exists():
            return artifact
        pytest.fail("cargo not found: install the Rust toolchain (rustup)", pytrace=False)
    out = subprocess.run([cargo, "build", "-q", *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"cargo build {' '.join(args)} failed:\n{out.stderr}", pytrace=False)
    assert artifact.exists(), artifact
    return artifact


@pytest.fixture(scope="session")
def larder_cli() -> Path:
    """The Rust `larder` command (``$LARDER_CLI``, else built with cargo)."""
    if os.environ.get("LARDER_CLI") and os.path.exists(os.environ["LARDER_CLI"]):
        return Path(os.environ["LARDER_CLI"])
    return cargo_build(["-p", "larder-cli"], TARGET / "debug" / "larder")


@pytest.fixture(scope="session")
def cbor_peer() -> Path:
    """The Rust service side of the value interop test (crates/larder-cache/examples)."""
    if os.environ.get("LARDER_CBOR_PEER") and os.path.exists(os.environ["LARDER_CBOR_PEER"]):
        return Path(os.environ["LARDER_CBOR_PEER"])
    return cargo_build(
        ["-p", "larder-cache", "--features", "cbor", "--example", "cbor_peer"],
        TARGET / "debug" / "examples" / "cbor_peer",
    )


@pytest.fixture(scope="session")
def key_vectors() -> dict:
    return json.loads((ROOT / "docs" / "key-vectors.json").read_text())


@pytest.fixture
def keyring(tmp_path):
    import larder

    path = tmp_path / "keyring"
    larder.LocalKeyring.init(path)
    return path
