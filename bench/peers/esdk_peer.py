"""Python AWS Encryption SDK (PyPI aws-encryption-sdk 4.x) side of the larder peer comparison.

Uses only the SDK's public API: a raw AES master key provider (RawMasterKeyProvider, AES-256-GCM
wrapping), the caching CMM (CachingCryptoMaterialsManager + LocalCryptoMaterialsCache) and the
committing suite without signing (AES_256_GCM_HKDF_SHA512_COMMIT_KEY).

    python esdk_peer.py throughput [rounds]       # warm encrypt/decrypt of "010-1234-5678"
    python esdk_peer.py cold [threads] [trials]   # cold-cache data-key generations, 5 ms each

One JSON object per line on stdout (same shape as the Rust harness); run by
scripts/bench-peers.sh.
"""

import json
import statistics
import sys
import threading
import time
from importlib.metadata import version

import aws_encryption_sdk
from aws_encryption_sdk import CachingCryptoMaterialsManager, CommitmentPolicy, LocalCryptoMaterialsCache
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyProvider

PHONE = b"010-1234-5678"
WRAPPING_KEY = bytes([0x42]) * 32  # fixed benchmark key, same as the Rust harness
KEYRING_DELAY_S = 0.005
CONTEXT = {"table": "inquiries", "column": "phone"}
SUITE = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
SDK_VERSION = version("aws-encryption-sdk")


class BenchRawProvider(RawMasterKeyProvider):
    """Raw AES master key provider holding one fixed benchmark key."""

    provider_id = "larder-bench"

    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=WRAPPING_KEY,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.generations = 0
        self.decrypts = 0


COUNTER = Counter()


class SlowCountingRawMasterKey(RawMasterKey):
    """The SDK's raw AES master key, counting and sleeping 5 ms (KMS-like) per data-key call."""

    def generate_data_key(self, algorithm, encryption_context):
        with COUNTER.lock:
            COUNTER.generations += 1
        time.sleep(KEYRING_DELAY_S)
        return super().generate_data_key(algorithm, encryption_context)

    def decrypt_data_key(self, encrypted_data_key, algorithm, encryption_context):
        with COUNTER.lock:
            COUNTER.decrypts += 1
        time.sleep(KEYRING_DELAY_S)
        return super().decrypt_data_key(encrypted_data_key, algorithm, encryption_context)


class SlowCountingProvider(BenchRawProvider):
    # The SDK's documented hook for the master key class a raw provider returns.
    _master_key_class = SlowCountingRawMasterKey


def make_cmm(provider_cls):
    provider = provider_cls()
    provider.add_master_key(b"k1")
    return CachingCryptoMaterialsManager(
        master_key_provider=provider,
        cache=LocalCryptoMaterialsCache(capacity=1000),
        max_age=300.0,
        max_messages_encrypted=1 << 20,
    )


def client():
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


def rate(batch, f):
    t = time.perf_counter()
    for _ in range(batch):
        f()
    return batch / (time.perf_counter() - t)


def throughput(rounds):
    sdk = client()
    cmm = make_cmm(BenchRawProvider)

    def enc(ctx=CONTEXT):
        ct, _ = sdk.encrypt(source=PHONE, materials_manager=cmm, encryption_context=ctx, algorithm=SUITE)
        return ct

    def dec(ct):
        # With a master key provider the 4.x SDK takes no expected context on decrypt; the
        # stored context is in the returned header (checked once below).
        pt, header = sdk.decrypt(source=ct, materials_manager=cmm)
        return pt, header

    ct = enc()  # warms the cache
    pt, header = dec(ct)
    assert pt == PHONE and all(header.encryption_context.get(k) == v for k, v in CONTEXT.items())
    ct_empty = enc({})
    encs, decs = [], []
    for _ in range(rounds):
        encs.append(rate(1000, enc))
        decs.append(rate(1000, lambda: dec(ct)))
    for op, samples, extra in (
        ("encrypt", encs, {"ciphertext_bytes": len(ct), "ciphertext_bytes_empty_context": len(ct_empty)}),
        ("decrypt", decs, {"ciphertext_bytes": None}),
    ):
        row = {
            "impl": "aws-esdk-python",
            "version": SDK_VERSION,
            "op": op,
            "ops_per_s": round(statistics.median(samples)),
            "rounds": [round(s) for s in samples],
        }
        row.update(extra)
        print(json.dumps(row), flush=True)


def cold(threads, trials):
    sdk = client()
    for trial in range(1, trials + 1):
        cmm = make_cmm(SlowCountingProvider)  # fresh, empty cache
        with COUNTER.lock:
            COUNTER.generations = 0
            COUNTER.decrypts = 0
        barrier = threading.Barrier(threads)
        results = [None] * threads

        def work(i):
            barrier.wait()
            ct, _ = sdk.encrypt(source=PHONE, materials_manager=cmm, encryption_context=CONTEXT, algorithm=SUITE)
            results[i] = ct

        t = time.perf_counter()
        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        ms = (time.perf_counter() - t) * 1e3
        ok = sum(r is not None for r in results)
        row = {
            "impl": "aws-esdk-python",
            "version": SDK_VERSION,
            "op": "cold",
            "threads": threads,
            "trial": trial,
            "ok": ok,
            "generations": COUNTER.generations,
            "decrypt_calls": COUNTER.decrypts,
            "ms": round(ms, 1),
        }
        print(json.dumps(row), flush=True)


def main():
    args = sys.argv[1:]
    if args[:1] == ["throughput"]:
        throughput(int(args[1]) if len(args) > 1 else 5)
    elif args[:1] == ["cold"]:
        cold(int(args[1]) if len(args) > 1 else 100, int(args[2]) if len(args) > 2 else 5)
    else:
        sys.exit("usage: esdk_peer.py throughput [rounds] | cold [threads] [trials]")


if __name__ == "__main__":
    main()
