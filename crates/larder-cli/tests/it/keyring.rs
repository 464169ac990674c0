//! `larder keys init|list|rotate` against real keyring files.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};
use predicates::str::contains;

#[test]
fn init_creates_a_private_file_and_refuses_to_overwrite() {
    let sb = Sandbox::new();
    let ring = sb.path("ring");
    sb.larder().arg("--keyring").arg(&ring).args(["keys", "init"]).assert().success().stdout(contains("k1"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ring).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "keyring mode {mode:o}");
    }
    let before = std::fs::read(&ring).unwrap();
    let out = sb.larder().arg("--keyring").arg(&ring).args(["keys", "init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "second init must fail: {}", stderr_text(&out));
    assert!(stderr_text(&out).contains(&ring.display().to_string()), "{}", stderr_text(&out));
    assert_eq!(std::fs::read(&ring).unwrap(), before, "init overwrote an existing keyring");
}

#[test]
fn default_path_is_under_the_data_dir_and_env_var_wins() {
    let sb = Sandbox::new();
    sb.larder().args(["keys", "init"]).assert().success();
    assert!(sb.path("data/larder/keyring").is_file(), "default keyring not under $XDG_DATA_HOME/larder");

    let via_env = sb.path("env-ring");
    sb.larder().env("LARDER_KEYRING", &via_env).args(["keys", "init"]).assert().success();
    assert!(via_env.is_file());

    // Without XDG_DATA_HOME: ~/.local/share/larder/keyring.
    sb.larder().env_remove("XDG_DATA_HOME").args(["keys", "init"]).assert().success();
    assert!(sb.path(".local/share/larder/keyring").is_file());
}

#[test]
fn rotate_adds_a_primary_and_list_shows_ids_but_no_secrets() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    sb.larder_ring().args(["keys", "rotate"]).assert().success().stdout(contains("k2"));
    let out = sb.larder_ring().args(["keys", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = stdout_text(&out);
    let k1 = text.lines().find(|l| l.starts_with("k1")).expect("k1 listed");
    let k2 = text.lines().find(|l| l.starts_with("k2")).expect("k2 listed");
    assert!(k1.contains("old") && k2.contains("primary"), "{text}");
    // No line of the file's key material appears in the listing.
    for line in std::fs::read_to_string(&ring).unwrap().lines().filter(|l| l.starts_with("key ")) {
        let secret = line.split_whitespace().last().unwrap();
        assert!(!text.contains(secret), "keys list printed key material");
    }
}

#[test]
fn missing_keyring_says_how_to_create_one() {
    let sb = Sandbox::new();
    let out = sb.larder().arg("--keyring").arg(sb.path("nope")).args(["keys", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("larder keys init"), "{}", stderr_text(&out));
    let out = sb.larder().arg("--keyring").arg(sb.path("nope")).args(["keys", "rotate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[cfg(unix)]
#[test]
fn world_readable_keyring_is_refused() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    common::chmod(&ring, 0o644);
    let out = sb.larder_ring().args(["keys", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_text(&out);
    assert!(err.contains(&ring.display().to_string()), "{err}");
    let out = sb.larder_ring().args(["encrypt", "--text"]).write_stdin("010-1234-5678").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "encrypt with a world-readable keyring must fail");
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    sb.larder().args(["keys", "frobnicate"]).assert().code(2);
    sb.larder().args(["keys"]).assert().code(2);
    sb.larder().assert().code(2);
}
