//! No silent public MAC key on a shared tier (docs/cache.md, "Who can do what to a shared
//! tier"): a SQLite cache with no configured secret creates a per-store secret beside its file
//! (0600, owner-checked) and a frame forged with the public default key is a counted miss; a
//! Redis cache with no secret refuses to build unless the public key is opted into.
//!
//! These tests assume `LARDER_KEY_SECRET` is unset in the test environment (as in
//! scripts/test.sh): they check what happens without it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use larder_cache::frame::{self, FrameMeta, MacKey};
use larder_cache::store_secret::sqlite_secret_path;
use larder_cache::{Cache, CacheError, KeySecret, KeySpace};

const TTL: Duration = Duration::from_secs(600);

fn no_env_secret() {
    assert!(
        std::env::var_os("LARDER_KEY_SECRET").is_none(),
        "these tests check the behaviour without LARDER_KEY_SECRET: unset it"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn sqlite_without_a_secret_creates_a_private_per_store_secret_and_refuses_forgeries() {
    no_env_secret();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let url = format!("sqlite:{}", db.display());
    let space = KeySpace::new("per_store", 1).unwrap();

    let a = Cache::from_url(&url).unwrap();
    let secret_file = sqlite_secret_path(&db);
    let meta = std::fs::metadata(&secret_file).expect("the per-store secret exists after build");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), euid());
    let text = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(text.trim().len(), 64, "32 bytes in hex");
    assert_eq!(a.get_or_compute_blocking(&space, &1u32, TTL, || 11u64), 11);

    // A second process's cache (same file) reuses the secret: it is served the value.
    let b = Cache::from_url(&url).unwrap();
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), text, "the secret is not replaced");
    assert_eq!(b.get_or_compute_blocking(&space, &1u32, TTL, || 99u64), 11);
    assert_eq!(b.stats().shared_hits, 1);

    // Someone who can write the SQLite file but not read the secret forges a frame with the
    // public default key: every reader counts it as corrupt and computes.
    let key = space.key(&2u32).unwrap();
    let meta = FrameMeta { written_ms: now_ms(), ttl_ms: u64::MAX / 4, delta_ms: 0 };
    let forged = frame::seal(
        &MacKey::from_secret(&KeySecret::default_key()),
        key.as_str(),
        meta,
        &postcard::to_allocvec(&666u64).unwrap(),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO larder_entries (key, frame, expires_ms, written_ms, size) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![key.as_str(), forged, i64::MAX, 0i64, forged.len() as i64],
    )
    .unwrap();
    assert_eq!(b.get_or_compute_blocking(&space, &2u32, TTL, || 22u64), 22, "the forgery is not served");
    assert_eq!(b.stats().corrupt_entries, 1);
}

fn euid() -> u32 {
    // The owner of a file this process creates is its effective user.
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}

#[test]
fn an_unsafe_per_store_secret_is_refused_with_a_clear_error() {
    no_env_secret();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let url = format!("sqlite:{}", db.display());
    drop(Cache::from_url(&url).unwrap());
    let secret_file = sqlite_secret_path(&db);

    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Err(CacheError::Secret(msg)) = Cache::from_url(&url) else { panic!("a 0644 secret must be refused") };
    assert!(msg.contains("chmod 600") && msg.contains("LARDER_KEY_SECRET"), "{msg}");

    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Cache::from_url(&url).is_ok());

    // Owned by another user (needs root to arrange; the tests run as root in CI).
    if euid() == 0 {
        std::os::unix::fs::chown(&secret_file, Some(12345), None).unwrap();
        let Err(CacheError::Secret(msg)) = Cache::from_url(&url) else {
            panic!("a secret owned by another user must be refused")
        };
        assert!(msg.contains("owned by uid 12345"), "{msg}");
        std::os::unix::fs::chown(&secret_file, Some(0), None).unwrap();
    }

    std::fs::write(&secret_file, "not hex\n").unwrap();
    let Err(CacheError::Secret(msg)) = Cache::from_url(&url) else { panic!("garbage must be refused") };
    assert!(msg.contains("not a hex secret"), "{msg}");
}

#[test]
fn concurrent_first_opens_agree_on_one_secret() {
    no_env_secret();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let url = format!("sqlite:{}", db.display());
    let space = KeySpace::new("race", 1).unwrap();
    let caches: Vec<Cache> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| Cache::from_url(&url).unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(caches[0].get_or_compute_blocking(&space, &1u32, TTL, || 5u64), 5);
    for c in &caches[1..] {
        assert_eq!(
            c.get_or_compute_blocking(&space, &1u32, TTL, || 0u64),
            5,
            "every cache has the same secret"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn redis_without_a_secret_is_refused_unless_the_public_key_is_chosen() {
    no_env_secret();
    // Building does not connect, so no server is needed to see the refusal.
    for url in ["redis://127.0.0.1:1", "redis+cluster://127.0.0.1:1,127.0.0.1:2", "redis+unix:///tmp/x.sock"]
    {
        let Err(CacheError::Secret(msg)) = Cache::from_url(&format!("local:10,{url}")) else {
            panic!("{url}: a Redis tier without a secret must be refused")
        };
        assert!(msg.contains("LARDER_KEY_SECRET") && msg.contains("insecure_public_mac=true"), "{msg}");
        assert!(Cache::from_url(&format!("local:10,{url}?insecure_public_mac=true")).is_ok());
        assert!(Cache::builder().shared_url(url).insecure_public_mac(true).build().is_ok());
        assert!(Cache::from_url(&format!("local:10,{url}?secret={}", "ab".repeat(32))).is_ok());
        assert!(Cache::builder()
            .shared_url(url)
            .secret(&KeySecret::from_bytes(&[1; 32]).unwrap())
            .build()
            .is_ok());
    }
    let Err(CacheError::Secret(_)) =
        Cache::from_url(&format!("redis://127.0.0.1:1?secret={}", "ab".repeat(8)))
    else {
        panic!("a short secret must be refused")
    };
}
