//! Local keyring file parse (`LocalKeyring::load`), through the real file path: the input is
//! written to a private (0600) file on tmpfs and loaded, so the size limit, the UTF-8 check and
//! the parser all run as they do for `larder keys` and `LARDER_KEYRING`.
//!
//! Oracles, beyond "no panic" and "a typed error for every refusal": a file that loads has
//! exactly one primary key and loads the same way twice; its keyring encrypts and decrypts;
//! after `LocalKeyring::rotate` the file still loads, has one more key and a new primary, and
//! the old ciphertext still decrypts with the rotated keyring.
#![no_main]

use std::fs;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};
use libfuzzer_sys::fuzz_target;

fn now<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a local-keyring envelope future was not ready at once"),
    }
}

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("larder-fuzz-keyring-{}", std::process::id()));
        fs::create_dir_all(&d).expect("create the fuzz keyring dir");
        d
    })
}

fn write_private(path: &PathBuf, data: &[u8]) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create keyring file");
    f.write_all(data).expect("write keyring file");
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("keyring");
    write_private(&path, data);
    let Ok(keyring) = LocalKeyring::load(&path) else {
        // Every refusal is an `Err` (typed); loading again must refuse again.
        assert!(LocalKeyring::load(&path).is_err(), "a refused keyring file loaded on the second try");
        return;
    };
    let infos = keyring.key_infos();
    assert_eq!(infos.iter().filter(|k| k.primary).count(), 1, "loaded keyring without exactly one primary");
    let again = LocalKeyring::load(&path).expect("a keyring file that loaded once failed to load again");
    assert_eq!(again.key_infos(), infos, "loading the same file twice differs");

    let ctx = EncryptionContext::new().with("t", "fuzz");
    let env = Envelope::builder(keyring).build();
    let ct = now(env.encrypt(b"010-1234-5678", &ctx)).expect("encrypt with a loaded keyring failed");
    assert_eq!(&now(env.decrypt(&ct, &ctx)).expect("decrypt failed")[..], b"010-1234-5678");

    let new_id = LocalKeyring::rotate(&path).expect("rotating a valid keyring file failed");
    let rotated = LocalKeyring::load(&path).expect("a rotated keyring file does not load");
    let rinfos = rotated.key_infos();
    assert_eq!(rinfos.len(), infos.len() + 1, "rotation did not add exactly one key");
    assert!(rinfos.iter().any(|k| k.primary && k.id == new_id), "rotation did not make the new key primary");
    let renv = Envelope::builder(rotated).build();
    assert_eq!(
        &now(renv.decrypt(&ct, &ctx)).expect("an old ciphertext does not decrypt after rotation")[..],
        b"010-1234-5678"
    );
});
