//! Refresh ahead of expiry. In their own test binary (cargo runs test binaries one after
//! another), so the 100-thread tests cannot starve the background refresh task of CPU.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{counting_test_key, ctx};
use larder_envelope::{DataKeyLimits, Envelope};

/// Refresh ahead of expiry: a steady stream of encrypts over several key lifetimes waits on
/// the keyring only once (the cold start); every later key was generated in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_never_waits_on_the_keyring() {
    let keyring = counting_test_key(Some(Duration::from_millis(5)));
    let envelope = Envelope::builder(keyring.clone())
        // Refresh 300 ms before expiry: a wide margin for a 5 ms keyring on a loaded machine.
        .data_key_limits(DataKeyLimits { max_age: Duration::from_millis(400), ..DataKeyLimits::default() })
        .refresh_at(0.25)
        .build();
    let context = ctx();
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(2_000) {
        let ct = envelope.encrypt(b"010-1234-5678", &context).await.unwrap();
        assert_eq!(&*envelope.decrypt(&ct, &context).await.unwrap(), b"010-1234-5678");
        n += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let s = envelope.stats();
    assert_eq!(s.encrypt_cache_misses, 1, "only the cold start waited: {s:?}");
    assert_eq!(s.encrypt_cache_hits, n - 1);
    assert!(
        keyring.generate_calls() >= 4,
        "keys rotated by age in the background: {}",
        keyring.generate_calls()
    );
    assert_eq!(s.decrypt_calls, 0);
}

/// Same with message budgets: refreshed at 75% of 1,000 messages, every key fully used, and
/// the callers almost never wait (only the cold start, plus any refresh a 5 ms keyring did not
/// finish within the last 250 messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_budget_refresh_uses_keys_fully() {
    let keyring = counting_test_key(Some(Duration::from_millis(5)));
    let envelope = Envelope::builder(keyring.clone())
        .data_key_limits(DataKeyLimits { max_messages: 1_000, ..DataKeyLimits::default() })
        .build();
    let context = ctx();
    let mut per_edk: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..10_000u32 {
        let ct = envelope.encrypt(&i.to_be_bytes(), &context).await.unwrap();
        *per_edk.entry(ct[2..2 + 66].to_vec()).or_default() += 1;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(per_edk.len(), 10);
    assert!(per_edk.values().all(|n| *n == 1_000));
    let g = keyring.generate_calls();
    assert!(g == 10 || g == 11, "{g}");
    let s = envelope.stats();
    // Without refresh ahead every one of the 10 keys would be a wait.
    assert!(s.encrypt_cache_misses < 10, "{s:?}");
}
