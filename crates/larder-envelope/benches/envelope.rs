//! Warm envelope encrypt/decrypt of a phone number vs bare AES-256-GCM on the same 13 bytes.
//!
//! ```text
//! cargo bench -p larder-envelope --no-default-features --bench envelope -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! After criterion's own report, prints a side-by-side summary measured in one interleaved
//! run (medians of 31 rounds) with the ratios the targets are stated in.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use criterion::{criterion_group, Criterion};
use futures_util::FutureExt;
use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};
use rand::{Rng, TryRng};

const PHONE: &[u8] = b"010-1234-5678";

struct Setup {
    _rt: tokio::runtime::Runtime,
    envelope: Envelope,
    no_cache: Envelope,
    ctx: EncryptionContext,
    stored: Vec<u8>,
    bare: Aes256Gcm,
    bare_ct: Vec<u8>,
    bare_nonce: [u8; 12],
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let envelope = Envelope::builder(LocalKeyring::from_key_bytes("k1", [7; 32]).unwrap()).build();
    let no_cache = Envelope::builder(LocalKeyring::from_key_bytes("k1", [7; 32]).unwrap()).no_cache().build();
    let ctx = EncryptionContext::new().with("table", "inquiries").with("column", "phone");
    let stored = rt.block_on(envelope.encrypt(PHONE, &ctx)).unwrap();
    let bare = Aes256Gcm::new(&[9u8; 32].into());
    let mut bare_nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut bare_nonce);
    let bare_ct = bare.encrypt(&bare_nonce.into(), PHONE).unwrap();
    Setup { _rt: rt, envelope, no_cache, ctx, stored, bare, bare_ct, bare_nonce }
}

fn bare_seal(s: &Setup) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    s.bare.encrypt(&nonce.into(), Payload { msg: black_box(PHONE), aad: &[] }).unwrap()
}

fn bare_open(s: &Setup) -> Vec<u8> {
    s.bare.decrypt(&s.bare_nonce.into(), Payload { msg: black_box(&s.bare_ct[..]), aad: &[] }).unwrap()
}

fn os_nonce() -> [u8; 12] {
    let mut nonce = [0u8; 12];
    rand::rngs::SysRng.try_fill_bytes(&mut nonce).unwrap();
    nonce
}

fn larder_encrypt(s: &Setup) -> Vec<u8> {
    // The warm path never awaits; now_or_never polls it once (a pending poll would be a cold
    // key, which the bench does not measure, so it panics loudly instead).
    s.envelope.encrypt(black_box(PHONE), &s.ctx).now_or_never().unwrap().unwrap()
}

fn larder_decrypt(s: &Setup) -> zeroize::Zeroizing<Vec<u8>> {
    s.envelope.decrypt(black_box(&s.stored), &s.ctx).now_or_never().unwrap().unwrap()
}

fn larder_encrypt_no_cache(s: &Setup) -> Vec<u8> {
    s.no_cache.encrypt(black_box(PHONE), &s.ctx).now_or_never().unwrap().unwrap()
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let _enter = s._rt.enter();
    let mut g = c.benchmark_group("envelope_phone_13B");
    g.bench_function("bare_aes256gcm_seal", |b| b.iter(|| bare_seal(&s)));
    g.bench_function("larder_encrypt_warm", |b| b.iter(|| larder_encrypt(&s)));
    g.bench_function("bare_aes256gcm_open", |b| b.iter(|| bare_open(&s)));
    g.bench_function("larder_decrypt_warm", |b| b.iter(|| larder_decrypt(&s)));
    g.bench_function("nonce_thread_rng", |b| {
        b.iter(|| {
            let mut n = [0u8; 12];
            rand::rng().fill_bytes(&mut n);
            n
        })
    });
    g.bench_function("nonce_larder_fork", |b| {
        b.iter(|| {
            let mut n = [0u8; 12];
            larder_fork::fill(&mut n).unwrap();
            n
        })
    });
    g.bench_function("nonce_os_rng", |b| b.iter(os_nonce));
    g.bench_function("larder_encrypt_no_cache_local_keyring", |b| b.iter(|| larder_encrypt_no_cache(&s)));
    g.finish();
}

/// Median ns/op of `f` over 31 interleaved rounds.
fn summary() {
    let s = setup();
    let _enter = s._rt.enter();
    type Op<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let ops: Vec<Op<'_>> = vec![
        ("bare seal", Box::new(|| drop(black_box(bare_seal(&s))))),
        ("larder encrypt", Box::new(|| drop(black_box(larder_encrypt(&s))))),
        ("bare open", Box::new(|| drop(black_box(bare_open(&s))))),
        ("larder decrypt", Box::new(|| drop(black_box(larder_decrypt(&s))))),
        (
            "nonce thread_rng",
            Box::new(|| {
                let mut n = [0u8; 12];
                rand::rng().fill_bytes(&mut n);
                black_box(n);
            }),
        ),
        (
            "nonce larder_fork",
            Box::new(|| {
                let mut n = [0u8; 12];
                larder_fork::fill(&mut n).unwrap();
                black_box(n);
            }),
        ),
        (
            "nonce OS rng",
            Box::new(|| {
                black_box(os_nonce());
            }),
        ),
    ];
    const ITERS: u32 = 20_000;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..31 {
        for (i, (_, f)) in ops.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(ITERS));
        }
    }
    let med: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        })
        .collect();
    println!("\n== side-by-side summary (median of 31 interleaved rounds x {ITERS} ops) ==");
    for ((name, _), m) in ops.iter().zip(&med) {
        println!("{name:>18}: {m:8.1} ns/op");
    }
    println!("encrypt ratio larder/bare seal: {:.2}x (target <= 3x)", med[1] / med[0]);
    println!("decrypt ratio larder/bare open: {:.2}x (target <= 3x)", med[3] / med[2]);
    println!("larder_fork nonce / rand thread_rng nonce: {:.2}x", med[5] / med[4]);
    println!("OS-RNG nonce / larder_fork nonce: {:.1}x", med[6] / med[5]);
    let info = Envelope::inspect(&s.stored).unwrap();
    let edk_fields = 1 + 1 + info.key_id.len() + 2 + info.edk_len;
    println!(
        "ciphertext of {:?} (13 B), local keyring: {} B binary, {} B text; overhead {} B = EDK fields {} B + {} B",
        std::str::from_utf8(PHONE).unwrap(),
        info.total_len,
        4 + (info.total_len * 4).div_ceil(3),
        info.overhead,
        edk_fields,
        info.overhead - edk_fields
    );
    let st = s.envelope.stats();
    println!(
        "keyring calls during the summary: generate {}, decrypt {}",
        st.generate_calls, st.decrypt_calls
    );
}

criterion_group! {
    name = group;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}

fn main() {
    // LARDER_BENCH_SUMMARY_ONLY=1 skips criterion and prints only the side-by-side summary.
    if std::env::var_os("LARDER_BENCH_SUMMARY_ONLY").is_none() {
        group();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
