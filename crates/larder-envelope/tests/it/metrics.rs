//! The `metrics` facade counters, observed through a recorder installed for this thread.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{counting_test_key, ctx};
use larder_envelope::{CostEstimate, Envelope};
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

#[derive(Default)]
struct Totals(Mutex<BTreeMap<String, Arc<Count>>>);

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Recorder for Totals {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(self.0.lock().unwrap().entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Totals {
    fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).map_or(0, |c| c.0.load(Ordering::Relaxed))
    }
}

#[test]
fn keyring_requests_and_cache_hits_are_counted() {
    let totals = Totals::default();
    let keyring = counting_test_key(None);
    metrics::with_local_recorder(&totals, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let writer = Envelope::builder(keyring.clone()).build();
            let reader = Envelope::builder(keyring.clone()).build();
            let c = ctx();
            for i in 0..10u8 {
                let ct = writer.encrypt(&[i], &c).await.unwrap();
                assert_eq!(&*reader.decrypt(&ct, &c).await.unwrap(), &[i]);
            }
        });
    });
    let gen = "larder_envelope_keyring_requests_total{keyring=local,operation=generate_data_key}";
    let dec = "larder_envelope_keyring_requests_total{keyring=local,operation=decrypt}";
    assert_eq!(totals.get(gen), 1);
    assert_eq!(totals.get(dec), 1);
    assert_eq!(totals.get("larder_envelope_data_key_cache_total{result=hit,side=encrypt}"), 9);
    assert_eq!(totals.get("larder_envelope_data_key_cache_total{result=miss,side=encrypt}"), 1);
    assert_eq!(totals.get("larder_envelope_data_key_cache_total{result=hit,side=decrypt}"), 9);
    assert_eq!(totals.get("larder_envelope_data_key_cache_total{result=miss,side=decrypt}"), 1);
    assert_eq!(keyring.generate_calls(), 1);
    assert_eq!(keyring.decrypt_calls(), 1);
}

#[test]
fn cost_of_the_seed_workload_cached_vs_uncached() {
    // 1,000 encrypts/s: uncached = one GenerateDataKey per value; cached = one per 5 minutes.
    let uncached = CostEstimate::monthly(1, 1_000.0);
    let cached = CostEstimate::monthly(1, 1.0 / 300.0);
    assert!((uncached.total - (1.0 + 2_592_000_000.0 * 0.03 / 10_000.0)).abs() < 1e-6);
    // 8,640 requests a month: $0.026 + $1 for the key.
    assert!((cached.total - (1.0 + 8_640.0 * 0.03 / 10_000.0)).abs() < 1e-9);
    assert!(uncached.total / cached.total > 7_000.0);
}
