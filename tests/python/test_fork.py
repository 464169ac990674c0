"""Prefork servers (gunicorn --preload, multiprocessing 'fork', os.fork): a parent warms an
envelope and a memo cache, then forks. Children must never reuse the parent's data key or
each other's (data key, nonce) pairs, and the memo cache must still compute each input once
for the whole family."""

from __future__ import annotations

import multiprocessing
import os
import struct
import time
from pathlib import Path

import larder

CTX = {"table": "t", "column": "phone"}
CHILDREN = 8
PER_CHILD = 1000


def edk_and_nonce(ct: bytes) -> tuple[bytes, bytes]:
    """The EDK fields and the nonce of a binary ciphertext (docs/ciphertext-format.md)."""
    assert ct[0] == 1 and ct[1] == 1, "format v1, AES-256-GCM"
    key_id_len = ct[3]
    off = 4 + key_id_len
    (edk_len,) = struct.unpack(">H", ct[off : off + 2])
    edk_end = off + 2 + edk_len
    edk_fields = ct[2:edk_end]
    nonce = ct[edk_end + 32 : edk_end + 32 + 12]
    assert len(nonce) == 12
    return edk_fields, nonce


def check_pairs(per_process: dict[int, list[bytes]]) -> None:
    pairs: set[tuple[bytes, bytes]] = set()
    edk_owner: dict[bytes, int] = {}
    total = 0
    for pid, cts in per_process.items():
        for ct in cts:
            edk, nonce = edk_and_nonce(ct)
            pairs.add((edk, nonce))
            total += 1
            owner = edk_owner.setdefault(edk, pid)
            assert owner == pid, "one data key (EDK) used by two processes"
    assert len(pairs) == total, f"{total - len(pairs)} repeated (EDK, nonce) pairs"


def _encrypt_many(env: larder.Envelope, out: Path) -> None:
    cts = [
        env.encrypt(f"010-{os.getpid() % 10000:04d}-{i:04d}".encode(), CTX)
        for i in range(PER_CHILD)
    ]
    for ct in cts[:5]:
        assert env.decrypt(ct, CTX).startswith(b"010-")
    out.write_bytes(b"".join(struct.pack(">I", len(c)) + c for c in cts))


def _read(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def test_envelope_after_os_fork(keyring, tmp_path):
    env = larder.Envelope(larder.LocalKeyring(keyring))
    warm = [env.encrypt(b"warm", CTX) for _ in range(10)]  # the parent's data key is cached
    pids = []
    for n in range(CHILDREN):
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                _encrypt_many(env, tmp_path / f"child-{n}.bin")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    per_process = {os.getpid(): warm}
    for n in range(CHILDREN):
        per_process[n + 1] = _read(tmp_path / f"child-{n}.bin")
    assert sum(len(v) for v in per_process.values()) == CHILDREN * PER_CHILD + 10
    check_pairs(per_process)
    # The parent still works, with its own key.
    assert env.decrypt(env.encrypt(b"after", CTX), CTX) == b"after"


_INHERITED: dict[str, larder.Envelope] = {}


def _mp_child(out: str) -> int:
    # The envelope is inherited through fork (module state), as a preloaded app's would be.
    _encrypt_many(_INHERITED["env"], Path(out))
    return os.getpid()


def test_envelope_with_multiprocessing_fork(keyring, tmp_path):
    env = larder.Envelope(larder.LocalKeyring(keyring))
    warm = [env.encrypt(b"warm", CTX) for _ in range(10)]
    _INHERITED["env"] = env
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(CHILDREN) as pool:
        res = pool.map_async(_mp_child, [str(tmp_path / f"mp-{n}.bin") for n in range(CHILDREN)], 1)
        pids = res.get(timeout=300)
    assert len(set(pids)) > 1
    per_process: dict[int, list[bytes]] = {os.getpid(): warm}
    for n, pid in enumerate(pids):  # a pool worker may have run two tasks: group by process
        per_process.setdefault(pid, []).extend(_read(tmp_path / f"mp-{n}.bin"))
    check_pairs(per_process)


def _memo_child(memo_fn, counter: Path, inputs: range) -> None:
    for x in inputs:
        assert memo_fn(x) == {"x": x}


def test_memo_once_per_input_across_forked_children(tmp_path):
    counter = tmp_path / "computed.log"
    cache = larder.Cache(f"local:1000,sqlite:{tmp_path / 'fork.db'}", lease_wait=30)

    @larder.memoize(namespace="t.fork", ttl=600, cache=cache)
    def f(x):
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{x}\n".encode())
        os.close(fd)
        time.sleep(0.05)
        return {"x": x}

    for x in range(10):  # warm: 10 inputs computed (and connections opened) before the fork
        f(x)
    pids = []
    for n in range(CHILDREN):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                order = list(range(50))
                order = order[n:] + order[:n]
                _memo_child(f, counter, order)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    deadline = time.monotonic() + 60
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            if time.monotonic() > deadline:
                for p in pids:
                    try:
                        os.kill(p, 9)
                    except ProcessLookupError:
                        pass
                raise AssertionError("a forked child hung using the memo cache")
            time.sleep(0.05)
    computed = sorted(int(x) for x in counter.read_text().split())
    assert computed == list(range(50)), f"{len(computed)} computations for 50 inputs"


_MEMO: dict[str, object] = {}


def _mp_memo_child(n: int) -> int:
    f = _MEMO["f"]
    order = list(range(50))
    for x in order[n:] + order[:n]:
        assert f(x) == {"x": x}  # type: ignore[operator]
    return os.getpid()


def test_memo_once_per_input_with_multiprocessing_fork(tmp_path):
    counter = tmp_path / "computed.log"
    cache = larder.Cache(f"local:1000,sqlite:{tmp_path / 'mp.db'}", lease_wait=30)

    @larder.memoize(namespace="t.mpfork", ttl=600, cache=cache)
    def f(x):
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{x}\n".encode())
        os.close(fd)
        time.sleep(0.05)
        return {"x": x}

    for x in range(10):
        f(x)
    _MEMO["f"] = f
    pool = multiprocessing.get_context("fork").Pool(CHILDREN)
    try:
        res = pool.map_async(_mp_memo_child, range(CHILDREN), 1)
        res.get(timeout=60)
    except multiprocessing.TimeoutError:
        raise AssertionError("a multiprocessing child hung using the memo cache") from None
    finally:
        pool.terminate()
        pool.join()
    computed = sorted(int(x) for x in counter.read_text().split())
    assert computed == list(range(50)), f"{len(computed)} computations for 50 inputs"
