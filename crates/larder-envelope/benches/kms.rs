//! What the AWS KMS keyring costs per call, and what the data-key cache saves, against a real
//! moto KMS server on loopback (started by the bench; needs `moto_server`, see scripts/test.sh).
//!
//! ```text
//! cargo bench -p larder-envelope --bench kms -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `sdk_generate_data_key` vs `keyring_generate_data_key`: the bare SDK call against the
//!   keyring's (retry loop, per-call timeout/retry override, response checks, zeroizing copy);
//! - `envelope_encrypt/no_cache` (one `GenerateDataKey` per message, Tink's KMS envelope AEAD
//!   model) vs `envelope_encrypt/cached` (larder's default);
//! - `envelope_decrypt/no_cache` (one `Decrypt` per message) vs `envelope_decrypt/cached`.
//!
//! moto is a Python server, so a request costs milliseconds here; real KMS in-region is of the
//! same order. The ratios, not the absolute times, are what docs/benchmarks.md reports.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use larder_envelope::aws_sdk_kms::types::DataKeySpec;
use larder_envelope::{AwsKmsKeyring, EncryptionContext, Envelope, Keyring};
use larder_testkit::moto::MotoServer;

const PHONE: &[u8] = b"010-1234-5678";

fn kms(c: &mut Criterion) {
    let moto = MotoServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let key = rt.block_on(moto.create_key());
    let client = moto.kms_client();
    let keyring = AwsKmsKeyring::new(moto.kms_client(), &key);
    let ctx = EncryptionContext::new().with("table", "inquiries").with("column", "phone");
    let cached = Envelope::builder(AwsKmsKeyring::new(moto.kms_client(), &key)).build();
    let no_cache = Envelope::builder(AwsKmsKeyring::new(moto.kms_client(), &key)).no_cache().build();
    let stored = rt.block_on(cached.encrypt(PHONE, &ctx)).unwrap();

    let mut g = c.benchmark_group("kms");
    g.bench_function("sdk_generate_data_key", |b| {
        b.iter(|| {
            let out = rt
                .block_on(
                    client
                        .generate_data_key()
                        .key_id(&key)
                        .key_spec(DataKeySpec::Aes256)
                        .encryption_context("table", "inquiries")
                        .encryption_context("column", "phone")
                        .send(),
                )
                .unwrap();
            black_box(out);
        })
    });
    g.bench_function("keyring_generate_data_key", |b| {
        b.iter(|| black_box(rt.block_on(keyring.generate_data_key(&ctx)).unwrap()))
    });
    g.bench_function("envelope_encrypt/no_cache", |b| {
        b.iter(|| black_box(rt.block_on(no_cache.encrypt(PHONE, &ctx)).unwrap()))
    });
    g.bench_function("envelope_encrypt/cached", |b| {
        b.iter(|| black_box(rt.block_on(cached.encrypt(PHONE, &ctx)).unwrap()))
    });
    g.bench_function("envelope_decrypt/no_cache", |b| {
        b.iter(|| black_box(rt.block_on(no_cache.decrypt(&stored, &ctx)).unwrap()))
    });
    g.bench_function("envelope_decrypt/cached", |b| {
        b.iter(|| black_box(rt.block_on(cached.decrypt(&stored, &ctx)).unwrap()))
    });
    g.finish();
    eprintln!(
        "moto requests during the run: GenerateDataKey {}, Decrypt {}",
        moto.count_requests("GenerateDataKey"),
        moto.count_requests("Decrypt")
    );
}

criterion_group!(benches, kms);
criterion_main!(benches);
