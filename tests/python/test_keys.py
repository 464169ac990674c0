"""Stable keys from Python values: byte-identical with larder-key (docs/key-vectors.json),
every documented Python type, and typed errors for everything else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import uuid
from decimal import Decimal
from typing import Annotated, NamedTuple, Optional

import pytest

import larder

SAMPLE_SECRET = bytes(range(32))


def typed_to_python(t: dict):
    """A vector's `typed` form as the Python value that keys like it (None: no equivalent)."""
    ((kind, v),) = t.items()
    ints = {"u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128"}
    if kind == "unit":
        return None
    if kind == "bool" or kind == "str":
        return v
    if kind in ints:
        return getattr(larder, kind)(int(v))
    if kind == "f64":
        return -0.0 if v == "-0.0" else float(v)
    if kind == "f32":
        return larder.f32(float(v))
    if kind == "char":
        return larder.char(v)
    if kind == "bytes":
        return bytes.fromhex(v)
    if kind == "option":
        return larder.option(None if v is None else typed_to_python(v))
    if kind == "ok":
        return larder.ok(typed_to_python(v))
    if kind == "err":
        return larder.err(typed_to_python(v))
    if kind == "tuple":
        return tuple(typed_to_python(x) for x in v)
    if kind == "seq":
        return [typed_to_python(x) for x in v]
    if kind == "set":
        return {typed_to_python(x) for x in v} if all("str" in x for x in v) else None
    if kind == "map":
        return {typed_to_python(k): typed_to_python(x) for k, x in v}
    if kind == "duration":
        return dt.timedelta(seconds=v["secs"], microseconds=v["nanos"] // 1000)
    if kind == "ipv4":
        return ipaddress.IPv4Address(v)
    if kind == "ipv6":
        return ipaddress.IPv6Address(v)
    if kind == "struct":
        return _struct(v)
    if kind == "tuple_struct":
        return _tuple_struct(v)
    if kind == "unit_struct":

        @larder.stable(name=v["name"], version=v["version"])
        @dataclasses.dataclass
        class Unit:
            pass

        return Unit()
    if kind == "variant":
        return _variant(v)
    raise AssertionError(f"no Python mapping for vector kind {kind}")


def _width(t: dict):
    ((kind, _),) = t.items()
    return Annotated[int, getattr(larder, kind)]


def _struct(v):
    fields = [(name, _width(val)) for name, val in v["fields"]]
    cls = dataclasses.make_dataclass(v["name"], fields)
    larder.stable(name=v["name"], version=v["version"])(cls)
    return cls(*[next(iter(val.values())) for _, val in v["fields"]])


def _tuple_struct(v):
    fields = [(f"f{i}", _width(val)) for i, val in enumerate(v["fields"])]
    cls = dataclasses.make_dataclass(v["name"], fields)
    larder.stable(name=v["name"], version=v["version"], tuple=True)(cls)
    return cls(*[next(iter(val.values())) for val in v["fields"]])


def _variant(v):
    shape = v["shape"]
    if shape == "unit":
        members = enum.Enum(v["name"], [v["variant"]])
        larder.stable(name=v["name"], version=v["version"])(members)
        return members[v["variant"]]
    if shape == "tuple":
        fields = [(f"f{i}", _width(val)) for i, val in enumerate(v["fields"])]
        values = [next(iter(val.values())) for val in v["fields"]]
    else:
        fields = [(name, _width(val)) for name, val in v["fields"]]
        values = [next(iter(val.values())) for _, val in v["fields"]]
    cls = dataclasses.make_dataclass(v["variant"], fields)
    larder.stable(
        name=v["name"], version=v["version"], variant=v["variant"], tuple=shape == "tuple"
    )(cls)
    return cls(*values)


def test_every_key_vector(key_vectors):
    checked = 0
    for vec in key_vectors["vectors"]:
        value = vec["json"] if vec["typed"] is None else typed_to_python(vec["typed"])
        plain = larder.KeySpace(vec["namespace"], vec["version"])
        keyed = larder.KeySpace(vec["namespace"], vec["version"], secret=SAMPLE_SECRET)
        assert plain.encode(value).hex() == vec["encoding_hex"], vec["name"]
        assert plain.key(value) == vec["key_default"], vec["name"]
        assert keyed.key(value) == vec["key_sample_secret"], vec["name"]
        # The hex form of the secret is the same secret.
        hex_keyed = larder.KeySpace(vec["namespace"], vec["version"], secret=SAMPLE_SECRET.hex())
        assert hex_keyed.key(value) == vec["key_sample_secret"]
        checked += 1
    # Every vector has a Python equivalent.
    assert checked == len(key_vectors["vectors"]) == 39


def test_schema_id_examples(key_vectors):
    examples = {e["description"]: e["header_hex"] for e in key_vectors["schema_ids"]["examples"]}
    s = larder._larder.Schema(
        "struct",
        "LoanQuote",
        1,
        [(n, ("dyn",)) for n in ("user_id", "amount_won", "rate_bp", "term_months")],
    )
    assert s.header().hex() == examples["LoanQuote v1"]
    assert (
        larder._larder.Schema("tuple_struct", "Point", 1, [("a", ("dyn",)), ("b", ("dyn",))])
        .header()
        .hex()
        == examples["Point v1 (tuple struct, 2 fields)"]
    )
    assert (
        larder._larder.Schema("unit_struct", "Anonymous", 1, []).header().hex()
        == examples["Anonymous v1 (unit struct)"]
    )
    assert (
        larder._larder.Schema(
            "variant_named", "Shape", 1, [("w", ("dyn",)), ("h", ("dyn",))], "Rect"
        )
        .header()
        .hex()
        == examples["Shape v1 variant Rect { w, h }"]
    )


@larder.stable(name="LoanQuote", version=1)
@dataclasses.dataclass
class LoanQuote:
    user_id: int
    amount_won: int
    rate_bp: Annotated[int, larder.u32]
    term_months: Annotated[int, larder.u32]


@larder.stable(name="LoanQuote", version=1)
class LoanQuoteTuple(NamedTuple):
    user_id: Annotated[int, larder.u64]
    amount_won: Annotated[int, larder.u64]
    rate_bp: Annotated[int, larder.u32]
    term_months: Annotated[int, larder.u32]


def test_loan_quote_matches_rust_derive(key_vectors):
    rust = next(v for v in key_vectors["vectors"] if v["name"] == "derive_loan_quote")
    ks = larder.KeySpace("loan_calc", 1)
    assert ks.key(LoanQuote(7, 5_000_000, 450, 36)) == rust["key_default"]
    assert ks.key(LoanQuoteTuple(7, 5_000_000, 450, 36)) == rust["key_default"]
    # A width that disagrees with Rust gives another key; renaming the class keeps it.
    assert ks.encode(LoanQuote(7, 5_000_000, 450, 36)).hex() == rust["encoding_hex"]


def test_pydantic_model():
    import pydantic  # scripts/test.sh installs it; a missing pydantic fails here

    @larder.stable(name="LoanQuote", version=1)
    class Quote(pydantic.BaseModel):
        user_id: int
        amount_won: int
        rate_bp: Annotated[int, larder.u32]
        term_months: Annotated[int, larder.u32]

    ks = larder.KeySpace("loan_calc", 1)
    assert ks.key(Quote(user_id=7, amount_won=5_000_000, rate_bp=450, term_months=36)) == ks.key(
        LoanQuote(7, 5_000_000, 450, 36)
    )


def test_optional_skip_and_containers():
    @larder.stable(name="Req", version=3)
    @dataclasses.dataclass
    class Req:
        a: Optional[Annotated[int, larder.u32]]
        tags: list[str]
        limits: dict[str, Annotated[int, larder.u16]]
        note: Annotated[str, larder.skip] = ""

    ks = larder.KeySpace("t", 1)
    r1 = ks.encode(Req(None, ["x"], {"k": 1}, note="one"))
    r2 = ks.encode(Req(None, ["x"], {"k": 1}, note="two"))
    assert r1 == r2  # skipped field
    body = r1[17:]
    assert body[:1] == b"\x20"  # None as Option::None
    assert ks.encode(Req(5, [], {}))[17:22] == b"\x21\x04\x05\x00\x00"  # Some(5u32)
    with pytest.raises(larder.KeyEncodingError, match="out of range"):
        ks.key(Req(None, [], {"k": 70000}))
    with pytest.raises(TypeError, match="Req.a"):
        ks.key(Req("five", [], {}))


def test_json_model_types():
    ks = larder.KeySpace("t", 1)
    assert ks.encode(None).hex() == "24"
    assert ks.encode(True).hex() == "0101"
    assert ks.encode(1).hex() == "05" + "01" + "00" * 7  # int >= 0: u64
    assert ks.encode(-1).hex() == "0a" + "ff" * 8  # int < 0: i64
    assert ks.encode(2**64 - 1).hex() == "05" + "ff" * 8
    assert ks.encode(2**64)[:1] == b"\x06"  # beyond u64: u128
    assert ks.encode(-(2**63) - 1)[:1] == b"\x0b"  # beyond i64: i128
    with pytest.raises(larder.KeyEncodingError, match="out of range"):
        ks.key(2**128)
    assert ks.encode(-0.0) == ks.encode(0.0)
    assert ks.key(1) != ks.key(1.0) != ks.key(True)
    assert ks.key([1, 2]) != ks.key((1, 2))
    assert ks.key("ab") != ks.key(b"ab")
    assert ks.key({"a": 1, "b": 2}) == ks.key({"b": 2, "a": 1})
    assert ks.key({1, 2, 3}) == ks.key({3, 2, 1}) == ks.key(frozenset([2, 3, 1]))
    assert ks.key(()) == ks.key(None)  # Python's () is Rust's (), like None
    assert ks.key((1,)) != ks.key(1)


def test_decimal_is_normalized():
    ks = larder.KeySpace("t", 1)
    assert ks.key(Decimal("1.50")) == ks.key(Decimal("1.5"))
    assert ks.key(Decimal("100")) == ks.key(Decimal("1E+2"))
    assert ks.key(Decimal("-0.0")) == ks.key(Decimal("0"))
    # rust_decimal's layout: i128 mantissa, u32 scale.
    assert (
        ks.encode(Decimal("-12.345")).hex()
        == "63" + (-12345).to_bytes(16, "little", signed=True).hex() + "03000000"
    )
    for bad in ("NaN", "Infinity", "1E-40", "1E+40"):
        with pytest.raises(larder.KeyEncodingError):
            ks.key(Decimal(bad))


def test_datetimes():
    ks = larder.KeySpace("t", 1)
    utc = dt.timezone.utc
    seoul = dt.timezone(dt.timedelta(hours=9))
    a = dt.datetime(2026, 11, 30, 9, 0, tzinfo=seoul)
    b = dt.datetime(2026, 11, 30, 0, 0, tzinfo=utc)
    assert ks.key(a) == ks.key(b)  # aware: the instant
    naive = dt.datetime(2026, 11, 30, 0, 0)
    assert ks.key(naive) != ks.key(b)  # naive: another tag
    assert ks.encode(b)[:1] == b"\x61" and ks.encode(naive)[:1] == b"\x64"
    secs = int(b.timestamp())
    assert ks.encode(b)[1:9] == secs.to_bytes(8, "little", signed=True)
    pre = dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=utc)
    assert (
        ks.encode(pre)[1:].hex()
        == (-1).to_bytes(8, "little", signed=True).hex() + (500_000_000).to_bytes(4, "little").hex()
    )
    assert (
        ks.encode(dt.date(2026, 11, 30)).hex() == "62" + (2026).to_bytes(4, "little").hex() + "0b1e"
    )
    assert ks.key(dt.time(9, 30)) != ks.key(dt.time(9, 31))
    with pytest.raises(larder.KeyEncodingError, match="tzinfo"):
        ks.key(dt.time(9, 30, tzinfo=utc))
    assert ks.encode(dt.timedelta(seconds=1.5)).hex() == "50" + "0100000000000000" + "0065cd1d"
    with pytest.raises(larder.KeyEncodingError, match="negative"):
        ks.key(dt.timedelta(seconds=-1))


def test_uuid_enum_ip():
    ks = larder.KeySpace("t", 1)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert ks.encode(u) == b"\x60" + u.bytes

    @larder.stable(name="Color", version=1)
    class Color(enum.Enum):
        RED = 1
        GREEN = 2

    assert ks.key(Color.RED) != ks.key(Color.GREEN)
    assert ks.encode(Color.RED)[:1] == b"\x43"

    class Plain(enum.Enum):
        A = 1

    with pytest.raises(TypeError, match="larder.stable"):
        ks.key(Plain.A)
    assert ks.encode(ipaddress.ip_address("10.0.0.1")).hex() == "510a000001"


def test_unsupported_types_are_type_errors():
    ks = larder.KeySpace("t", 1)

    @dataclasses.dataclass
    class NoSchema:
        a: int

    with pytest.raises(TypeError, match=r"@larder.stable\(name=\"NoSchema\""):
        ks.key(NoSchema(1))
    with pytest.raises(TypeError, match="object"):
        ks.key(object())
    with pytest.raises(TypeError, match="function"):
        ks.key([1, lambda: 0])
    with pytest.raises(larder.KeyEncodingError, match="NaN"):
        ks.key({"x": float("nan")})
    loop: list = []
    loop.append(loop)
    with pytest.raises(larder.KeyEncodingError, match="deeper"):
        ks.key(loop)
    small = larder.KeySpace("t", 1, max_encoded_len=64)
    with pytest.raises(larder.KeyEncodingError, match="64 bytes"):
        small.key("x" * 100)
    with pytest.raises(larder.KeyEncodingError, match="64 bytes"):
        small.key({"k": "x" * 100})
    with pytest.raises(larder.KeyEncodingError, match="256 items|at most 255"):
        ks.key(tuple(range(256)))
    with pytest.raises(larder.KeyEncodingError, match="surrogate"):
        ks.key("\ud800")
    with pytest.raises(TypeError, match="Rust u32"):
        ks.key(larder.u32("7"))
    with pytest.raises(larder.KeyEncodingError, match="out of range"):
        ks.key(larder.u8(256))


def test_key_space_arguments():
    with pytest.raises(larder.KeyEncodingError, match="namespace"):
        larder.KeySpace("Loan Calc", 1)
    with pytest.raises(TypeError, match="namespace must be a str"):
        larder.KeySpace(b"x", 1)
    with pytest.raises(TypeError, match="version must be an int"):
        larder.KeySpace("x", "1")
    with pytest.raises(larder.KeyEncodingError, match="version"):
        larder.KeySpace("x", 2**32)
    with pytest.raises(larder.KeyEncodingError, match="16 bytes"):
        larder.KeySpace("x", 1, secret=b"short")
    with pytest.raises(TypeError, match="secret must be bytes"):
        larder.KeySpace("x", 1, secret=12)
    ks = larder.KeySpace("x.y-z_9", 4294967295)
    assert ks.key(1).startswith("x.y-z_9:v4294967295:")
    assert issubclass(larder.KeyEncodingError, larder.LarderError)
