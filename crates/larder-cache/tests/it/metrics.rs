//! The `metrics` counters and histogram reach an installed recorder with their documented
//! names and labels.

use std::time::Duration;

use larder_cache::{Cache, KeySpace};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[test]
fn counters_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    // Handles are registered when the cache is built: build it under the recorder.
    let cache = metrics::with_local_recorder(&recorder, || {
        Cache::builder()
            .local(100)
            .shared_url(&format!("sqlite:{}", dir.path().join("m.db").display()))
            .build()
    })
    .unwrap();
    let space = KeySpace::new("metrics", 1).unwrap();
    for _ in 0..3 {
        cache.get_or_compute_blocking(&space, &1u8, Duration::from_secs(60), || 5u32);
    }
    let snap = snapshot_map(snapshotter.snapshot());
    let get = |name: &str, tier: Option<&str>| {
        snap.iter()
            .find(|(k, l, _)| {
                k == name && tier.is_none_or(|t| l.iter().any(|(lk, lv)| lk == "tier" && lv == t))
            })
            .map(|(_, _, v)| v)
    };
    assert_eq!(get("larder_cache_computations_total", None), Some(&DebugValue::Counter(1)));
    assert_eq!(get("larder_cache_hits_total", Some("local")), Some(&DebugValue::Counter(2)));
    assert_eq!(get("larder_cache_misses_total", Some("local")), Some(&DebugValue::Counter(1)));
    assert_eq!(get("larder_cache_misses_total", Some("sqlite")), Some(&DebugValue::Counter(1)));
    match get("larder_cache_compute_seconds", None) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 1),
        other => panic!("compute histogram: {other:?}"),
    }
    assert!(get("larder_cache_breaker_open", Some("sqlite")).is_some());
    assert_eq!(cache.stats().local_hits, 2);
}

type Row = (String, Vec<(String, String)>, DebugValue);

fn snapshot_map(s: metrics_util::debugging::Snapshot) -> Vec<Row> {
    s.into_vec()
        .into_iter()
        .map(|(ck, _unit, _desc, v)| {
            let (kind, key) = ck.into_parts();
            let _: MetricKind = kind;
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            (key.name().to_owned(), labels, v)
        })
        .collect()
}
