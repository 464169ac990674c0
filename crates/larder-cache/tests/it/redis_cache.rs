//! The cache over real Redis (single server and cluster), in one process: entries that are not
//! ours — garbage, truncated, forged (valid frame, wrong MAC), moved from another key, of an
//! unknown version — are counted misses and never returned; a Redis crash mid-use is answered
//! by computing, and the same cache uses Redis again after the restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use larder_cache::frame::{self, FrameMeta, MacKey};
use larder_cache::redis::{connect, value_key, RedisOptions, RedisTier};
use larder_cache::{Cache, KeySecret, KeySpace, SharedTier};
use larder_testkit::redis::{RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(600);

/// Builds the bytes to plant under a key text.
type MakeEntry = Box<dyn Fn(&str) -> Vec<u8>>;

fn secret() -> KeySecret {
    KeySecret::from_bytes(&[0x5a; 32]).unwrap()
}

fn cache(url: &str) -> Cache {
    Cache::builder().shared_url(url).secret(&secret()).op_timeout(Duration::from_secs(2)).build().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Writes `bytes` under the real Redis name of `text`, bypassing the cache.
async fn poison(raw: &RedisTier, text: &str, bytes: &[u8]) {
    raw.set(text, bytes, TTL).await.unwrap();
    assert_eq!(raw.get(text).await.unwrap().as_deref(), Some(bytes));
}

async fn foreign_entries_are_counted_misses(url: &str) {
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let raw = connect(url, RedisOptions::default().timeout(Duration::from_secs(2))).unwrap();
    let good_mac = MacKey::from_secret(&secret());
    let evil_mac = MacKey::from_secret(&KeySecret::from_bytes(&[0x66; 32]).unwrap());
    let meta = FrameMeta { written_ms: now_ms(), ttl_ms: 600_000, delta_ms: 5 };
    let forged_payload = postcard::to_allocvec(&666_666u64).unwrap();

    // The layout assumption the poisoning relies on: a normal store lands under value_key(text).
    let c = cache(url);
    let probe = (0u32, 0u32);
    assert_eq!(c.get_or_compute(&space, &probe, TTL, || async { 1u64 }).await, 1);
    let probe_text = space.key(&probe).unwrap().as_str().to_owned();
    assert!(raw.get(&probe_text).await.unwrap().is_some(), "cache did not store under {probe_text:?}");
    let probe_frame = raw.get(&probe_text).await.unwrap().unwrap();
    assert_eq!(value_key("larder:", &probe_text), raw.value_key(&probe_text));

    let mut cases: Vec<(&str, MakeEntry)> = Vec::new();
    cases.push(("garbage", Box::new(|_| b"\x00\xffnot a frame at all, just bytes \x80\x81".to_vec())));
    cases.push(("empty", Box::new(|_| Vec::new())));
    cases.push(("a real frame truncated", {
        let f = probe_frame.clone();
        Box::new(move |_| f[..f.len() - 1].to_vec())
    }));
    cases.push(("forged (valid frame, MAC under another secret)", {
        let p = forged_payload.clone();
        Box::new(move |text| frame::seal(&evil_mac, text, meta, &p).unwrap())
    }));
    cases.push(("a genuine frame moved from another key", {
        let f = probe_frame.clone();
        Box::new(move |_| f.clone())
    }));
    cases.push(("genuine MAC but an unknown frame version", {
        let p = forged_payload.clone();
        Box::new(move |text| {
            let mut f = frame::seal(&good_mac, text, meta, &p).unwrap();
            f[2] = frame::VERSION + 1;
            f
        })
    }));
    cases.push(("one flipped payload bit", {
        let p = forged_payload.clone();
        let mac = MacKey::from_secret(&secret());
        Box::new(move |text| {
            let mut f = frame::seal(&mac, text, meta, &p).unwrap();
            f[frame::HEADER_LEN] ^= 1;
            f
        })
    }));

    for (i, (what, make)) in cases.iter().enumerate() {
        let args = (7u32, i as u32 + 1);
        let text = space.key(&args).unwrap().as_str().to_owned();
        poison(&raw, &text, &make(&text)).await;
        let c = cache(url); // fresh: no local tier, no single-flight memory
        let before = c.stats();
        let computed = Arc::new(AtomicU64::new(0));
        let k = Arc::clone(&computed);
        let v = c
            .get_or_compute(&space, &args, TTL, || async move {
                k.fetch_add(1, Ordering::SeqCst);
                42u64
            })
            .await;
        let after = c.stats();
        assert_eq!(v, 42, "{what}: a foreign entry was returned");
        assert_eq!(computed.load(Ordering::SeqCst), 1, "{what}: not treated as a miss");
        assert_eq!(after.corrupt_entries - before.corrupt_entries, 1, "{what}: not counted as corrupt");
        assert_eq!(after.shared_hits, before.shared_hits, "{what}: counted as a hit");
        // The cache replaced it with its own frame: a new process now hits.
        let c2 = cache(url);
        let v2 = c2.get_or_compute(&space, &args, TTL, || async { 0u64 }).await;
        assert_eq!(v2, 42, "{what}: the recomputed value was not stored over the foreign entry");
        assert_eq!(c2.stats().shared_hits, 1);
        assert_eq!(c2.stats().corrupt_entries, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entries_are_misses_on_a_single_server() {
    let _timed = crate::common::timed();
    let server = RedisServer::start();
    foreign_entries_are_counted_misses(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entries_are_misses_on_the_cluster() {
    let _timed = crate::common::timed();
    let cluster = RedisCluster::start(3);
    foreign_entries_are_counted_misses(&cluster.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_answered_by_computing_and_the_cache_comes_back() {
    let _timed = crate::common::timed();
    let mut server = RedisServer::start();
    let space = KeySpace::new("outage", 1).unwrap();
    let c = Cache::builder()
        .shared_url(&server.url())
        .secret(&secret())
        .op_timeout(Duration::from_millis(200))
        .breaker(3, Duration::from_millis(300))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let get = |i: u32| {
        let calls = Arc::clone(&calls);
        let c = c.clone();
        let space = space.clone();
        async move {
            c.get_or_compute(&space, &i, TTL, || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                u64::from(i) * 3
            })
            .await
        }
    };
    for i in 0..20 {
        assert_eq!(get(i).await, u64::from(i) * 3);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    for i in 0..20 {
        assert_eq!(get(i).await, u64::from(i) * 3);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20, "warm cache recomputed");

    server.kill9();
    for round in 0..3 {
        for i in 0..20 {
            assert_eq!(get(i).await, u64::from(i) * 3, "round {round}");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 80, "every call during the outage computes (no local tier)");
    assert!(c.stats().store_errors > 0);

    server.restart();
    // The breaker probes again after its cooldown; values get stored on the new server.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let before = calls.load(Ordering::SeqCst);
        for i in 0..20 {
            assert_eq!(get(i).await, u64::from(i) * 3);
        }
        if calls.load(Ordering::SeqCst) == before {
            break; // a whole round served by Redis
        }
        assert!(std::time::Instant::now() < deadline, "the cache never used Redis again after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!c.breaker_open());
    assert!(
        server.command(&["DBSIZE"]).parse::<u64>().unwrap() >= 20,
        "values not stored on the restarted server"
    );
}
