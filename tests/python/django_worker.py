"""A worker process for tests/python/test_django_cache.py: several threads call
cache.get_or_set on one key at the same instant; every computation INCRs a Redis counter.

    python django_worker.py BACKEND LOCATION COUNTER_URL KEY THREADS START_AT

BACKEND is `larder` (larder.django.LarderCache) or `django` (Django's RedisCache). Prints
the values the threads got, as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import django
import redis
from django.conf import settings

BACKENDS = {
    "larder": "larder.django.LarderCache",
    "django": "django.core.cache.backends.redis.RedisCache",
}


def main() -> None:
    backend, location, counter_url, key, threads, start_at = sys.argv[1:7]
    settings.configure(CACHES={"default": {"BACKEND": BACKENDS[backend], "LOCATION": location}})
    django.setup()
    from django.core.cache import cache

    counter = redis.Redis.from_url(counter_url)

    def compute():
        counter.incr("computations")
        time.sleep(0.3)
        return {"answer": 42, "by": "one computation"}

    results: list = []
    lock = threading.Lock()

    def run():
        time.sleep(max(0.0, float(start_at) - time.time()))
        v = cache.get_or_set(key, compute, 60)
        with lock:
            results.append(v)

    pool = [threading.Thread(target=run) for _ in range(int(threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
