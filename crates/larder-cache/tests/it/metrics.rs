//! The `metrics` counters and histograms reach an installed recorder with their documented
//! names and labels (docs/cache.md, "Observability"): per-call metrics labelled by namespace,
//! with at most `metric_namespaces` labels before `(other)`.

use std::time::Duration;

use larder_cache::{Cache, KeySpace};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[test]
fn counters_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    // Handles are registered when the cache is built (per tier) and when a namespace is first
    // counted: build and call under the recorder.
    let cache = metrics::with_local_recorder(&recorder, || {
        let cache = Cache::builder()
            .local(100)
            .shared_url(&format!("sqlite:{}", dir.path().join("m.db").display()))
            .build()
            .unwrap();
        let space = KeySpace::new("metrics", 1).unwrap();
        for _ in 0..3 {
            cache.get_or_compute_blocking(&space, &1u8, Duration::from_secs(60), || 5u32);
        }
        cache
    });
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
    // Every per-call series carries the namespace.
    for (name, labels, _) in &snap {
        let per_call = !matches!(
            name.as_str(),
            "larder_cache_store_errors_total"
                | "larder_cache_corrupt_entries_total"
                | "larder_cache_oversize_values_total"
                | "larder_cache_breaker_open"
                | "larder_cache_refreshes_started_total"
                | "larder_cache_refreshes_finished_total"
                | "larder_cache_stale_served_total"
                | "larder_cache_stale_served_by_timeout_total"
                | "larder_cache_hard_timeouts_total"
                | "larder_cache_tag_stale_total"
        );
        let ns = labels.iter().find(|(k, _)| k == "namespace").map(|(_, v)| v.as_str());
        assert_eq!(ns, per_call.then_some("metrics"), "{name} {labels:?}");
    }
    // The one miss was computed: one call_seconds sample, outcome "computed".
    let call = snap.iter().find(|(k, l, _)| {
        k == "larder_cache_call_seconds" && l.iter().any(|(lk, lv)| lk == "outcome" && lv == "computed")
    });
    assert!(matches!(call, Some((_, _, DebugValue::Histogram(v))) if v.len() == 1), "{call:?}");
}

/// Namespaces past `metric_namespaces` share the `(other)` label; the first ones keep theirs.
#[test]
fn namespace_labels_are_bounded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let cache = Cache::builder().local(100).metric_namespaces(2).build().unwrap();
        for ns in ["alpha", "beta", "gamma", "delta"] {
            let space = KeySpace::new(ns, 1).unwrap();
            cache.get_or_compute_blocking(&space, &1u8, Duration::from_secs(60), || 1u8);
        }
        // Two local hits each: counted through the handle each entry carries.
        for ns in ["alpha", "beta", "gamma", "delta", "alpha", "beta", "gamma", "delta"] {
            let space = KeySpace::new(ns, 1).unwrap();
            let v: u8 = cache
                .get_or_compute_blocking(&space, &1u8, Duration::from_secs(60), || unreachable!("a hit"));
            assert_eq!(v, 1);
        }
        assert_eq!(cache.stats().local_hits, 8);
    });
    let snap = snapshot_map(snapshotter.snapshot());
    let computations = |ns: &str| {
        snap.iter()
            .find(|(k, l, _)| {
                k == "larder_cache_computations_total"
                    && l.iter().any(|(lk, lv)| lk == "namespace" && lv == ns)
            })
            .map(|(_, _, v)| v)
    };
    assert_eq!(computations("alpha"), Some(&DebugValue::Counter(1)));
    assert_eq!(computations("beta"), Some(&DebugValue::Counter(1)));
    assert_eq!(computations("gamma"), None);
    assert_eq!(computations("delta"), None);
    assert_eq!(computations(larder_cache::OTHER_NAMESPACES), Some(&DebugValue::Counter(2)));
    let local_hits = |ns: &str| {
        snap.iter()
            .find(|(k, l, _)| {
                k == "larder_cache_hits_total"
                    && l.iter().any(|(lk, lv)| lk == "tier" && lv == "local")
                    && l.iter().any(|(lk, lv)| lk == "namespace" && lv == ns)
            })
            .map(|(_, _, v)| v)
    };
    assert_eq!(local_hits("alpha"), Some(&DebugValue::Counter(2)));
    assert_eq!(local_hits("beta"), Some(&DebugValue::Counter(2)));
    assert_eq!(local_hits("gamma"), None);
    assert_eq!(local_hits(larder_cache::OTHER_NAMESPACES), Some(&DebugValue::Counter(4)));
    let labels: std::collections::BTreeSet<&str> = snap
        .iter()
        .flat_map(|(_, l, _)| l.iter().filter(|(k, _)| k == "namespace").map(|(_, v)| v.as_str()))
        .collect();
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["(other)", "alpha", "beta"]);
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
