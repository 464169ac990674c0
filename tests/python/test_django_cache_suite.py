"""Django's own cache tests (tests/cache/tests.py from Django's sdist, fetched from PyPI at
test time) against larder.django.LarderCache on a real redis-server: every applicable test
passes; the exclusions (with reasons) are the skips listed in django_cache_suite.EXCLUDED and
docs/django.md.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "examples" / "django-loan"))
suite = importlib.import_module("django_cache_suite")
scenario = importlib.import_module("scenario")


@pytest.mark.parametrize("tiers", ["redis", "local+redis", "sqlite"])
def test_django_cache_tests_pass_on_larder_cache(tmp_path, capsys, tiers):
    for mod in ("django", "redis", "larder.django"):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            pytest.fail(
                f"{e}: pip install -r tests/python/requirements-django.txt and build larder "
                "(bash scripts/test.sh)"
            )
    server = scenario.RedisServer(tmp_path, "suite")
    server.start()
    try:
        location = {
            "redis": server.larder_url,
            "local+redis": f"local:1000,{server.larder_url}",
            "sqlite": f"sqlite:{tmp_path / 'cache.db'}",
        }[tiers]
        work = tmp_path / "suite"
        work.mkdir()
        res = suite.run_suite(location, work)
    finally:
        server.stop()
    excluded = sum(len(v) for v in suite.EXCLUDED.values())
    summary = (
        f"Django's cache tests on LarderCache ({location}): {res.passed} passed, "
        f"{res.failures} failed, {res.errors} errors, {res.skipped} skipped of {res.ran}"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert res.failures == 0 and res.errors == 0, summary + "\n" + res.output[-6000:]
    assert res.skipped == excluded, summary + "\n" + res.output[-6000:]
    assert res.passed >= 100, summary
