//! Peer harness for larder-envelope: larder vs the crates.io `aws-esdk` (AWS Encryption SDK for
//! Rust), calling only each library's public API. Driven by `scripts/bench-peers.sh`, which runs
//! this and `bench/peers/esdk_peer.py` (Python SDK) in one run and prints the ratios.
//!
//! ```text
//! larder-bench-peers throughput <rounds>   # warm encrypt/decrypt of "010-1234-5678", JSON lines
//! larder-bench-peers cold <threads> <trials> # cold-cache keyring calls, 5 ms per generation
//! ```
//!
//! Every result is one JSON object per line on stdout; human notes go to stderr.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aws_esdk::client as esdk_client;
use aws_esdk::material_providers::client as mpl_client;
use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
use aws_esdk::material_providers::types::AesWrappingAlg;
use aws_esdk::material_providers::types::EsdkAlgorithmSuiteId;
use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;
use larder_envelope::{
    BlockingEnvelope, BoxFuture, DataKey, EncryptedDataKey, EncryptionContext, Envelope, EnvelopeError,
    GeneratedKey, Keyring, KeyringKind, LocalKeyring,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PHONE: &[u8] = b"010-1234-5678";
/// Fixed benchmark wrapping key (not a secret: benchmark only).
const WRAPPING_KEY: [u8; 32] = [0x42; 32];
/// Per-generation latency of the cold-cache test (KMS-like).
const KEYRING_DELAY: Duration = Duration::from_millis(5);

fn larder_ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}

fn esdk_ctx() -> HashMap<String, String> {
    HashMap::from([
        ("table".to_string(), "inquiries".to_string()),
        ("column".to_string(), "phone".to_string()),
    ])
}

/// Runs `f` `batch` times; returns ops/s.
fn rate(batch: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        f();
    }
    f64::from(batch) / t.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn emit(implementation: &str, op: &str, samples: &mut [f64], bytes: Option<usize>, extra: &str) {
    let med = median(samples);
    let all: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
    let bytes = bytes.map_or("null".to_string(), |b| b.to_string());
    println!(
        "{{\"impl\":\"{implementation}\",\"op\":\"{op}\",\"ops_per_s\":{med:.0},\"rounds\":[{}],\"ciphertext_bytes\":{bytes}{extra}}}",
        all.join(",")
    );
}

struct Esdk {
    rt: tokio::runtime::Runtime,
    client: esdk_client::Client,
    keyring: aws_esdk::material_providers::types::keyring::KeyringRef,
}

impl Esdk {
    fn new() -> Result<Self, BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = esdk_client::Client::from_conf(AwsEncryptionSdkConfig::builder().build()?)?;
        let mpl = mpl_client::Client::from_conf(MaterialProvidersConfig::builder().build()?)?;
        let keyring = rt.block_on(
            mpl.create_raw_aes_keyring()
                .key_namespace("larder-bench")
                .key_name("k1")
                .wrapping_key(WRAPPING_KEY.to_vec())
                .wrapping_alg(AesWrappingAlg::AlgAes256GcmIv12Tag16)
                .send(),
        )?;
        Ok(Esdk { rt, client, keyring })
    }

    fn encrypt(&self, pt: &[u8], ctx: &HashMap<String, String>) -> Result<Vec<u8>, BoxError> {
        let out = self.rt.block_on(
            self.client
                .encrypt()
                .plaintext(pt)
                .keyring(self.keyring.clone())
                .encryption_context(ctx.clone())
                .algorithm_suite_id(EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey)
                .send(),
        )?;
        Ok(out.ciphertext.ok_or("aws-esdk returned no ciphertext")?.into_inner())
    }

    fn decrypt(&self, ct: &[u8], ctx: &HashMap<String, String>) -> Result<Vec<u8>, BoxError> {
        let out = self.rt.block_on(
            self.client
                .decrypt()
                .ciphertext(ct)
                .keyring(self.keyring.clone())
                .encryption_context(ctx.clone())
                .send(),
        )?;
        Ok(out.plaintext.ok_or("aws-esdk returned no plaintext")?.into_inner())
    }
}

fn throughput(rounds: usize) -> Result<(), BoxError> {
    let ctx = larder_ctx();
    let larder =
        BlockingEnvelope::new(Envelope::builder(LocalKeyring::from_key_bytes("k1", WRAPPING_KEY)?).build())?;
    let larder_ct = larder.encrypt(PHONE, &ctx)?; // warms the data-key cache
    assert_eq!(&larder.decrypt(&larder_ct, &ctx)?[..], PHONE);
    let larder_ct_empty = larder.encrypt(PHONE, &EncryptionContext::new())?;

    let ectx = esdk_ctx();
    let esdk = Esdk::new()?;
    let esdk_ct = esdk.encrypt(PHONE, &ectx)?;
    if esdk.decrypt(&esdk_ct, &ectx)? != PHONE {
        return Err("aws-esdk round trip mismatch".into());
    }
    let esdk_ct_empty = esdk.encrypt(PHONE, &HashMap::new())?;

    // Interleaved rounds: each round measures all four operations back to back, so load from
    // other processes hits them alike. Batches last ≈ 0.2–0.5 s each.
    let (mut le, mut ld, mut ee, mut ed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        le.push(rate(200_000, || drop(black_box(larder.encrypt(black_box(PHONE), &ctx).unwrap()))));
        ld.push(rate(200_000, || drop(black_box(larder.decrypt(black_box(&larder_ct), &ctx).unwrap()))));
        ee.push(rate(1_000, || drop(black_box(esdk.encrypt(black_box(PHONE), &ectx).unwrap()))));
        ed.push(rate(1_000, || drop(black_box(esdk.decrypt(black_box(&esdk_ct), &ectx).unwrap()))));
    }
    let st = larder.stats();
    let le_extra = format!(
        ",\"ciphertext_bytes_empty_context\":{},\"keyring_generate_calls\":{},\"keyring_decrypt_calls\":{}",
        larder_ct_empty.len(),
        st.generate_calls,
        st.decrypt_calls
    );
    let ee_extra = format!(",\"ciphertext_bytes_empty_context\":{}", esdk_ct_empty.len());
    emit("larder", "encrypt", &mut le, Some(larder_ct.len()), &le_extra);
    emit("larder", "decrypt", &mut ld, None, "");
    emit("aws-esdk-rust", "encrypt", &mut ee, Some(esdk_ct.len()), &ee_extra);
    emit("aws-esdk-rust", "decrypt", &mut ed, None, "");
    Ok(())
}

/// The real local keyring inside, with a count and a 5 ms sleep before every call.
struct SlowCountingKeyring {
    inner: LocalKeyring,
    generates: AtomicUsize,
    decrypts: AtomicUsize,
}

impl Keyring for SlowCountingKeyring {
    fn kind(&self) -> KeyringKind {
        self.inner.kind()
    }

    fn primary_key_id(&self) -> String {
        self.inner.primary_key_id()
    }

    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        Box::pin(async move {
            self.generates.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(KEYRING_DELAY).await;
            self.inner.generate_data_key(context).await
        })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        Box::pin(async move {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(KEYRING_DELAY).await;
            self.inner.decrypt_data_key(edk, context).await
        })
    }
}

/// `threads` OS threads released together by a barrier each encrypt once on a fresh (cold)
/// envelope; counts the keyring's generate calls. One JSON line per trial.
fn cold(threads: usize, trials: usize) -> Result<(), BoxError> {
    for trial in 1..=trials {
        let keyring = Arc::new(SlowCountingKeyring {
            inner: LocalKeyring::from_key_bytes("k1", WRAPPING_KEY)?,
            generates: AtomicUsize::new(0),
            decrypts: AtomicUsize::new(0),
        });
        let envelope = BlockingEnvelope::new(Envelope::builder(keyring.clone()).build())?;
        let ctx = larder_ctx();
        let barrier = Barrier::new(threads);
        let t = Instant::now();
        let results: Vec<Result<Vec<u8>, EnvelopeError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        envelope.encrypt(PHONE, &ctx)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("encrypt thread panicked")).collect()
        });
        let elapsed = t.elapsed();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        // Every ciphertext must open (checks the single generated key served everyone).
        for r in results.iter().flatten() {
            assert_eq!(&envelope.decrypt(r, &ctx)?[..], PHONE);
        }
        println!(
            "{{\"impl\":\"larder\",\"op\":\"cold\",\"threads\":{threads},\"trial\":{trial},\"ok\":{ok},\"generations\":{},\"decrypt_calls\":{},\"ms\":{:.1}}}",
            keyring.generates.load(Ordering::SeqCst),
            keyring.decrypts.load(Ordering::SeqCst),
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(num(2, 5)),
        Some("cold") => cold(num(2, 100), num(3, 5)),
        _ => Err("usage: larder-bench-peers throughput [rounds] | cold [threads] [trials]".into()),
    }
}
