//! `#[derive(StableKey)]` in a crate that depends on the `larder` facade only: the derive must
//! find the trait at `::larder::key` (through `proc-macro-crate`), with no direct larder-key
//! dependency, and produce the same keys as larder-key itself.
//!
//! Builds and runs the small crate in `tests/facade_user/` (copied to a temporary directory,
//! pinned to the workspace's Cargo.lock, built in `target/larder-key-facade-user`, so only the
//! first run compiles its dependencies).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::LoanQuote;
use larder_key::{KeySpace, StableKey};

#[derive(StableKey)]
enum Tier {
    Basic,
    Premium { level: u8 },
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn derive_through_the_facade_only() {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..").canonicalize().unwrap();
    let dir = std::env::temp_dir().join(format!("larder-facade-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&manifest_dir.join("tests/facade_user"), &dir);
    let template = std::fs::read_to_string(dir.join("Cargo.toml.in")).unwrap();
    let larder_path = workspace.join("crates/larder");
    std::fs::write(dir.join("Cargo.toml"), template.replace("@LARDER_PATH@", larder_path.to_str().unwrap()))
        .unwrap();
    // Same dependency versions as the workspace (cargo drops the entries it does not need).
    std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let out = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(workspace.join("target/larder-key-facade-user"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the facade-only crate failed to build or run:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    let space = KeySpace::new("loan_calc", 1).unwrap();
    let q = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let expected = format!(
        "{}\n{}\n",
        space.key(&q).unwrap(),
        space.key(&(Tier::Basic, Tier::Premium { level: 2 })).unwrap()
    );
    assert_eq!(stdout, expected);
}
