#!/usr/bin/env bash
# Story A on the stack it happened on: a Django app under gunicorn (2 instances x 2 workers),
# a shared Redis, bursts of identical requests, a deploy mid-run and a Redis SIGKILL, memoized
# five ways (none, the seed's hash() decorator, its sha1 fix, @larder.memoize, LarderCache).
# Prints the table of computations, requests/s, p50/p99, failed and wrong answers.
#
#   bash scripts/django-demo.sh                     # every mode (about 2 minutes on 2 cores)
#   bash scripts/django-demo.sh --modes seed,larder
#   bash scripts/django-demo.sh --env-only          # only install what the demo needs
#
# Installs what is missing: redis-server (Debian, when run as root), Django, gunicorn and
# redis-py into ./.venv, and larder itself (maturin develop --release) when not importable.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: apt-get install redis-server" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -r tests/python/requirements-django.txt
if ! .venv/bin/python -c "import larder.django" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q maturin
    .venv/bin/maturin develop --release -q
fi
if [ "${1:-}" = "--env-only" ]; then
    exit 0
fi
exec .venv/bin/python examples/django-loan/scenario.py "$@"
