#!/usr/bin/env bash
# The fault-injection soak: 4 worker processes doing memo (Redis tier) and envelope (AWS KMS
# keyring on moto) work for SECONDS while Redis is SIGKILLed and restarted every N seconds and
# moto is stalled once. Asserts zero wrong values and zero panics; prints errors by kind,
# latency percentiles and KMS calls. Loopback only; stops by itself.
#   bash scripts/soak.sh [SECONDS=60] [REDIS_KILL_EVERY=6]
# Needs redis-server and moto_server: `bash scripts/test.sh` installs them (moto into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

export LARDER_SOAK_SECS="${1:-60}"
export LARDER_SOAK_REDIS_EVERY="${2:-6}"
if [ -z "${LARDER_MOTO_SERVER:-}" ] && [ -x .venv/bin/moto_server ]; then
  export LARDER_MOTO_SERVER="$PWD/.venv/bin/moto_server"
fi
if [ -z "${LARDER_REDIS_SERVER:-}" ] && command -v redis-server >/dev/null; then
  export LARDER_REDIS_SERVER="$(command -v redis-server)"
fi

echo "== soak: ${LARDER_SOAK_SECS}s, Redis killed every ${LARDER_SOAK_REDIS_EVERY}s, KMS stalled once"
# --all-features: the same build as scripts/test.sh, so nothing is compiled twice.
cargo test -p larder-soak --all-features --test soak -- --nocapture
