//! Cost of a cache key against the per-process-seeded hash it replaces.
//!
//! For each value: `larder_key` key text (`KeySpace::key`: canonical encoding, keyed BLAKE3,
//! base32 text) against `RandomState::hash_one` (`build_hasher()`, `hash`, `finish`: SipHash-1-3 with this process's random
//! keys, i.e. `DefaultHasher` as a `HashMap` uses it) over `#[derive(Hash)]` of the same value.
//! The ratio of the two, measured side by side in one run, is the figure that matters; the
//! targets are ≤ 80 ns per `LoanQuote` key and ≤ 3× the hasher.
//!
//! `cargo bench -p larder-key --bench keys -- --warm-up-time 1 --measurement-time 3`

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use larder_key::{KeySpace, StableKey};

#[derive(Hash, StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

fn bench_keys(c: &mut Criterion) {
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let seeded = RandomState::new();

    let quote = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let mut g = c.benchmark_group("loan_quote");
    g.bench_function("larder_key", |b| b.iter(|| space.key(black_box(&quote)).unwrap()));
    g.bench_function("default_hasher", |b| b.iter(|| seeded.hash_one(black_box(&quote))));
    // The floor set by the primitive the format mandates: keyed BLAKE3 of the 45-byte
    // encoding alone (one compression), without encoding or key text.
    let encoding = larder_key::encode(&quote).unwrap();
    let digest_key = [7u8; 32];
    g.bench_function("blake3_keyed_encoding_only", |b| {
        b.iter(|| blake3::keyed_hash(&digest_key, black_box(&encoding)))
    });
    g.finish();

    // Five strings of 16 bytes.
    let strings: Vec<String> = (0..5).map(|i| format!("user-{i:03}@exam.kr")).collect();
    assert!(strings.iter().all(|s| s.len() == 16));
    let mut g = c.benchmark_group("vec5_string16");
    g.bench_function("larder_key", |b| b.iter(|| space.key(black_box(&strings)).unwrap()));
    g.bench_function("default_hasher", |b| b.iter(|| seeded.hash_one(black_box(&strings))));
    g.finish();
}

criterion_group!(benches, bench_keys);
criterion_main!(benches);
