#!/usr/bin/env bash
# Runs every test of the workspace against real servers, installing what is missing:
#   - redis-server / redis-cli from Debian's packages (tests start their own servers),
#   - moto[server] from PyPI into ./.venv (the AWS KMS wire protocol for the envelope tests),
#   - for the Python package (crates/larder-py + python/larder): maturin, pytest, ruff and the
#     test clients from tests/python/requirements*.txt into ./.venv; the extension is built once
#     (debug) with `maturin develop`, then ruff and pytest run over tests/python.
#   - postgresql from Debian's packages (tests initdb and start their own server in a temp dir;
#     the package's system-wide cluster is never used).
# Works on a fresh Debian machine with only the Rust toolchain and Python.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: cannot install packages (not root, no sudo). Install them by hand: $*" >&2
    exit 1
  fi
}

# redis-server/redis-cli for the Redis and Redis Cluster tests; openssl for the rediss:// test,
# which makes a throwaway CA; python3-venv for the moto venv below.
missing=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# PostgreSQL for the blind-index (and rewrap) tests, which initdb their own server in a temp dir.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The package starts a system-wide server on 6379; the tests never use it (they start their own
# on free ports and unix sockets), so it is left alone.

[ -x .venv/bin/python ] || python3 -m venv .venv
# pip leaves satisfied requirements alone (no download when everything is there).
echo "== Python test tools into .venv (PyPI): tests/python/requirements*.txt"
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt \
  $( [ -f tests/python/requirements-django.txt ] && echo -r tests/python/requirements-django.txt )
for tool in moto_server maturin pytest ruff; do
  [ -x ".venv/bin/$tool" ] || { echo "error: .venv/bin/$tool is missing after pip install" >&2; exit 1; }
done

export LARDER_REDIS_SERVER="$(command -v redis-server)"
export LARDER_REDIS_CLI="$(command -v redis-cli)"
export LARDER_MOTO_SERVER="$PWD/.venv/bin/moto_server"
pg_initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
[ -n "$pg_initdb" ] || pg_initdb="$(command -v initdb)"
export LARDER_PG_BIN="$(dirname "$pg_initdb")"

# larder-py is a Python extension (no Rust tests of its own; clippy checks it): it is built
# below by maturin, so cargo does not build it twice with different PyO3 settings.
echo "== cargo test --workspace --all-features"
cargo test --workspace --all-features --exclude larder-py "$@"

echo "== Python: maturin develop (debug build of crates/larder-py into .venv)"
VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --quiet
echo "== Python: ruff check + ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# The Rust binaries the cross-language tests run were built by cargo test above.
export LARDER_CLI="$PWD/target/debug/larder"
export LARDER_CBOR_PEER="$PWD/target/debug/examples/cbor_peer"
echo "== Python: pytest tests/python"
# Exit code 5 (no tests collected) fails this script like any other failure.
.venv/bin/python -m pytest tests/python -q
