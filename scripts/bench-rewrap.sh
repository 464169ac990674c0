#!/usr/bin/env bash
# larder rewrap on 1,000,000 rows of a real PostgreSQL (docs/benchmarks.md, "Rewrap"):
#   1. plaintext -> ciphertext, killed with SIGKILL at >= 30 % and resumed (rows checked after);
#   2. rerun (idempotent: nothing to do);  3. keys rotate + rotate;  4. rotate to format v2;
#   5. local keyring -> AWS KMS (--to-kms, moto's KMS server), then a rerun (no KMS call).
# Prints each run's --json summary (throughput, keyring calls) and, for 5, the KMS requests
# moto recorded. Usage:
#   bash scripts/bench-rewrap.sh [ROWS=1000000]
# Needs PostgreSQL (Debian's postgresql), moto_server ($LARDER_MOTO_SERVER or .venv/bin, from
# `pip install 'moto[server]'`, as scripts/test.sh installs it) and a release build with the
# `kms` feature (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
cargo build --release -q -p larder-cli --features kms
larder="$PWD/target/release/larder"
moto_bin="${LARDER_MOTO_SERVER:-$PWD/.venv/bin/moto_server}"
[ -x "$moto_bin" ] || { echo "moto_server not found ($moto_bin): bash scripts/test.sh installs it into .venv" >&2; exit 1; }
python_bin="$(dirname "$moto_bin")/python"
bin="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
dir="$(mktemp -d /tmp/larder-bench-rewrap.XXXXXX)"
run=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; run=(runuser -u postgres --); fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${run[@]}" "$bin/initdb" -D "$dir/data" -U larder -A trust -E UTF8 --no-sync --locale=C >/dev/null
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null
moto_pid=
trap '[ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null; "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null; rm -rf "$dir"' EXIT
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
echo "== 5. local keyring -> AWS KMS (moto), then a rerun"
moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_ENABLE_RECORDING=true MOTO_RECORDER_FILEPATH="$dir/moto.jsonl" \
  "$moto_bin" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
moto_pid=$!
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
key=""
for _ in $(seq 1 100); do
  key=$("$python_bin" -c "import boto3; print(boto3.client('kms', region_name='us-east-1', endpoint_url='http://127.0.0.1:$moto_port').create_key()['KeyMetadata']['Arn'])" 2>/dev/null) && break
  sleep 0.3
done
[ -n "$key" ] || { echo "moto did not start:"; cat "$dir/moto.log"; exit 1; }
kms_ops() { grep -o '"TrentService\.[A-Za-z]*"' "$dir/moto.jsonl" 2>/dev/null | sort | uniq -c | tr '\n' ' '; echo; }
"${rw[@]}" --mode rotate --to-kms "aws:$key" --kms-endpoint "http://127.0.0.1:$moto_port" --json --verify 1000
echo "KMS requests moto recorded (CreateKey included): $(kms_ops)"
"${rw[@]}" --mode rotate --to-kms "aws:$key" --kms-endpoint "http://127.0.0.1:$moto_port" --json
echo "KMS requests moto recorded after the rerun: $(kms_ops)"
"${psql[@]}" -tAc "SELECT 'rows: ' || count(*) || ', lv1 (KMS): ' || count(*) FILTER (WHERE phone LIKE 'lv1.%') FROM customers"
