"""Summarises the JSON lines of scripts/bench-peers.sh: medians, ratios larder/peer, cold counts."""

import json
import os
import re
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
rates = defaultdict(list)  # (impl, op) -> ops/s of every round
sizes = {}
cold = defaultdict(list)  # (impl, threads) -> generations per trial
cold_ms = defaultdict(list)
versions = {}
for r in rows:
    if "version" in r:
        versions[r["impl"]] = r["version"]
    if r["op"] == "cold":
        cold[(r["impl"], r["threads"])].append(r["generations"])
        cold_ms[(r["impl"], r["threads"])].append(r["ms"])
        assert r["ok"] == r["threads"], r
        continue
    rates[(r["impl"], r["op"])].extend(r["rounds"])
    if r.get("ciphertext_bytes") is not None:
        sizes[r["impl"]] = (r["ciphertext_bytes"], r.get("ciphertext_bytes_empty_context"))

lock = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "Cargo.lock")).read()
m = re.search(r'name = "aws-esdk"\nversion = "([^"]+)"', lock)
if m:
    versions["aws-esdk-rust"] = m.group(1)

impls = ["larder", "aws-esdk-rust", "aws-esdk-python"]
print("\n## warm encrypt/decrypt of '010-1234-5678' (13 B), single thread; median ops/s over rounds")
print("| implementation | encrypt ops/s | decrypt ops/s | µs/encrypt | µs/decrypt | ciphertext B (context / empty) |")
print("|---|---|---|---|---|---|")
med = {}
for i in impls:
    e = rates.get((i, "encrypt"))
    d = rates.get((i, "decrypt"))
    if not e:
        continue
    med[i] = (statistics.median(e), statistics.median(d))
    s = sizes.get(i, (None, None))
    print(f"| {i} {versions.get(i, '')} | {med[i][0]:,.0f} | {med[i][1]:,.0f} | {1e6 / med[i][0]:.2f} | {1e6 / med[i][1]:.2f} | {s[0]} / {s[1]} |")
print("\nratios larder / peer (target >= 100x the faster peer):")
for op, k in (("encrypt", 0), ("decrypt", 1)):
    peers = {i: med[i][k] for i in impls[1:] if i in med}
    parts = [f"{med['larder'][k] / v:,.0f}x vs {i}" for i, v in peers.items()]
    fastest = max(peers.values())
    verdict = "MET" if med["larder"][k] / fastest >= 100 else "NOT MET"
    print(f"  {op}: " + ", ".join(parts) + f" -> vs faster peer {med['larder'][k] / fastest:,.0f}x ({verdict})")

print("\n## cold cache: concurrent encrypts, 5 ms per data-key generation; generations per trial")
print("| implementation | threads | generations per trial | burst ms (median) |")
print("|---|---|---|---|")
for (i, t), g in sorted(cold.items(), key=lambda kv: (kv[0][1], impls.index(kv[0][0]))):
    print(f"| {i} | {t} | {', '.join(map(str, g))} | {statistics.median(cold_ms[(i, t)]):.1f} |")
