//! Part 2 of the demo: 100 threads encrypt and decrypt phone numbers through ONE shared
//! envelope (story B, "the data key that broke under load"), with and without the data-key
//! cache. Every keyring call goes through a [`CountingKeyring`], which counts it and (for the local
//! keyring) sleeps like a KMS round trip would.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use larder::envelope::{
    CostEstimate, CountingKeyring, DataKeyLimits, EncryptionContext, Envelope, Keyring, LocalKeyring,
};
use serde::Serialize;

use super::gen;
use super::table::{self, thousands};
use crate::cli::DemoArgs;

/// Where the demo's data keys come from.
pub enum KeyringSetup {
    /// A fresh local keyring file in the demo's temporary directory.
    Local { path: std::path::PathBuf },
    /// AWS KMS (`--kms aws:KEY_ID`).
    Kms { key_id: String, endpoint: Option<String> },
}

impl KeyringSetup {
    pub fn new(args: &DemoArgs, scratch: &Path) -> anyhow::Result<Self> {
        match &args.kms.kms {
            Some(spec) => Ok(KeyringSetup::Kms {
                key_id: crate::crypt::parse_kms(spec)?.to_string(),
                endpoint: args.kms.kms_endpoint.clone(),
            }),
            None => {
                let path = scratch.join("keyring");
                LocalKeyring::init(&path)
                    .with_context(|| format!("cannot create the demo keyring {}", path.display()))?;
                Ok(KeyringSetup::Local { path })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KeyringSetup::Local { path } => format!("local keyring {}  (temporary)", path.display()),
            KeyringSetup::Kms { key_id, endpoint: Some(e) } => format!("AWS KMS key {key_id} at {e}"),
            KeyringSetup::Kms { key_id, endpoint: None } => format!("AWS KMS key {key_id}"),
        }
    }

    fn simulated_latency(&self, args: &DemoArgs) -> Option<Duration> {
        match self {
            KeyringSetup::Local { .. } => Some(Duration::from_millis(args.kms_latency_ms)),
            KeyringSetup::Kms { .. } => None,
        }
    }

    /// The demo's keyring, wrapped so every call is counted outside the envelope (so the
    /// envelope's own statistics can be cross-checked) and, for the local keyring, delayed by
    /// the simulated KMS latency.
    async fn keyring(&self, args: &DemoArgs) -> anyhow::Result<CountingKeyring<Box<dyn Keyring>>> {
        let inner: Box<dyn Keyring> = match self {
            KeyringSetup::Local { path } => Box::new(LocalKeyring::load(path)?),
            KeyringSetup::Kms { key_id, endpoint } => {
                crate::crypt::aws_keyring(key_id, endpoint.as_deref()).await?
            }
        };
        let counted = CountingKeyring::new(inner);
        Ok(match self.simulated_latency(args) {
            Some(latency) => counted.with_latency(latency),
            None => counted,
        })
    }
}

/// One run of the phone-number workload.
#[derive(Serialize, Clone, Debug)]
pub struct PhoneRun {
    pub data_key_cache: bool,
    pub phones: u32,
    pub threads: u32,
    /// `GenerateDataKey`-like keyring calls, counted by the wrapper.
    pub generate_calls: u64,
    /// `Decrypt`-like keyring calls, counted by the wrapper.
    pub decrypt_calls: u64,
    pub wall_ms: f64,
    /// Encrypt+decrypt round trips per second.
    pub round_trips_per_s: f64,
    /// Failed operations plus round trips that returned a different value (must be 0).
    pub errors: u64,
}

/// The cache-off figures scaled to the cache-on size.
#[derive(Serialize, Clone, Debug)]
pub struct Extrapolated {
    pub phones: u32,
    pub keyring_calls: u64,
    pub wall_ms: f64,
}

/// Monthly KMS cost at the seed's prices ($1/key/month, $0.03 per 10,000 requests).
#[derive(Serialize, Clone, Debug)]
pub struct Cost {
    /// How long one cached data key serves at this rate (max age or message budget).
    pub data_key_lifetime_s: f64,
    /// KMS requests per data key, measured in the cache-on run.
    pub kms_requests_per_data_key: f64,
    /// The application rate the cost is stated for: encrypt+decrypt round trips per second.
    pub round_trips_per_s: u64,
    pub kms_requests_per_s_cache_on: f64,
    pub kms_requests_per_s_cache_off: f64,
    pub monthly_usd_cache_on: f64,
    pub monthly_usd_cache_off: f64,
}

#[derive(Serialize, Clone, Debug)]
pub struct PhonesReport {
    /// Simulated latency per keyring call in ms (None with a real KMS).
    pub simulated_kms_latency_ms: Option<u64>,
    pub cache_on: PhoneRun,
    pub cache_off: PhoneRun,
    pub cache_off_extrapolated: Extrapolated,
    pub cost: Cost,
    /// Masked plaintexts of the first few decrypted numbers.
    pub masked_samples: Vec<String>,
    /// Bytes of one binary ciphertext of a 13-character phone number.
    pub ciphertext_bytes: usize,
}

impl PhonesReport {
    pub fn errors(&self) -> u64 {
        self.cache_on.errors + self.cache_off.errors
    }
}

pub fn run(args: &DemoArgs, setup: &KeyringSetup) -> anyhow::Result<PhonesReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut samples = Vec::new();
    let on = one_run(args, setup, &rt, true, args.phones, &mut samples)?;
    let off = one_run(args, setup, &rt, false, args.phones_uncached, &mut Vec::new())?;
    let ciphertext_bytes = rt.block_on(async {
        let ring = setup.keyring(args).await?;
        let env = Envelope::builder(ring).build();
        let ct = env.encrypt(b"010-1234-5678", &context()).await?;
        anyhow::Ok(ct.len())
    })?;

    let scale = f64::from(args.phones) / f64::from(args.phones_uncached);
    let extrapolated = Extrapolated {
        phones: args.phones,
        keyring_calls: ((off.generate_calls + off.decrypt_calls) as f64 * scale).round() as u64,
        wall_ms: off.wall_ms * scale,
    };

    // Cost at a stated steady rate. Without the cache every round trip makes one
    // GenerateDataKey and one Decrypt. With it, KMS is called per data key, not per value: a
    // data key lives for the limits' max age, or less if the rate exhausts its message budget
    // sooner, and costs the KMS requests per data key measured in the cache-on run.
    let rate = args.cost_rate as f64;
    let limits = DataKeyLimits::default();
    let keys_per_s =
        (1.0 / limits.max_age.as_secs_f64().max(1.0)).max(rate / limits.max_messages.max(1) as f64);
    let requests_per_key = (on.generate_calls + on.decrypt_calls) as f64 / on.generate_calls.max(1) as f64;
    let on_rps = keys_per_s * requests_per_key;
    let off_rps = 2.0 * rate;
    let cost = Cost {
        data_key_lifetime_s: 1.0 / keys_per_s,
        kms_requests_per_data_key: requests_per_key,
        round_trips_per_s: args.cost_rate,
        kms_requests_per_s_cache_on: on_rps,
        kms_requests_per_s_cache_off: off_rps,
        monthly_usd_cache_on: CostEstimate::monthly(1, on_rps).total,
        monthly_usd_cache_off: CostEstimate::monthly(1, off_rps).total,
    };
    Ok(PhonesReport {
        simulated_kms_latency_ms: setup.simulated_latency(args).map(|d| d.as_millis() as u64),
        cache_on: on,
        cache_off: off,
        cache_off_extrapolated: extrapolated,
        cost,
        masked_samples: samples,
        ciphertext_bytes,
    })
}

fn context() -> EncryptionContext {
    EncryptionContext::new().with("table", "customers").with("column", "phone")
}

fn one_run(
    args: &DemoArgs,
    setup: &KeyringSetup,
    rt: &tokio::runtime::Runtime,
    cache: bool,
    phones: u32,
    samples: &mut Vec<String>,
) -> anyhow::Result<PhoneRun> {
    let ring = Arc::new(rt.block_on(setup.keyring(args))?);
    let builder = Envelope::builder(Arc::clone(&ring));
    let envelope = if cache { builder.build() } else { builder.no_cache().build() };
    let label = if cache { "cache on" } else { "cache off" };
    let bar = crate::util::progress(Some(u64::from(phones)), label);
    bar.set_message("phone numbers");
    let ctx = context();
    let errors = AtomicU64::new(0);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let sample_out: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let threads = args.phone_threads.min(phones).max(1);
    let handle = rt.handle();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (envelope, ctx, errors, first_error, sample_out, bar) =
                (&envelope, &ctx, &errors, &first_error, &sample_out, &bar);
            s.spawn(move || {
                let mut i = t;
                while i < phones {
                    let phone = gen::phone_number(i);
                    let result = handle.block_on(async {
                        let stored = envelope.encrypt_text(&phone, ctx).await?;
                        envelope.decrypt_text(&stored, ctx).await
                    });
                    match result {
                        Ok(back) if *back == *phone => {
                            if i < 3 {
                                let masked =
                                    larder::envelope::mask::phone(&back).unwrap_or_else(|e| format!("({e})"));
                                if let Ok(mut v) = sample_out.lock() {
                                    v.push(masked);
                                }
                            }
                        }
                        Ok(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            note(first_error, format!("phone {i}: decrypted to a different value"));
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            note(first_error, format!("phone {i}: {e}"));
                        }
                    }
                    bar.inc(1);
                    i += threads;
                }
            });
        }
    });
    let wall = start.elapsed();
    bar.finish_and_clear();
    if let Ok(Some(e)) = first_error.lock().map(|g| g.clone()) {
        eprintln!("larder demo: first error ({label}): {e}");
    }
    if let Ok(mut v) = sample_out.lock() {
        v.sort();
        samples.append(&mut v);
    }
    Ok(PhoneRun {
        data_key_cache: cache,
        phones,
        threads,
        generate_calls: ring.generate_calls(),
        decrypt_calls: ring.decrypt_calls(),
        wall_ms: wall.as_secs_f64() * 1000.0,
        round_trips_per_s: f64::from(phones) / wall.as_secs_f64().max(1e-9),
        errors: errors.load(Ordering::Relaxed),
    })
}

fn note(slot: &Mutex<Option<String>>, msg: String) {
    if let Ok(mut g) = slot.lock() {
        g.get_or_insert(msg);
    }
}

/// The human-readable part 2 report.
pub fn render(args: &DemoArgs, setup: &KeyringSetup, r: &PhonesReport) -> String {
    let latency = match r.simulated_kms_latency_ms {
        Some(ms) => format!("local keyring, simulated KMS latency {ms} ms per call"),
        None => setup.describe(),
    };
    let mut out = table::wrap(
        &format!(
            "Story B: the data key that broke under load. {} threads encrypt and decrypt phone numbers \
             through one shared envelope ({latency}).",
            args.phone_threads
        ),
        100,
    );
    out.push_str("\n\n");
    let row = |label: &str, run: &PhoneRun| {
        vec![
            label.to_string(),
            thousands(u64::from(run.phones)),
            format!("{} + {}", thousands(run.generate_calls), thousands(run.decrypt_calls)),
            table::duration_ms(run.wall_ms),
            format!("{}/s", thousands(run.round_trips_per_s.round() as u64)),
            thousands(run.errors),
        ]
    };
    let x = &r.cache_off_extrapolated;
    let rows = vec![
        row("data-key cache on", &r.cache_on),
        row("data-key cache off", &r.cache_off),
        vec![
            "cache off, extrapolated".into(),
            thousands(u64::from(x.phones)),
            thousands(x.keyring_calls),
            table::duration_ms(x.wall_ms),
            format!("{}/s", thousands(r.cache_off.round_trips_per_s.round() as u64)),
            "-".into(),
        ],
    ];
    out.push_str(&table::render(
        &["run", "phones", "keyring calls (generate + decrypt)", "wall time", "round trips", "errors"],
        &rows,
    ));
    let c = &r.cost;
    out.push_str(&format!(
        "\nMonthly KMS cost at {} encrypt+decrypt/s, 1 key, $1/key/month + $0.03/10,000 requests:\n  \
         cache on  ${:>10.2}  ({:.4} requests/s: {:.0} per data key, measured above, and one data key per {:.0} s)\n  \
         cache off ${:>10.2}  ({} requests/s: one GenerateDataKey and one Decrypt per value)\n",
        thousands(c.round_trips_per_s),
        c.monthly_usd_cache_on,
        c.kms_requests_per_s_cache_on,
        c.kms_requests_per_data_key,
        c.data_key_lifetime_s,
        c.monthly_usd_cache_off,
        thousands(c.kms_requests_per_s_cache_off.round() as u64),
    ));
    out.push_str(&format!(
        "Ciphertext of a 13-character phone number: {} bytes. Masked samples: {}\n",
        r.ciphertext_bytes,
        r.masked_samples.join("  ")
    ));
    out
}
