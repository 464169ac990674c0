#!/usr/bin/env bash
# larder rewrap on 1,000,000 rows of a real PostgreSQL (docs/benchmarks.md, "Rewrap"):
#   1. plaintext -> ciphertext, killed with SIGKILL at >= 30 % and resumed (rows checked after);
#   2. rerun (idempotent: nothing to do);  3. keys rotate + rotate;  4. rotate to format v2.
# Prints each run's --json summary (throughput, keyring calls). Usage:
#   bash scripts/bench-rewrap.sh [ROWS=1000000]
# Needs PostgreSQL (Debian's postgresql) and a release build (built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
cargo build --release -q -p larder-cli
larder="$PWD/target/release/larder"
bin="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
dir="$(mktemp -d /tmp/larder-bench-rewrap.XXXXXX)"
run=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; run=(runuser -u postgres --); fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${run[@]}" "$bin/initdb" -D "$dir/data" -U larder -A trust -E UTF8 --no-sync --locale=C >/dev/null
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null
trap '"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null; rm -rf "$dir"' EXIT
psql=("$bin/psql" -q -h 127.0.0.1 -p "$port" -U larder -d postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE TABLE customers (id bigserial PRIMARY KEY, phone text);
  INSERT INTO customers (phone) SELECT '010-' || lpad((g / 10000 % 10000)::text, 4, '0') || '-' || lpad((g % 10000)::text, 4, '0')
  FROM generate_series(1, $rows) g;"
ring="$dir/keyring"
"$larder" --keyring "$ring" keys init >/dev/null
url="postgresql://larder@127.0.0.1:$port/postgres"
rw=("$larder" --keyring "$ring" rewrap --db "$url" --table customers --column phone --context column=phone --batch 1000)

echo "== 1. encrypt, SIGKILL at >= 30 %, resume"
"${rw[@]}" --mode encrypt >/dev/null 2>&1 &
pid=$!
while :; do
  at=$("${psql[@]}" -tAc "SELECT coalesce((SELECT last_id FROM larder_rewrap_progress), 0)" 2>/dev/null || echo 0)
  [ "$at" -ge $((rows * 3 / 10)) ] && break
  sleep 0.2
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
at=$("${psql[@]}" -tAc "SELECT last_id FROM larder_rewrap_progress")
echo "killed at checkpoint $at"
"${rw[@]}" --mode encrypt --json
"${psql[@]}" -tAc "SELECT 'rows: ' || count(*) || ', encrypted: ' || count(*) FILTER (WHERE phone LIKE 'lv1.%') FROM customers"
echo "== 2. rerun (idempotent)"
"${rw[@]}" --mode encrypt --json
echo "== 3. keys rotate + rotate"
"$larder" --keyring "$ring" keys rotate >/dev/null
"${rw[@]}" --mode rotate --json --verify 1000
echo "== 4. v1 -> v2"
"${rw[@]}" --mode rotate --v2 --json
