"""larder.Envelope: local keyring and AWS KMS (moto), interop with the `larder` CLI both
ways, typed errors for bad input, and seed B (100 threads, exactly one GenerateDataKey)."""

from __future__ import annotations

import base64
import subprocess
import threading

import pytest

import larder

CTX = {"table": "t", "column": "phone"}


def cli(larder_cli, *args, input: bytes, env_extra=None):
    env = {"PATH": "/usr/bin:/bin"}
    env.update(env_extra or {})
    out = subprocess.run(
        [str(larder_cli), *args], input=input, capture_output=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def ctx_args(ctx):
    out = []
    for k, v in ctx.items():
        out += ["--context", f"{k}={v}"]
    return out


def test_issue_example(keyring):
    env = larder.Envelope(larder.LocalKeyring(str(keyring)))
    ct = env.encrypt_text("010-1234-5678", {"table": "t", "column": "phone"})
    assert ct.startswith("lv1.")
    assert env.decrypt_text(ct, {"table": "t", "column": "phone"}) == "010-1234-5678"
    assert larder.mask.phone("010-1234-5678") == "010-****-5678"
    raw = env.encrypt(b"\x00\xffbinary", CTX)
    assert env.decrypt(raw, CTX) == b"\x00\xffbinary"
    s = env.stats()
    assert s["generate_calls"] == 1 and s["encrypt_cache_hits"] == 1


def test_interop_with_the_cli_local(keyring, larder_cli):
    env = larder.Envelope(larder.LocalKeyring(keyring))
    ct = env.encrypt_text("010-1234-5678", CTX)
    out = cli(
        larder_cli,
        "decrypt",
        "--keyring",
        str(keyring),
        "--text",
        *ctx_args(CTX),
        input=ct.encode(),
    )
    assert out.decode().strip() == "010-1234-5678"
    rust_ct = cli(
        larder_cli,
        "encrypt",
        "--keyring",
        str(keyring),
        "--text",
        *ctx_args(CTX),
        input=b"hong@example.com",
    )
    assert env.decrypt_text(rust_ct.decode().strip(), CTX) == "hong@example.com"
    rust_bin = cli(
        larder_cli, "encrypt", "--keyring", str(keyring), *ctx_args(CTX), input=b"\x01\x02\x03"
    )
    assert env.decrypt(rust_bin, CTX) == b"\x01\x02\x03"


def test_context_and_tampering_are_decryption_errors(keyring):
    env = larder.Envelope(larder.LocalKeyring(keyring))
    raw = env.encrypt(b"010-1234-5678", CTX)
    with pytest.raises(larder.DecryptionError):
        env.decrypt(raw, {"table": "t", "column": "email"})
    with pytest.raises(larder.DecryptionError):
        env.decrypt(raw, None)
    # Every single-bit flip and every truncation: an error, never a (possibly empty) plaintext.
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= bit
            with pytest.raises(larder.DecryptionError):
                env.decrypt(bytes(bad), CTX)
    for n in range(len(raw)):
        with pytest.raises(larder.DecryptionError):
            env.decrypt(raw[:n], CTX)
    for junk in [
        "",
        "lv1.",
        "lv1.!!!",
        "nope",
        "lv1." + base64.urlsafe_b64encode(b"x" * 80).decode(),
    ]:
        with pytest.raises(larder.DecryptionError):
            env.decrypt_text(junk, CTX)
    assert issubclass(larder.DecryptionError, larder.EnvelopeError)
    assert issubclass(larder.EnvelopeError, larder.LarderError)


def test_wrong_types_are_type_errors(keyring):
    env = larder.Envelope(larder.LocalKeyring(keyring))
    with pytest.raises(TypeError, match="encrypt_text"):
        env.encrypt("str", CTX)
    with pytest.raises(TypeError, match="must be str"):
        env.encrypt_text(b"bytes", CTX)
    with pytest.raises(TypeError, match="dict of str"):
        env.encrypt_text("x", [("table", "t")])
    with pytest.raises(TypeError, match="must be str"):
        env.encrypt_text("x", {"table": 1})
    with pytest.raises(TypeError, match="LocalKeyring or larder.AwsKmsKeyring"):
        larder.Envelope("/path/keyring")
    with pytest.raises(ValueError):
        larder.Envelope(larder.LocalKeyring(keyring), max_messages=0)


def test_bad_keyring_files(tmp_path):
    with pytest.raises(larder.KeyringError):
        larder.LocalKeyring(tmp_path / "missing")
    p = tmp_path / "garbage"
    p.write_bytes(b"not a keyring")
    p.chmod(0o600)
    with pytest.raises(larder.KeyringError):
        larder.LocalKeyring(p)
    with pytest.raises(larder.KeyringError):
        larder.LocalKeyring.init(tmp_path)  # a directory exists there


def test_limits(keyring):
    env = larder.Envelope(larder.LocalKeyring(keyring), max_messages=10)
    cts = [env.encrypt_text(f"010-0000-{i:04d}", CTX) for i in range(25)]
    assert env.stats()["generate_calls"] == 3
    assert [env.decrypt_text(c, CTX) for c in cts] == [f"010-0000-{i:04d}" for i in range(25)]


def test_masks():
    assert larder.mask.phone("010-1234-5678") == "010-****-5678"
    assert larder.mask.name("홍길동") == "홍*동"
    assert larder.mask.email("hong@example.com").endswith("@example.com")
    with pytest.raises(larder.MaskError):
        larder.mask.phone("not a phone")
    with pytest.raises(TypeError):
        larder.mask.phone(12345)


def test_kms_round_trip_and_cli_interop(moto, larder_cli):
    key = moto.create_key()
    env = larder.Envelope(larder.AwsKmsKeyring(key, endpoint_url=moto.endpoint, region="us-east-1"))
    ct = env.encrypt_text("010-1234-5678", CTX)
    assert env.decrypt_text(ct, CTX) == "010-1234-5678"
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    kms = ["--kms", f"aws:{key}", "--kms-endpoint", moto.endpoint]
    out = cli(
        larder_cli, "decrypt", *kms, "--text", *ctx_args(CTX), input=ct.encode(), env_extra=aws_env
    )
    assert out.decode().strip() == "010-1234-5678"
    rust_ct = cli(
        larder_cli,
        "encrypt",
        *kms,
        "--text",
        *ctx_args(CTX),
        input=b"01099998888",
        env_extra=aws_env,
    )
    assert env.decrypt_text(rust_ct.decode().strip(), CTX) == "01099998888"
    with pytest.raises(larder.DecryptionError):
        env.decrypt_text(ct, {"table": "other"})


def test_kms_unreachable_is_a_keyring_error():
    env = larder.Envelope(
        larder.AwsKmsKeyring(
            "arn:aws:kms:us-east-1:123456789012:key/x",
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
        )
    )
    with pytest.raises(larder.KeyringError):
        env.encrypt_text("x", CTX)


def test_seed_b_100_threads_one_generate_data_key(moto):
    """100 Python threads x 1,000 round trips on a cold envelope: exactly one
    GenerateDataKey (by the envelope's counters and by moto's own request log)."""
    key = moto.create_key()
    before = moto.count("GenerateDataKey")
    env = larder.Envelope(larder.AwsKmsKeyring(key, endpoint_url=moto.endpoint, region="us-east-1"))
    start = threading.Barrier(100)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(1000):
                phone = f"010-{t:04d}-{i:04d}"
                ct = env.encrypt_text(phone, CTX)
                assert env.decrypt_text(ct, CTX) == phone
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    s = env.stats()
    assert s["generate_calls"] == 1, s
    assert moto.count("GenerateDataKey") - before == 1
    # The cold burst's first calls wait for the one generation (counted as misses).
    assert s["encrypt_cache_hits"] + s["encrypt_cache_misses"] == 100 * 1000
    assert s["encrypt_cache_misses"] <= 100
