//! The security review's smaller findings (issue 9, item 5), each shown on the real thing:
//! keyring files owned by another user or in a directory others can write are refused; wraps
//! under a local master key are counted and limited; a bogus EDK costs one keyring call per
//! negative-cache window.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use larder_envelope::{
    CountingKeyring, EncryptionContext, Envelope, EnvelopeError, Keyring, KeyringFileError, LocalKeyring,
    MAX_WRAPS_PER_MASTER_KEY, NEGATIVE_DECRYPT_TTL,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn euid() -> u32 {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}

#[test]
fn keyring_owned_by_another_user_is_refused() {
    let me = euid();
    if me != 0 {
        // Making a file owned by someone else needs root; CI runs the tests as root.
        panic!("this test needs root to chown a keyring file to another user (run the tests as root, as CI does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
    let err = LocalKeyring::load(&path).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::KeyringFile(KeyringFileError::NotOwned {
            path: path.display().to_string(),
            owner: 4242,
            euid: me
        })
    );
    assert!(err.to_string().contains("chown 0"), "{err}");
    // Rotation reads the file the same way: refused, and the file is untouched.
    let before = fs::read(&path).unwrap();
    assert!(matches!(
        LocalKeyring::rotate(&path),
        Err(EnvelopeError::KeyringFile(KeyringFileError::NotOwned { .. }))
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
    std::os::unix::fs::chown(&path, Some(me), None).unwrap();
    assert!(LocalKeyring::load(&path).is_ok());
}

#[test]
fn keyring_in_a_directory_others_can_write_is_refused_unless_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("keys");
    fs::create_dir(&sub).unwrap();
    let path = sub.join("keyring");
    LocalKeyring::init(&path).unwrap();
    for mode in [0o777, 0o775, 0o757, 0o730] {
        fs::set_permissions(&sub, fs::Permissions::from_mode(mode)).unwrap();
        let err = LocalKeyring::load(&path).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::KeyringFile(KeyringFileError::InsecureDirectory {
                path: sub.display().to_string(),
                mode
            }),
            "mode {mode:o}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        assert!(matches!(
            LocalKeyring::init(sub.join("other")),
            Err(EnvelopeError::KeyringFile(KeyringFileError::InsecureDirectory { .. }))
        ));
    }
    // The sticky bit (as on /tmp): only the owner may rename or delete the file. Accepted.
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(LocalKeyring::load(&path).is_ok());
    for mode in [0o755, 0o700, 0o750] {
        fs::set_permissions(&sub, fs::Permissions::from_mode(mode)).unwrap();
        assert!(LocalKeyring::load(&path).is_ok(), "mode {mode:o}");
    }
}

#[test]
fn wraps_under_a_master_key_are_counted_and_limited() {
    assert_eq!(MAX_WRAPS_PER_MASTER_KEY, 1 << 31);
    let kr = LocalKeyring::from_key_bytes("k1", [3; 32]).unwrap().with_wrap_limit(5);
    let ctx = EncryptionContext::new().with("t", "x");
    let rt = rt();
    for i in 1..=5u64 {
        rt.block_on(kr.generate_data_key(&ctx)).unwrap();
        assert_eq!(kr.wraps("k1"), Some(i));
    }
    let Err(err) = rt.block_on(kr.generate_data_key(&ctx)) else { panic!("the sixth wrap must be refused") };
    assert_eq!(err, EnvelopeError::WrapLimitReached { key_id: "k1".into(), limit: 5 });
    assert!(err.to_string().contains("larder keys rotate"), "{err}");
    assert_eq!(kr.wraps("k1"), Some(5), "a refused wrap is not counted");

    // Through an envelope without caching (one data key per message): the sixth message fails.
    let kr = Arc::new(LocalKeyring::from_key_bytes("k1", [3; 32]).unwrap().with_wrap_limit(5));
    let env = Envelope::builder(kr.clone()).no_cache().build();
    rt.block_on(async {
        for _ in 0..5 {
            env.encrypt(b"v", &ctx).await.unwrap();
        }
        assert!(matches!(env.encrypt(b"v", &ctx).await, Err(EnvelopeError::WrapLimitReached { .. })));
    });

    // Rotation moves the primary to a fresh key with its own count.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    let kr = LocalKeyring::load(&path).unwrap().with_wrap_limit(1);
    rt.block_on(kr.generate_data_key(&ctx)).unwrap();
    assert!(rt.block_on(kr.generate_data_key(&ctx)).is_err());
    LocalKeyring::rotate(&path).unwrap();
    let kr = LocalKeyring::load(&path).unwrap().with_wrap_limit(1);
    rt.block_on(kr.generate_data_key(&ctx)).unwrap();
    assert_eq!(kr.wraps("k2"), Some(1));
}

#[test]
fn a_bogus_edk_costs_one_keyring_call_per_negative_window() {
    let keyring = Arc::new(CountingKeyring::new(LocalKeyring::from_key_bytes("k1", [9; 32]).unwrap()));
    let env = Envelope::builder(keyring.clone()).build();
    let ctx = EncryptionContext::new().with("table", "t");
    let rt = rt();
    let good = rt.block_on(env.encrypt(b"010-1234-5678", &ctx)).unwrap();
    // Flip one byte inside the EDK (after version, algorithm, kind, key id length, "k1",
    // EDK length): the keyring refuses to unwrap it.
    let edk_start = 4 + 2 + 2;
    let mut bogus = good.clone();
    bogus[edk_start + 20] ^= 0x01;
    // A fresh envelope, so nothing is cached from the encryption.
    let keyring = Arc::new(CountingKeyring::new(LocalKeyring::from_key_bytes("k1", [9; 32]).unwrap()));
    let env = Envelope::builder(keyring.clone()).build();
    rt.block_on(async {
        for _ in 0..200 {
            assert!(matches!(
                env.decrypt(&bogus, &ctx).await,
                Err(EnvelopeError::InvalidEncryptedDataKey(_))
            ));
        }
    });
    assert_eq!(keyring.decrypt_calls(), 1, "200 attempts within the window, one keyring call");
    // A genuine ciphertext is not affected.
    assert_eq!(&rt.block_on(env.decrypt(&good, &ctx)).unwrap()[..], b"010-1234-5678");
    assert_eq!(keyring.decrypt_calls(), 2);
    // The same bogus EDK under another context is another (EDK, context): one more call.
    let other = EncryptionContext::new().with("table", "u");
    assert!(rt.block_on(env.decrypt(&bogus, &other)).is_err());
    assert_eq!(keyring.decrypt_calls(), 3);
    // After the window the keyring is asked again, once.
    std::thread::sleep(NEGATIVE_DECRYPT_TTL + Duration::from_millis(100));
    rt.block_on(async {
        for _ in 0..50 {
            assert!(env.decrypt(&bogus, &ctx).await.is_err());
        }
    });
    assert_eq!(keyring.decrypt_calls(), 4);
}
