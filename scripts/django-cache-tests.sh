#!/usr/bin/env bash
# Django's own cache tests (from the sdist of the installed Django, fetched from PyPI at run
# time, never committed) against larder.django.LarderCache on a fresh redis-server. Prints
# Django's runner output and "N passed, N failed"; exclusions and reasons: docs/django.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/django-demo.sh --env-only
exec .venv/bin/python tests/python/django_cache_suite.py "$@"
