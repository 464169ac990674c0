//! An axum service with a memoized handler and a Prometheus endpoint.
//!
//! * `GET /quote/{id}` answers through an `async` `#[memoize]` function on a cache configured
//!   from `LARDER_CACHE` (e.g. `local:10000,sqlite:/var/tmp/quotes.db`; unset: local only).
//! * `GET /metrics` renders every `larder_cache_*` series in Prometheus' text format
//!   (`metrics-exporter-prometheus` as the process's `metrics` recorder): hits and misses by
//!   tier and namespace, computations, `larder_cache_call_seconds`, … (docs/cache.md,
//!   "Observability").
//!
//! ```text
//! cargo run -p larder-cache --example axum_prometheus -- 127.0.0.1:3000
//! curl 127.0.0.1:3000/quote/42; curl 127.0.0.1:3000/quote/42; curl 127.0.0.1:3000/metrics
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections (the address may end in `:0`:
//! the line has the real port). `tests/it/axum_example.rs` starts it, makes requests and
//! checks what a scrape says.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use larder_cache::{memoize, Cache};
use metrics_exporter_prometheus::PrometheusBuilder;

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache::from_env().unwrap_or_else(|e| panic!("LARDER_CACHE: {e}")));

/// The expensive part of a request: computed once per id per TTL for every caller of the
/// cache (and, with a shared tier, for every process on it).
#[memoize(cache = &*CACHE, namespace = "quote", ttl = "10m")]
async fn quote(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    id * 1_000 + 7
}

async fn quote_handler(Path(id): Path<u64>) -> String {
    quote(id).await.to_string()
}

#[tokio::main]
async fn main() {
    // The recorder first: the cache registers its handles with the recorder installed then.
    let prometheus = PrometheusBuilder::new().install_recorder().expect("install the Prometheus recorder");
    LazyLock::force(&CACHE);
    let app = Router::new()
        .route("/quote/{id}", get(quote_handler))
        .route("/metrics", get(move || std::future::ready(prometheus.render())));
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!("listening on {}", listener.local_addr().expect("local address"));
    axum::serve(listener, app).await.expect("serve");
}
