//! The local keyring file: creation, permissions, rotation, corrupt files.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::ctx;
use larder_envelope::{Envelope, EnvelopeError, KeyringFileError, LocalKeyring};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn init_creates_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    let kr = LocalKeyring::init(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let infos = kr.key_infos();
    assert_eq!(infos.len(), 1);
    assert!(infos[0].primary && infos[0].id == "k1");
    let before = fs::read(&path).unwrap();
    assert!(matches!(
        LocalKeyring::init(&path),
        Err(EnvelopeError::KeyringFile(KeyringFileError::AlreadyExists(_)))
    ));
    assert_eq!(fs::read(&path).unwrap(), before, "the existing keyring is untouched");
    let text = String::from_utf8(before).unwrap();
    assert!(text.starts_with("larder-keyring 1\n"));
}

#[test]
fn group_or_world_accessible_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o004] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        match LocalKeyring::load(&path) {
            Err(EnvelopeError::KeyringFile(KeyringFileError::InsecurePermissions { mode: m, .. })) => {
                assert_eq!(m, mode & 0o777)
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
        let msg = LocalKeyring::load(&path).unwrap_err().to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    LocalKeyring::load(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    LocalKeyring::load(&path).unwrap();
}

#[test]
fn rotate_keeps_old_keys_and_switches_primary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    let c = ctx();
    let rt = rt();
    let old_env = Envelope::builder(LocalKeyring::init(&path).unwrap()).build();
    let old_ct = rt.block_on(old_env.encrypt_text("010-1111-2222", &c)).unwrap();
    assert_eq!(LocalKeyring::rotate(&path).unwrap(), "k2");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("keyring.rotate").exists());
    let kr = LocalKeyring::load(&path).unwrap();
    let infos = kr.key_infos();
    assert_eq!(
        infos.iter().map(|i| (i.id.as_str(), i.primary)).collect::<Vec<_>>(),
        [("k1", false), ("k2", true)]
    );
    let new_env = Envelope::builder(kr).build();
    assert_eq!(rt.block_on(new_env.decrypt_text(&old_ct, &c)).unwrap(), "010-1111-2222");
    let new_ct = rt.block_on(new_env.encrypt_text("010-3333-4444", &c)).unwrap();
    assert_eq!(Envelope::inspect_text(&new_ct).unwrap().key_id, "k2");
    assert_eq!(Envelope::inspect_text(&old_ct).unwrap().key_id, "k1");
    // The old process (keyring loaded before rotation) cannot open k2 ciphertexts: it refuses
    // the unknown key id rather than trying its own keys.
    assert_eq!(
        rt.block_on(old_env.decrypt_text(&new_ct, &c)).unwrap_err(),
        EnvelopeError::UnknownKeyId("k2".into())
    );
    assert_eq!(LocalKeyring::rotate(&path).unwrap(), "k3");
    let kr = LocalKeyring::load(&path).unwrap();
    let env3 = Envelope::builder(kr).build();
    assert_eq!(rt.block_on(env3.decrypt_text(&old_ct, &c)).unwrap(), "010-1111-2222");
    assert_eq!(rt.block_on(env3.decrypt_text(&new_ct, &c)).unwrap(), "010-3333-4444");
}

#[test]
fn concurrent_rotation_is_refused_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    fs::write(dir.path().join("keyring.rotate"), b"").unwrap();
    assert!(matches!(
        LocalKeyring::rotate(&path),
        Err(EnvelopeError::KeyringFile(KeyringFileError::RotationInProgress(_)))
    ));
    fs::remove_file(dir.path().join("keyring.rotate")).unwrap();
    assert_eq!(LocalKeyring::rotate(&path).unwrap(), "k2");
}

#[test]
fn corrupt_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    let write = |content: &[u8]| {
        let _ = fs::remove_file(&path);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    let key = "A".repeat(43);
    let cases: Vec<(Vec<u8>, KeyringFileError)> = vec![
        (b"".to_vec(), KeyringFileError::BadHeader),
        (b"\xff\xfe".to_vec(), KeyringFileError::BadLine { line: 1, problem: "file is not UTF-8 text" }),
        (b"larder-keyring 7\n".to_vec(), KeyringFileError::UnsupportedVersion("7".into())),
        (format!("larder-keyring 1\nkey k1 1 old {key}\n").into_bytes(), KeyringFileError::NoPrimary),
        (
            format!("larder-keyring 1\n# c\n\nkey k1 1 primary {}\n", &key[..40]).into_bytes(),
            KeyringFileError::BadLine { line: 4, problem: "key is not 32 bytes" },
        ),
    ];
    for (content, want) in cases {
        write(&content);
        assert_eq!(LocalKeyring::load(&path).unwrap_err(), EnvelopeError::KeyringFile(want));
    }
    write(&vec![b'#'; (1 << 20) + 1]);
    assert!(matches!(
        LocalKeyring::load(&path),
        Err(EnvelopeError::KeyringFile(KeyringFileError::TooLarge(_)))
    ));
    assert!(matches!(
        LocalKeyring::load(dir.path()),
        Err(EnvelopeError::KeyringFile(KeyringFileError::NotAFile(_)))
            | Err(EnvelopeError::KeyringFile(KeyringFileError::Io { .. }))
    ));
    assert!(matches!(
        LocalKeyring::load(dir.path().join("missing")),
        Err(EnvelopeError::KeyringFile(KeyringFileError::Io { .. }))
    ));
    // A valid hand-written file loads.
    write(format!("larder-keyring 1\nkey k1 1 old {key}\nkey k2 2 primary {key}\n").as_bytes());
    assert_eq!(LocalKeyring::load(&path).unwrap().key_infos().len(), 2);
}
