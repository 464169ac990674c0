//! The `info` span of a call that misses the local tier (docs/cache.md, "Observability"): its
//! name, level and fields (`namespace`, `tier`, `hit`, `outcome`, `latency_ms`), recorded by a
//! subscriber local to the test; no field carries the key, the arguments or the value.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder_cache::{Cache, KeySpace};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One span as the subscriber saw it: name, level, fields in the order recorded.
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    level: Level,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A subscriber that keeps every span it is given (ids are positions in the list, plus one).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut spans = self.0.lock().unwrap();
        let mut fields = Vec::new();
        span.record(&mut Fields(&mut fields));
        spans.push(Seen { name: span.metadata().name(), level: *span.metadata().level(), fields });
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let i = usize::try_from(span.into_u64()).unwrap() - 1;
        values.record(&mut Fields(&mut spans[i].fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_missed_call_has_an_info_span_with_how_it_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::default();
    let space = KeySpace::new("spans", 1).unwrap();
    let args = ("customer-4711", 99u32);
    let value = "the-value-nobody-may-log".to_owned();
    tracing::subscriber::with_default(capture.clone(), || {
        let cache =
            Cache::from_url(&format!("local:100,sqlite:{}", dir.path().join("s.db").display())).unwrap();
        let ttl = Duration::from_secs(60);
        assert_eq!(cache.get_or_compute_blocking(&space, &args, ttl, || value.clone()), value);
        assert_eq!(cache.get_or_compute_blocking(&space, &args, ttl, String::new), value); // local hit
        cache.clear_local();
        assert_eq!(cache.get_or_compute_blocking(&space, &args, ttl, String::new), value);
        // shared hit
    });
    let spans = capture.0.lock().unwrap().clone();
    let calls: Vec<&Seen> = spans.iter().filter(|s| s.name == "larder_cache.call").collect();
    // A local hit makes no span (the hot path); the two calls that missed it do.
    assert_eq!(calls.len(), 2, "{spans:#?}");
    for (call, (outcome, hit)) in calls.iter().zip([("computed", "false"), ("shared", "true")]) {
        assert_eq!(call.level, Level::INFO);
        assert_eq!(call.field("namespace"), Some("spans"));
        assert_eq!(call.field("tier"), Some("sqlite"));
        assert_eq!(call.field("outcome"), Some(outcome), "{call:?}");
        assert_eq!(call.field("hit"), Some(hit), "{call:?}");
        let ms: f64 = call.field("latency_ms").expect("latency_ms").parse().unwrap();
        assert!((0.0..10_000.0).contains(&ms), "{call:?}");
    }
    // No span, at any level, names the key, the arguments or the value.
    let key = space.key(&args).unwrap().as_str().to_owned();
    let digest = key.rsplit(':').next().unwrap().to_owned();
    for s in &spans {
        for (_, v) in &s.fields {
            for secret in [&key, &digest, &value, &"customer-4711".to_owned()] {
                assert!(
                    !v.contains(secret.as_str()),
                    "span {} field value {v:?} contains {secret:?}",
                    s.name
                );
            }
        }
    }
}
