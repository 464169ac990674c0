//! `#[memoize]` on sync and async free functions and methods, with every option.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use larder_cache::{memoize, Cache, StableKey};
use serde::{Deserialize, Serialize};

#[derive(StableKey, Clone)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Quote {
    monthly_won: u64,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

#[memoize(namespace = "loan_calc", version = 1, ttl = "10m")]
fn quote(q: LoanQuote) -> Quote {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Quote { monthly_won: q.amount_won * u64::from(q.rate_bp) / 10_000 / u64::from(q.term_months) + q.user_id }
}

#[test]
fn sync_free_function_computes_once_per_input() {
    let q = LoanQuote { user_id: 1, amount_won: 1_200_000, rate_bp: 500, term_months: 12 };
    let before = CALLS.load(Ordering::SeqCst);
    let a = quote(q.clone());
    let b = quote(q.clone());
    assert_eq!(a, b);
    assert_eq!(CALLS.load(Ordering::SeqCst) - before, 1);
    let _ = quote(LoanQuote { user_id: 2, ..q });
    assert_eq!(CALLS.load(Ordering::SeqCst) - before, 2);
}

static ASYNC_CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug, PartialEq)]
struct CalcError(String);

#[memoize(ttl = "1h")]
async fn checked(x: u32, label: String) -> Result<u64, CalcError> {
    ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    if x == 0 {
        return Err(CalcError(format!("{label}: zero")));
    }
    let doubled = u64::from(x).checked_mul(2).ok_or_else(|| CalcError("overflow".into()))?;
    Ok(doubled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_result_caches_only_ok_and_single_flights() {
    let before = ASYNC_CALLS.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..16).map(|_| tokio::spawn(checked(21, "a".into()))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(42));
    }
    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst) - before, 1, "16 concurrent callers, one computation");
    let before = ASYNC_CALLS.load(Ordering::SeqCst);
    assert_eq!(checked(0, "z".into()).await, Err(CalcError("z: zero".into())));
    assert_eq!(checked(0, "z".into()).await, Err(CalcError("z: zero".into())));
    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst) - before, 2, "errors are not cached");
}

static ERR_CALLS: AtomicU32 = AtomicU32::new(0);

#[memoize(cache_err, ttl = "1m")]
fn cached_err(x: u32) -> Result<u32, String> {
    ERR_CALLS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x)
    }
}

#[test]
fn cache_err_caches_errors_too() {
    assert_eq!(cached_err(0), Err("zero".to_string()));
    assert_eq!(cached_err(0), Err("zero".to_string()));
    assert_eq!(ERR_CALLS.load(Ordering::SeqCst), 1);
}

static MY_CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().local(100).build().unwrap());

struct Pricer {
    markup: u64,
    calls: AtomicU32,
}

#[derive(StableKey)]
struct Tariff {
    region: String,
}

impl Pricer {
    #[memoize(cache = &*MY_CACHE, namespace = "pricer", ttl = "30s")]
    fn price(&self, item: u32) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        u64::from(item) + self.markup
    }

    #[memoize(cache = MY_CACHE.clone(), namespace = "pricer_async", key = item / 10)]
    async fn bucket(&self, item: u32) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        u64::from(item / 10) * self.markup
    }
}

impl Tariff {
    #[memoize(cache = &*MY_CACHE, namespace = "tariff", receiver)]
    fn rate(&self, weight: u32) -> u64 {
        u64::from(weight) * self.region.len() as u64
    }
}

#[tokio::test]
async fn methods_with_explicit_cache_and_key() {
    let p = Pricer { markup: 5, calls: AtomicU32::new(0) };
    assert_eq!(p.price(10), 15);
    assert_eq!(p.price(10), 15);
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    // The receiver is not part of the key: another Pricer shares the entry.
    let q = Pricer { markup: 1000, calls: AtomicU32::new(0) };
    assert_eq!(q.price(10), 15);
    // key = item / 10: 31 and 39 share an entry.
    assert_eq!(p.bucket(31).await, 15);
    assert_eq!(p.bucket(39).await, 15);
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    // receiver opted in: different receivers, different entries.
    let a = Tariff { region: "seoul".into() };
    let b = Tariff { region: "busan-si".into() };
    assert_eq!(a.rate(2), 10);
    assert_eq!(b.rate(2), 16);
    assert!(MY_CACHE.stats().local_hits >= 2);
}

#[memoize]
fn default_namespace(x: u8) -> u8 {
    x
}

#[test]
fn default_namespace_is_sanitized_module_path() {
    assert_eq!(default_namespace(3), 3);
    assert_eq!(
        larder_cache::__private::sanitize_namespace("memoize::default_namespace"),
        "memoize.default_namespace"
    );
    assert_eq!(larder_cache::__private::sanitize_namespace("a::B<T>"), "a.b_t_");
    let long = larder_cache::__private::sanitize_namespace(&"x".repeat(100));
    assert_eq!(long.len(), 64);
    assert!(larder_cache::KeySpace::new(&long, 1).is_ok());
}

#[test]
fn arc_errors_are_shareable() {
    // A non-Clone error wrapped in Arc works with try_get_or_compute.
    let cache = Cache::builder().local(10).build().unwrap();
    let space = larder_cache::KeySpace::new("io", 1).unwrap();
    let r: Result<u32, Arc<std::io::Error>> =
        cache.try_get_or_compute_blocking(&space, &1u8, Duration::from_secs(1), || {
            Err(Arc::new(std::io::Error::other("boom")))
        });
    assert!(r.is_err());
}

// ---- companions (`handles`) in one process; across processes: tests/it/handles.rs ----

static LIMIT_CALLS: AtomicU32 = AtomicU32::new(0);
static LIMIT_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[memoize(cache = &*MY_CACHE, namespace = "limit", ttl = "1m")]
fn limit(user: u64, value: u32) -> Result<u64, CalcError> {
    LIMIT_CALLS.fetch_add(1, Ordering::SeqCst);
    if LIMIT_FAILS.load(Ordering::SeqCst) {
        return Err(CalcError("scoring service down".into()));
    }
    Ok(user * 100 + u64::from(value) + u64::from(LIMIT_CALLS.load(Ordering::SeqCst)))
}

#[test]
fn module_handles_on_a_fallible_fn() {
    let first = limit(7, 1).unwrap();
    assert_eq!(LIMIT_CALLS.load(Ordering::SeqCst), 1);
    // An argument named `value` does not clash with prime's value parameter.
    assert_eq!(limit::peek(7, 1), Some(first));
    // The key of the call path: namespace "limit", version 1, the arguments as a tuple (no
    // LARDER_KEY_SECRET in this test's environment).
    let expected = larder_cache::KeySpace::new("limit", 1).unwrap().key(&(&7u64, &1u32)).unwrap();
    assert_eq!(limit::key(7, 1).as_deref(), Some(expected.as_str()));
    // A failed refresh returns the error and leaves the entry alone.
    LIMIT_FAILS.store(true, Ordering::SeqCst);
    assert_eq!(limit::refresh(7, 1), Err(CalcError("scoring service down".into())));
    assert_eq!(limit(7, 1), Ok(first), "the cached value survives a failed refresh");
    LIMIT_FAILS.store(false, Ordering::SeqCst);
    let refreshed = limit::refresh(7, 1).unwrap();
    assert_ne!(refreshed, first);
    assert_eq!(limit(7, 1), Ok(refreshed));
    assert_eq!(LIMIT_CALLS.load(Ordering::SeqCst), 3, "1 call + 2 refreshes");
    limit::prime(7, 2, 42);
    assert_eq!(limit(7, 2), Ok(42));
    limit::invalidate(7, 2);
    assert_eq!(limit::peek(7, 2), None);
    assert_eq!(LIMIT_CALLS.load(Ordering::SeqCst), 3);
}

#[derive(StableKey)]
struct Ledger {
    region: String,
    #[stable_key(skip)]
    calls: AtomicU32,
}

impl Ledger {
    #[memoize(cache = &*MY_CACHE, namespace = "ledger", receiver, handles = "assoc")]
    async fn balance(&self, account: u32) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        u64::from(account) * self.region.len() as u64 + u64::from(self.calls.load(Ordering::SeqCst))
    }

    #[memoize(cache = &*MY_CACHE, namespace = "ledger_fee", handles = "assoc")]
    fn fee(account: u32) -> u64 {
        u64::from(account) + 1
    }
}

#[tokio::test]
async fn assoc_handles_on_methods() {
    let seoul = Ledger { region: "seoul".into(), calls: AtomicU32::new(0) };
    let busan = Ledger { region: "busan-si".into(), calls: AtomicU32::new(0) };
    let v = seoul.balance(3).await;
    assert_eq!(v, 16);
    // The receiver is part of the key: busan's entry is separate.
    assert_eq!(seoul.balance_peek(3).await, Some(16));
    assert_eq!(busan.balance_peek(3).await, None);
    assert_ne!(seoul.balance_key(3), busan.balance_key(3));
    assert_eq!(seoul.balance_refresh(3).await, 17);
    assert_eq!(seoul.balance(3).await, 17);
    seoul.balance_prime(4, 99).await;
    assert_eq!(seoul.balance(4).await, 99);
    seoul.balance_invalidate(4).await;
    assert_eq!(seoul.balance_peek(4).await, None);
    assert_eq!(seoul.calls.load(Ordering::SeqCst), 2);

    assert_eq!(Ledger::fee(1), 2);
    assert_eq!(Ledger::fee_peek(1), Some(2));
    Ledger::fee_prime(1, 5);
    assert_eq!(Ledger::fee(1), 5);
    assert!(Ledger::fee_space().is_some());
}

trait Scorer {
    fn score(&self, x: u32) -> u32;
}

impl Scorer for Pricer {
    // In a trait impl no extra items may be added: methods get no companions by default.
    #[memoize(cache = &*MY_CACHE, namespace = "scorer")]
    fn score(&self, x: u32) -> u32 {
        x + 1
    }
}

#[test]
fn memoized_trait_methods_and_fns_in_function_bodies() {
    let p = Pricer { markup: 0, calls: AtomicU32::new(0) };
    assert_eq!(p.score(1), 2);
    // Inside a function body, with a type declared there too: the companions see both.
    #[derive(StableKey)]
    struct Local(u32);
    #[memoize(cache = &*MY_CACHE, namespace = "local_fn")]
    fn local_fn(x: Local) -> u32 {
        x.0 * 3
    }
    assert_eq!(local_fn(Local(2)), 6);
    assert_eq!(local_fn::peek(Local(2)), Some(6));
    local_fn::prime(Local(4), 1);
    assert_eq!(local_fn(Local(4)), 1);
    #[memoize(cache = &*MY_CACHE, namespace = "no_handles", handles = "none")]
    fn no_handles(x: u32) -> u32 {
        x
    }
    assert_eq!(no_handles(1), 1);
}

// ---- fallible functions whose error is not Clone ----

/// Not `Clone` (it holds an `io::Error`), but convertible from `LeaderFailed`.
#[derive(Debug)]
enum FetchError {
    Io(std::io::Error),
    Waited(larder_cache::LeaderFailed),
}

impl From<larder_cache::LeaderFailed> for FetchError {
    fn from(e: larder_cache::LeaderFailed) -> Self {
        FetchError::Waited(e)
    }
}

static FETCHES: AtomicU32 = AtomicU32::new(0);

#[memoize(cache = &*MY_CACHE, namespace = "fetch", ttl = "1m")]
fn fetch(id: u32) -> Result<u32, FetchError> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    if id == 0 {
        return Err(FetchError::Io(std::io::Error::other("connection reset")));
    }
    Ok(id)
}

static PLAIN_FETCHES: AtomicU32 = AtomicU32::new(0);

/// Neither `Clone` nor `From<LeaderFailed>`.
#[memoize(cache = &*MY_CACHE, namespace = "plain_fetch", ttl = "1m")]
fn plain_fetch(id: u32) -> Result<u32, std::io::Error> {
    PLAIN_FETCHES.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    if id == 0 {
        return Err(std::io::Error::other("connection reset"));
    }
    Ok(id)
}

#[test]
fn non_clone_errors_reach_waiters_as_leader_failed_or_recompute() {
    // 4 threads at once on a failing input: one leads and gets its io error; the 3 waiters
    // get LeaderFailed through From — and the function ran once.
    let results: Vec<Result<u32, FetchError>> = std::thread::scope(|s| {
        (0..4)
            .map(|_| s.spawn(|| fetch(0)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(FETCHES.load(Ordering::SeqCst), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(FetchError::Io(e)) if e.to_string() == "connection reset"))
            .count(),
        1
    );
    let waited: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Err(FetchError::Waited(w)) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(waited.len(), 3);
    assert!(waited[0].to_string().contains("FetchError"), "{}", waited[0]);
    assert!(waited[0].error_type().ends_with("FetchError"));
    // Ok values are shared as before.
    assert_eq!(fetch(5).unwrap(), 5);
    assert_eq!(fetch(5).unwrap(), 5);
    assert_eq!(FETCHES.load(Ordering::SeqCst), 2);

    // No way to share the error: each waiter computes itself, one at a time (4 runs, each
    // caller gets a real io::Error).
    let started = std::time::Instant::now();
    let results: Vec<Result<u32, std::io::Error>> = std::thread::scope(|s| {
        (0..4)
            .map(|_| s.spawn(|| plain_fetch(0)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    assert!(results.iter().all(|r| r.as_ref().is_err_and(|e| e.to_string() == "connection reset")));
    assert_eq!(PLAIN_FETCHES.load(Ordering::SeqCst), 4);
    assert!(started.elapsed() >= Duration::from_millis(600), "waiters took turns, not all at once");
}

#[test]
fn cache_error_has_a_source() {
    use std::error::Error as _;
    let e = Cache::from_url(
        "redis://127.0.0.1:1?colour=blue&secret=6c61726465722074657374206d6163207365637265742c203332206279746573",
    ).unwrap_err();
    assert!(e.source().is_some(), "{e}");
    assert!(e.source().unwrap().to_string().contains("colour"));
}

// ---- companions of generic functions and of `key = …` ----

#[memoize(cache = &*MY_CACHE, namespace = "generic_len", ttl = "1m")]
fn generic_len<T: StableKey + AsRef<str>>(s: T) -> usize {
    s.as_ref().len()
}

#[memoize(cache = &*MY_CACHE, namespace = "by_user", key = q.user_id, ttl = "1m")]
fn by_user(q: LoanQuote) -> u64 {
    q.amount_won
}

#[test]
fn companions_of_generic_fns_and_key_expressions() {
    assert_eq!(generic_len("abcd".to_string()), 4);
    assert_eq!(generic_len::peek("abcd".to_string()), Some(4));
    let q = LoanQuote { user_id: 9, amount_won: 100, rate_bp: 1, term_months: 1 };
    assert_eq!(by_user(q.clone()), 100);
    // key = q.user_id: another quote of the same user is the same entry, for the companions too.
    let other = LoanQuote { amount_won: 555, ..q.clone() };
    assert_eq!(by_user::peek(other.clone()), Some(100));
    assert_eq!(
        by_user::key(other.clone()),
        larder_cache::KeySpace::new("by_user", 1).unwrap().key(&9u64).ok().map(|k| k.as_str().to_owned())
    );
    by_user::invalidate(other.clone());
    assert_eq!(by_user(other), 555);
}
