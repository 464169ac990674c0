//! The fault-injection soak of larder (issue 6): the report a worker writes and how reports
//! are combined. The worker is `src/main.rs` (`larder-soak-worker`); the orchestrator, which
//! starts Redis and moto, spawns four workers and injects the faults, is `tests/soak.rs`, run
//! by `scripts/soak.sh SECONDS`.
//!
//! What it does not do: it measures no throughput targets (those are criterion benchmarks),
//! and it never talks to anything but servers it started on loopback.
//!
//! ```
//! use larder_soak::{Report, percentile};
//! let mut r = Report::default();
//! r.count_error("memo", "timeout");
//! assert_eq!(r.errors["memo:timeout"], 1);
//! assert_eq!(percentile(&mut vec![5, 1, 3], 50.0), 3);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one worker saw, written as one JSON line to its report file.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Which worker (0..4).
    pub worker: usize,
    /// Memo calls made.
    pub memo_ops: u64,
    /// Envelope round trips (encrypt + decrypt) and re-decrypts of older ciphertexts made.
    pub envelope_ops: u64,
    /// Values that were wrong: a memo result other than the function's, a decrypt that gave
    /// another plaintext, a ciphertext that opened under the wrong context. Must be 0.
    pub wrong_values: u64,
    /// Errors by `area:kind` (e.g. `envelope:KmsUnavailable`).
    pub errors: BTreeMap<String, u64>,
    /// Latencies in microseconds by area (`memo`, `encrypt`, `decrypt`).
    pub latencies_us: BTreeMap<String, Vec<u64>>,
    /// Keyring calls that reached the AWS KMS keyring (counting wrapper), by operation.
    pub keyring_calls: BTreeMap<String, u64>,
    /// Memo computations (the function ran in this process).
    pub computations: u64,
    /// The cache's own counters at the end (`CacheStats`, by name).
    pub cache_stats: BTreeMap<String, u64>,
}

impl Report {
    /// Counts one error of `kind` in `area`.
    pub fn count_error(&mut self, area: &str, kind: &str) {
        *self.errors.entry(format!("{area}:{kind}")).or_default() += 1;
    }

    /// Adds `other` into `self` (latencies appended, counters summed).
    pub fn merge(&mut self, other: Report) {
        self.memo_ops += other.memo_ops;
        self.envelope_ops += other.envelope_ops;
        self.wrong_values += other.wrong_values;
        self.computations += other.computations;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, mut v) in other.latencies_us {
            self.latencies_us.entry(k).or_default().append(&mut v);
        }
        for (k, v) in other.keyring_calls {
            *self.keyring_calls.entry(k).or_default() += v;
        }
        for (k, v) in other.cache_stats {
            *self.cache_stats.entry(k).or_default() += v;
        }
    }
}

/// The `p`th percentile (nearest rank) of `values`, which it sorts; 0 for none.
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
