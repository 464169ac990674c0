"""One worker process of the seed A test: CALLS calls over INPUTS inputs of a 100 ms
memoized function on the shared cache URL; every computation is counted in a file (O_APPEND
lines) or with a Redis INCR."""

from __future__ import annotations

import os
import random
import sys
import time

import larder


def main() -> None:
    url, counter, start_file, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls, inputs = int(sys.argv[5]), int(sys.argv[6])
    if counter.startswith("redis://"):
        import redis

        r = redis.Redis.from_url(counter.rsplit("/", 1)[0])
        counter_key = counter.rsplit("/", 1)[1]

        def count(x: int) -> None:
            r.incr(counter_key)
    else:

        def count(x: int) -> None:
            fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"{os.getpid()} {x}\n".encode())
            os.close(fd)

    cache = larder.Cache(url, lease_ttl=30, lease_wait=30)

    @larder.memoize(namespace="seed_a", version=1, ttl=600, cache=cache)
    def quote(user_id: int) -> dict:
        count(user_id)
        time.sleep(0.1)
        return {"user_id": user_id, "monthly": user_id * 1000}

    order = [i % inputs for i in range(calls)]
    random.Random(seed).shuffle(order)
    while not os.path.exists(start_file):
        time.sleep(0.005)
    for x in order:
        assert quote(x) == {"user_id": x, "monthly": x * 1000}
    print(sys.argv[4], cache.stats()["computations"], flush=True)


if __name__ == "__main__":
    main()
