#!/usr/bin/env bash
# Peer comparison for larder-envelope (docs/benchmarks.md, "Envelope vs peers"): larder vs the
# AWS Encryption SDK for Rust (crates.io aws-esdk) and for Python (PyPI aws-encryption-sdk 4.x,
# caching CMM), in one run. Kept out of the default build: bench/peers is its own Cargo project
# (excluded from the workspace) with its own target dir, and the Python SDK lives in a venv.
#
#   bash scripts/bench-peers.sh            # ROUNDS=5 throughput rounds, TRIALS=5 cold trials
#   ROUNDS=3 TRIALS=5 bash scripts/bench-peers.sh
#
# Raw JSON lines go to bench/peers/target/results.jsonl; the summary (tables + ratios) to stdout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/bench/peers"
venv="$peers/.venv"
rounds=${ROUNDS:-5}
trials=${TRIALS:-5}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q 'aws-encryption-sdk>=4,<5'
py="$venv/bin/python"

(cd "$peers" && cargo build --release --quiet)
bin="$peers/target/release/larder-bench-peers"

out="$peers/target/results.jsonl"
: > "$out"
echo "host: $(nproc) vCPU, load $(cut -d' ' -f1-3 /proc/loadavg); $(rustc --version); $("$py" --version)" >&2

# Throughput: the Rust process interleaves larder and aws-esdk inside each round; the Python
# process runs between Rust rounds so all three see the same machine load.
for r in $(seq 1 "$rounds"); do
    echo "throughput round $r/$rounds" >&2
    "$bin" throughput 1 >> "$out"
    "$py" "$peers/esdk_peer.py" throughput 1 >> "$out"
done

# Cold cache, 5 ms per data-key generation: keyring / master-key calls per burst.
for threads in 16 100; do
    echo "cold cache, $threads threads x $trials trials" >&2
    "$bin" cold "$threads" "$trials" >> "$out"
    "$py" "$peers/esdk_peer.py" cold "$threads" "$trials" >> "$out"
done

"$py" "$peers/summarize.py" "$out"
