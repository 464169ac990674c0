"""Memoized values are CBOR (docs/cache-value-format.md): the checked-in vectors, and a Rust
service (crates/larder-cache/examples/cbor_peer.rs) reading what Python wrote and the reverse."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Annotated

import pytest

import larder

ROOT = Path(__file__).resolve().parents[2]


def test_cbor_vectors():
    doc = json.loads((ROOT / "docs" / "cache-value-cbor-vectors.json").read_text())
    assert len(doc["valid"]) == 8
    for v in doc["valid"]:
        payload = bytes.fromhex(v["payload_hex"])
        assert larder.cbor_loads(payload) == v["value"], v["name"]
        # Python writes the same bytes for the same value (its dict in the order read).
        assert larder.cbor_dumps(larder.cbor_loads(payload)) == payload, v["name"]
    # The documented example: a dict in the Rust struct's field order is byte-identical.
    quote = {"monthly_won": 152425, "currency": "KRW", "rates": [4.5, 0.25], "note": None}
    assert larder.cbor_dumps(quote).hex() == doc["valid"][0]["payload_hex"]


def test_bad_cbor_is_a_cache_error():
    for bad in [b"", b"\xff", b"\x82\x01", b"\x01\x02", b"\x5f"]:
        with pytest.raises(larder.CacheError):
            larder.cbor_loads(bad)


@larder.stable(name="LoanQuote", version=1)
@dataclasses.dataclass
class LoanQuote:
    user_id: int
    amount_won: int
    rate_bp: Annotated[int, larder.u32]
    term_months: Annotated[int, larder.u32]


def peer(binary: Path, url: str, *args: str) -> str:
    out = subprocess.run([str(binary), url, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("tier", ["sqlite", "redis"])
def test_python_and_rust_share_entries(cbor_peer, tier, tmp_path, request):
    url = (
        f"sqlite:{tmp_path / 'mixed.db'}"
        if tier == "sqlite"
        else request.getfixturevalue("redis").larder_url
    )
    cache = larder.Cache(url)
    calls = []

    @larder.memoize(namespace="loan_calc", version=1, cache=cache)
    def quote(q: LoanQuote):
        calls.append(q)
        return {
            "monthly_won": q.amount_won * q.rate_bp // 10000 // q.term_months,
            "currency": "KRW",
        }

    # Python computes and stores; the Rust service reads the same entry (same key, CBOR).
    q = LoanQuote(7, 5_000_000, 450, 36)
    assert quote(q) == {"monthly_won": 6250, "currency": "KRW"}
    got = json.loads(peer(cbor_peer, url, "get", "7", "5000000", "450", "36"))
    assert got == {"monthly_won": 6250, "currency": "KRW"}
    # The Rust service stores; Python reads it without computing.
    assert peer(cbor_peer, url, "set", "8", "1000000", "300", "12", "2500", "USD") == "ok"
    assert quote(LoanQuote(8, 1_000_000, 300, 12)) == {"monthly_won": 2500, "currency": "USD"}
    assert calls == [q]
    assert peer(cbor_peer, url, "get", "9", "1", "1", "1") == "miss"
