"""A Rust process (`larder key`) and this Python process compute keys for the same values."""

from __future__ import annotations

import json
import subprocess

import pytest

import larder

VALUES = [
    {"user_id": 7, "amount_won": 5000000},
    None,
    True,
    False,
    0,
    1,
    -1,
    2**63,
    2**64 - 1,
    -(2**63),
    0.25,
    -0.0,
    1e300,
    1.5e-300,
    0.1,
    "",
    'héllo 한글 \u0000 "quoted"',
    [],
    [[]],
    [1, "1", [], {}],
    {"": None, "k": [False, {"n": -3}]},
    {"b": 2, "a": 1, "ccc": [1.5, "x"]},
    list(range(100)),
    {f"k{i}": i for i in range(40)},
]

SECRET_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def rust_key(cli, namespace: str, version: int, value, secret: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if secret:
        env["LARDER_KEY_SECRET"] = secret
    out = subprocess.run(
        [
            str(cli),
            "key",
            "--namespace",
            namespace,
            "--version",
            str(version),
            "--json",
            json.dumps(value),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("index", range(len(VALUES)))
def test_same_key_as_the_rust_cli(larder_cli, index):
    value = VALUES[index]
    assert larder.KeySpace("loan_calc", 1).key(value) == rust_key(larder_cli, "loan_calc", 1, value)
    assert larder.KeySpace("x.y", 7, secret=SECRET_HEX).key(value) == rust_key(
        larder_cli, "x.y", 7, value, SECRET_HEX
    )


def test_issue_example(larder_cli):
    py = larder.KeySpace("loan_calc", 1).key({"user_id": 7, "amount_won": 5000000})
    assert py == "loan_calc:v1:k643e2wvx7rcsfyuy3tqyfbuykeoyfkm"
    assert py == rust_key(larder_cli, "loan_calc", 1, {"amount_won": 5000000, "user_id": 7})
