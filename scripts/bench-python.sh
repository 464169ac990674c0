#!/usr/bin/env bash
# Python benchmarks (docs/benchmarks.md, "Python"): larder's Python package, release build,
# against functools.lru_cache, cachetools, diskcache, redis-py and the AWS Encryption SDK 4.x,
# side by side in one process and one run.
#
#   bash scripts/bench-python.sh                 # every group
#   ROUNDS=9 bash scripts/bench-python.sh keys memo
#
# Builds a release wheel with maturin (its own venv, bench/python/.venv, so the test venv keeps
# its debug build) and installs the peers from PyPI there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/bench/python/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin cachetools diskcache redis \
  'aws-encryption-sdk>=4,<5'
rm -rf "$root/target/wheels-bench"
(cd "$root" && "$venv/bin/maturin" build --release --quiet -o "$root/target/wheels-bench")
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
  "$root"/target/wheels-bench/larder-*.whl
echo "host: $(nproc) vCPU, load $(cut -d' ' -f1-3 /proc/loadavg); $("$venv/bin/python" --version)" >&2
cd "$root/bench/python"
exec "$venv/bin/python" bench.py "$@"
