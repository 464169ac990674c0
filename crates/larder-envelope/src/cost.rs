//! Cost accounting: keyring (KMS) request counters, data-key cache hit/miss counters, and a
//! monthly cost estimate from AWS KMS pricing.
//!
//! Every counter is kept twice: as in-process atomics readable with
//! [`Envelope::stats`](crate::Envelope::stats) (for the CLI demo and tests), and through the
//! [`metrics`] facade (for whatever recorder the application installs):
//!
//! | metric | labels |
//! |---|---|
//! | `larder_envelope_keyring_requests_total` | `operation` = `generate_data_key` / `decrypt` / `encrypt_data_key` (multi-keyring wraps), `keyring` = `local` / `aws-kms` |
//! | `larder_envelope_keyring_errors_total` | |
//! | `larder_envelope_keyring_seconds` (histogram) | `operation` = `generate_data_key` / `encrypt_data_key` / `decrypt_data_key`, `keyring`, `outcome` = `ok` / `panic` / the error's name |
//! | `larder_envelope_data_key_cache_total` | `side` = `encrypt` / `decrypt`, `result` = `hit` / `miss` |
//! | `larder_envelope_data_key_retired_total` | `limit` = `messages` / `bytes` / `age` / `fork`: a cached data key reached a limit |
//!
//! Keyring calls also open a `tracing` span (`keyring_call`, docs/ciphertext-format.md), and a data key
//! reaching a limit logs one info event; neither carries key material or plaintext.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::KeyringKind;

/// A snapshot of an envelope's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeStats {
    /// Keyring `generate_data_key` calls (KMS `GenerateDataKey` requests).
    pub generate_calls: u64,
    /// Keyring `decrypt_data_key` calls (KMS `Decrypt` requests).
    pub decrypt_calls: u64,
    /// Keyring calls that returned an error.
    pub keyring_errors: u64,
    /// Encrypts served by a cached data key without waiting.
    pub encrypt_cache_hits: u64,
    /// Encrypts that had to wait for a data key (cold, expired or exhausted).
    pub encrypt_cache_misses: u64,
    /// Decrypts whose data key was cached.
    pub decrypt_cache_hits: u64,
    /// Decrypts that had to open the EDK through the keyring (or join a call doing so).
    pub decrypt_cache_misses: u64,
}

impl EnvelopeStats {
    /// Keyring requests of both kinds.
    pub fn keyring_requests(&self) -> u64 {
        self.generate_calls + self.decrypt_calls
    }
}

/// A keyring operation, as named in spans and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Generate,
    Wrap,
    Decrypt,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Generate => "generate_data_key",
            Op::Wrap => "encrypt_data_key",
            Op::Decrypt => "decrypt_data_key",
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    generate: AtomicU64,
    decrypt: AtomicU64,
    errors: AtomicU64,
    enc_hit: AtomicU64,
    enc_miss: AtomicU64,
    dec_hit: AtomicU64,
    dec_miss: AtomicU64,
}

impl Counters {
    /// One keyring call starting (`guard.rs` calls this; nothing else does).
    pub(crate) fn record_call(&self, op: Op, kind: KeyringKind) {
        let operation = match op {
            Op::Generate => {
                self.generate.fetch_add(1, Ordering::Relaxed);
                "generate_data_key"
            }
            Op::Decrypt => {
                self.decrypt.fetch_add(1, Ordering::Relaxed);
                "decrypt"
            }
            // Wraps for multi-keyring ciphertexts are part of their data key's generation in
            // the stats; the metric names them.
            Op::Wrap => "encrypt_data_key",
        };
        metrics::counter!("larder_envelope_keyring_requests_total",
            "operation" => operation, "keyring" => kind.name())
        .increment(1);
    }

    pub(crate) fn record_keyring_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("larder_envelope_keyring_errors_total").increment(1);
    }

    // Misses also log a debug event (a miss is followed by a keyring call or waits for one);
    // hits only count: a warm encrypt is ≈ 300 ns, and an event per hit would be most of it.
    pub(crate) fn encrypt_cache(&self, hit: bool) {
        if !hit {
            tracing::debug!(target: "larder_envelope", side = "encrypt", "data-key cache miss");
        }
        let (c, r) = if hit { (&self.enc_hit, "hit") } else { (&self.enc_miss, "miss") };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("larder_envelope_data_key_cache_total", "side" => "encrypt", "result" => r)
            .increment(1);
    }

    pub(crate) fn decrypt_cache(&self, hit: bool) {
        if !hit {
            tracing::debug!(target: "larder_envelope", side = "decrypt", "data-key cache miss");
        }
        let (c, r) = if hit { (&self.dec_hit, "hit") } else { (&self.dec_miss, "miss") };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("larder_envelope_data_key_cache_total", "side" => "decrypt", "result" => r)
            .increment(1);
    }

    pub(crate) fn snapshot(&self) -> EnvelopeStats {
        EnvelopeStats {
            generate_calls: self.generate.load(Ordering::Relaxed),
            decrypt_calls: self.decrypt.load(Ordering::Relaxed),
            keyring_errors: self.errors.load(Ordering::Relaxed),
            encrypt_cache_hits: self.enc_hit.load(Ordering::Relaxed),
            encrypt_cache_misses: self.enc_miss.load(Ordering::Relaxed),
            decrypt_cache_hits: self.dec_hit.load(Ordering::Relaxed),
            decrypt_cache_misses: self.dec_miss.load(Ordering::Relaxed),
        }
    }
}

/// KMS prices in US dollars. Defaults: AWS KMS list prices ($1 per customer managed key per
/// month, $0.03 per 10,000 requests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KmsPrices {
    /// Dollars per master key per month.
    pub per_key_month: f64,
    /// Dollars per 10,000 requests.
    pub per_10k_requests: f64,
}

impl Default for KmsPrices {
    fn default() -> Self {
        KmsPrices { per_key_month: 1.0, per_10k_requests: 0.03 }
    }
}

/// Seconds in the 30-day month the estimate uses.
pub const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// A monthly KMS cost: `keys × per_key_month + requests × per_10k_requests / 10,000`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CostEstimate {
    /// Master keys billed.
    pub keys: u64,
    /// KMS requests in the month.
    pub requests_per_month: f64,
    /// Dollars for keys.
    pub key_cost: f64,
    /// Dollars for requests.
    pub request_cost: f64,
    /// `key_cost + request_cost`.
    pub total: f64,
}

impl CostEstimate {
    /// Monthly cost at list prices for `keys` master keys and a steady `requests_per_second`
    /// KMS request rate (a 30-day month).
    pub fn monthly(keys: u64, requests_per_second: f64) -> Self {
        Self::monthly_with(keys, requests_per_second, KmsPrices::default())
    }

    /// [`CostEstimate::monthly`] with configurable prices.
    pub fn monthly_with(keys: u64, requests_per_second: f64, prices: KmsPrices) -> Self {
        let requests_per_month = requests_per_second.max(0.0) * SECONDS_PER_MONTH;
        let key_cost = keys as f64 * prices.per_key_month;
        let request_cost = requests_per_month * prices.per_10k_requests / 10_000.0;
        CostEstimate { keys, requests_per_month, key_cost, request_cost, total: key_cost + request_cost }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_formula() {
        // 1 key, 100 requests/s: 259.2M requests → $777.60 + $1.
        let c = CostEstimate::monthly(1, 100.0);
        assert!((c.requests_per_month - 259_200_000.0).abs() < 1e-3);
        assert!((c.request_cost - 777.6).abs() < 1e-9);
        assert!((c.total - 778.6).abs() < 1e-9);
        let p = CostEstimate::monthly_with(2, 0.0, KmsPrices { per_key_month: 3.0, per_10k_requests: 1.0 });
        assert_eq!(p.total, 6.0);
        assert_eq!(CostEstimate::monthly(0, -5.0).total, 0.0);
    }
}
