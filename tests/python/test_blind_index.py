"""larder.blind_index: every vector of docs/blind-index-vectors.json (the file the Rust test
crates/larder-envelope/tests/it/blind_index.rs checks) computed by the binding and, independently,
by hmac/hashlib following docs/blind-index.md; the same index as `larder index` for a keyring's
index key; false positives removed with larder.normalize; typed exceptions for bad input."""

from __future__ import annotations

import hashlib
import hmac
import struct
import subprocess

import pytest

import larder
from conftest import ROOT

VECTORS = ROOT / "docs" / "blind-index-vectors.json"


def load_vectors():
    import json

    return json.loads(VECTORS.read_text())


def fields_of(descriptor: str) -> list[tuple[str, str]]:
    out = []
    for f in descriptor.split(","):
        kind, _, part = f.partition(":")
        out.append((kind, part or "full"))
    return out


def independent(key: bytes, v: dict) -> bytes:
    """docs/blind-index.md read on its own (no larder code)."""

    def lp(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    info = (
        b"larder blind index v1"
        + lp(v["index"].encode())
        + lp(v["descriptor"].encode())
        + struct.pack(">H", v["bits"])
        + lp(bytes.fromhex(v["context_canonical_hex"]))
    )
    k = hmac.new(key, info, hashlib.sha256).digest()
    msg = b"".join(lp(n.encode()) for n in v["normalized"])
    d = hmac.new(k, msg, hashlib.sha256).digest()
    n = (v["bits"] + 7) // 8
    out = bytearray(d[:n])
    out[-1] &= (0xFF << (n * 8 - v["bits"])) & 0xFF
    return bytes(out)


def test_every_checked_in_vector():
    doc = load_vectors()
    raw = bytes.fromhex(doc["index_key_hex"])
    key = larder.BlindIndexKey(raw, id="i1")
    assert len(doc["vectors"]) == 10
    for v in doc["vectors"]:
        fields = fields_of(v["descriptor"])
        ctx = dict(v["context"])
        if len(fields) == 1:
            kind, part = fields[0]
            ix = larder.blind_index(
                v["values"][0],
                kind,
                key=key,
                part=part,
                name=v["index"],
                bits=v["bits"],
                context=ctx,
            )
        else:
            ix = larder.blind_index(
                v["values"], key=key, fields=fields, name=v["index"], bits=v["bits"], context=ctx
            )
        assert ix.hex == v["index_hex"], v["name"]
        assert str(ix) == v["index_hex"]
        assert bytes(ix) == bytes.fromhex(v["index_hex"])
        assert ix.int == v["index_int"], v["name"]
        assert ix.bits == v["bits"]
        assert bytes(ix) == independent(raw, v), v["name"]
        for value, (kind, part), norm in zip(v["values"], fields, v["normalized"]):
            assert larder.normalize(value, kind, part) == norm, v["name"]


def test_spellings_share_an_index_and_values_and_specs_do_not():
    key = larder.BlindIndexKey(bytes(range(1, 33)))
    ctx = {"table": "inquiries", "column": "phone"}
    a = larder.blind_index("010-1234-5678", "phone", key=key, context=ctx)
    assert a == larder.blind_index("01012345678", "phone", key=key, context=ctx)
    assert a == larder.blind_index("+82 10 1234 5678", "phone", key=key, context=ctx)
    assert hash(a) == hash(larder.blind_index("(010) 1234.5678", "phone", key=key, context=ctx))
    assert len({a, larder.blind_index("010-1234-5678", "phone", key=key, context=ctx)}) == 1
    assert a.bits == 16 and len(bytes(a)) == 2
    # Another context, size, name or key: unrelated values (64 bits: no chance collision).
    base = dict(key=key, context=ctx, bits=64)
    x = larder.blind_index("010-1234-5678", "phone", **base)
    assert x != larder.blind_index("010-1234-5679", "phone", **base)
    assert x != larder.blind_index(
        "010-1234-5678", "phone", key=key, context={"column": "x"}, bits=64
    )
    assert x != larder.blind_index("010-1234-5678", "phone", name="other", **base)
    other = larder.BlindIndexKey(bytes(range(2, 34)))
    assert x != larder.blind_index("010-1234-5678", "phone", key=other, context=ctx, bits=64)
    assert larder.blind_index("x@y.kr", "email", key=key, bits=100).int is None
    assert repr(key) == 'larder.BlindIndexKey(id="index")'
    assert "larder.BlindIndex(" in repr(a)


def test_same_index_as_the_cli(keyring, larder_cli):
    subprocess.run(
        [str(larder_cli), "--keyring", str(keyring), "keys", "add-index"],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    out = subprocess.run(
        [
            str(larder_cli),
            "--keyring",
            str(keyring),
            "index",
            "phone",
            "010-1234-5678",
            "--bits",
            "20",
            "--int",
            "--context",
            "table=customers",
            "--context",
            "column=phone",
        ],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    ctx = {"table": "customers", "column": "phone"}
    ring = larder.LocalKeyring(keyring)
    by_ring = larder.blind_index("01012345678", "phone", key=ring, bits=20, context=ctx)
    by_key = larder.blind_index(
        "010 1234 5678",
        "phone",
        key=larder.BlindIndexKey.from_keyring(keyring),
        bits=20,
        context=ctx,
    )
    assert str(by_ring.int) == out.stdout.decode().strip()
    assert by_key == by_ring


def test_search_removes_false_positives_by_decrypting(keyring, larder_cli):
    """The documented search on a real SQLite table: index column → candidate rows → decrypt →
    compare normalized values. 4 bits on purpose, so false positives are certain."""
    import sqlite3

    ring = larder.LocalKeyring(keyring)
    # A keyring without an index key is a typed error naming the fix.
    with pytest.raises(larder.BlindIndexError, match="add-index"):
        larder.blind_index("010-1234-5678", "phone", key=ring)
    subprocess.run(
        [str(larder_cli), "--keyring", str(keyring), "keys", "add-index"],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    ring = larder.LocalKeyring(keyring)  # the earlier object looked before the key existed
    env = larder.Envelope(ring)
    ctx = {"table": "inquiries", "column": "phone"}
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE inquiries (id INTEGER PRIMARY KEY, phone TEXT, phone_ix INTEGER)")
    db.execute("CREATE INDEX inquiries_phone_ix ON inquiries (phone_ix)")
    phones = [f"010-{i // 10000:04d}-{i % 10000:04d}" for i in range(1, 401)]
    wanted = "010-0000-0123"
    rows = []
    for i, p in enumerate(phones, 1):
        ix = larder.blind_index(p, "phone", key=ring, bits=4, context=ctx).int
        rows.append((i, env.encrypt_text(p, ctx), ix))
    rows.append((1000, env.encrypt_text("01000000123", ctx), rows[122][2]))  # another spelling
    db.executemany("INSERT INTO inquiries VALUES (?, ?, ?)", rows)
    probe = larder.blind_index("010 0000 0123", "phone", key=ring, bits=4, context=ctx).int
    candidates = db.execute(
        "SELECT id, phone FROM inquiries WHERE phone_ix = ?", (probe,)
    ).fetchall()
    target = larder.normalize(wanted, "phone")
    found = sorted(
        i for i, ct in candidates if larder.normalize(env.decrypt_text(ct, ctx), "phone") == target
    )
    assert found == [123, 1000]
    assert len(candidates) > len(found), "4 bits: other numbers share the bucket"
    assert len(candidates) < len(rows) // 4, "the index narrows the scan"


def test_bad_input_is_a_typed_exception():
    key = larder.BlindIndexKey(b"\x07" * 32)
    bad_values = [
        ("", "phone"),
        ("call me", "phone"),
        ("123", "phone"),
        ("no-at-sign", "email"),
        ("a@b@c", "email"),
        ("x" * 2000, "text"),
    ]
    for value, kind in bad_values:
        with pytest.raises(larder.BlindIndexError) as e:
            larder.blind_index(value, kind, key=key)
        assert value not in str(e.value) or value == "", "the value (personal data) is not echoed"
    for kwargs in [
        dict(kind="passport"),
        dict(kind="phone", bits=0),
        dict(kind="phone", bits=257),
        dict(kind="phone", bits=-1),
        dict(kind="phone", part="last0"),
        dict(kind="phone", part="domain"),
        dict(kind="phone", name="has space"),
        dict(),
        dict(kind="phone", fields=[("phone", "full")], name="x"),
        dict(fields=[("phone", "last4"), ("name", "full")]),
    ]:
        with pytest.raises(larder.BlindIndexError):
            larder.blind_index("010-1234-5678", key=key, **kwargs)
    with pytest.raises(larder.BlindIndexError, match="2 field"):
        larder.blind_index(
            "010-1234-5678", key=key, fields=[("phone", "last4"), ("name", "full")], name="c"
        )
    with pytest.raises(larder.BlindIndexError, match="32 bytes"):
        larder.BlindIndexKey(b"short")
    with pytest.raises(larder.BlindIndexError):
        larder.BlindIndexKey(bytes(32))
    with pytest.raises(larder.BlindIndexError):
        larder.normalize("010-1234-5678", "phone", "domain")
    with pytest.raises(larder.KeyringError):
        larder.BlindIndexKey.from_keyring("/nonexistent/keyring")
    assert issubclass(larder.BlindIndexError, larder.LarderError)
    for call in [
        lambda: larder.blind_index(1234, "phone", key=key),
        lambda: larder.blind_index(b"010", "phone", key=key),
        lambda: larder.blind_index(["010", 5], key=key, fields=[("phone", "full")] * 2, name="c"),
        lambda: larder.blind_index("010-1234-5678", "phone", key=b"\x07" * 32),
        lambda: larder.blind_index("010-1234-5678", "phone", key=key, context={"a": 1}),
        lambda: larder.blind_index("010-1234-5678", "phone", key=key, context=[("a", "b")]),
        lambda: larder.blind_index("010-1234-5678", key=key, fields=["phone"], name="c"),
        lambda: larder.BlindIndexKey("not bytes"),
        lambda: larder.BlindIndexKey.from_keyring(42),
    ]:
        with pytest.raises(TypeError):
            call()
