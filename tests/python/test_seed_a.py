"""Seed A: 4 worker processes x 250 calls over 50 inputs of a 100 ms function on one shared
tier -> exactly 50 computations for the whole fleet (counted outside the cache)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_fleet(url: str, counter: str, tmp_path: Path, processes=4, calls=250, inputs=50):
    start = tmp_path / f"start-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "memo_worker.py"),
                url,
                counter,
                str(start),
                str(seed),
                str(calls),
                str(inputs),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(processes)
    ]
    time.sleep(1.0)  # let every worker import larder and open the tier
    start.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return [int(o.split()[1]) for o, _ in outs]


def test_seed_a_sqlite(tmp_path):
    counter = tmp_path / "computations.log"
    per_process = run_fleet(f"local:1000,sqlite:{tmp_path / 'shared.db'}", str(counter), tmp_path)
    lines = counter.read_text().splitlines()
    inputs = sorted(int(line.split()[1]) for line in lines)
    assert inputs == list(range(50)), f"{len(lines)} computations: {inputs}"
    assert sum(per_process) == 50


@pytest.mark.parametrize("shared", ["redis", "cluster"])
def test_seed_a_redis(shared, request, redis, tmp_path):
    import redis as redis_py

    url = redis.larder_url if shared == "redis" else request.getfixturevalue("redis_cluster")
    counter_key = f"seed_a_computations_{uuid.uuid4().hex}"
    per_process = run_fleet(f"local:1000,{url}", f"{redis.url}/{counter_key}", tmp_path)
    computed = int(redis_py.Redis.from_url(redis.url).get(counter_key) or 0)
    assert computed == 50
    assert sum(per_process) == 50
