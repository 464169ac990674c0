//! Uses larder the way an application does: through the facade only (no direct dependency on
//! larder-key, larder-cache or larder-envelope in the paths the macros generate).

use std::sync::atomic::{AtomicUsize, Ordering};

use larder::cache::Cache;
use larder::envelope::{EncryptionContext, Envelope, LocalKeyring};
use larder::{memoize, KeySpace, StableKey};

#[derive(StableKey, Clone)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn facade_cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Cache::from_url("local:1000").expect("a local-only cache"))
}

#[memoize(namespace = "facade_test", version = 1, ttl = "1m", cache = facade_cache())]
fn quote(q: LoanQuote) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    q.amount_won / u64::from(q.term_months)
}

#[test]
fn derive_and_memoize_work_through_the_facade() {
    let q = LoanQuote { user_id: 1, amount_won: 3_600, rate_bp: 1, term_months: 36 };
    assert_eq!(quote(q.clone()), 100);
    assert_eq!(quote(q.clone()), 100);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the second call must be a hit");
    let other = LoanQuote { term_months: 12, ..q };
    assert_eq!(quote(other), 300);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

#[test]
fn keys_through_the_facade_equal_keys_through_larder_key() {
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let via_facade = space.key(&(7u64, "x")).unwrap();
    let via_crate = larder::key::KeySpace::new("loan_calc", 1).unwrap().key(&(7u64, "x")).unwrap();
    assert_eq!(via_facade, via_crate);
}

#[test]
fn envelope_and_mask_through_the_facade() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::init(dir.path().join("keyring")).unwrap();
    let envelope = Envelope::builder(keyring).build();
    let ctx = EncryptionContext::new().with("column", "phone");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let phone = rt
        .block_on(async {
            let stored = envelope.encrypt_text("010-1234-5678", &ctx).await?;
            envelope.decrypt_text(&stored, &ctx).await
        })
        .unwrap();
    assert_eq!(larder::mask::phone(&phone).unwrap(), "010-****-5678");
}
