//! Shared helpers of the CLI tests: a `larder` command isolated from the user's environment.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// A scratch home: `HOME` and `XDG_DATA_HOME` point into it, so no test touches the real
/// user's keyring.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `larder` with a clean environment rooted in the sandbox.
    pub fn larder(&self) -> Command {
        let mut cmd = Command::cargo_bin("larder").expect("the larder binary is built");
        cmd.env_remove("LARDER_KEYRING")
            .env_remove("LARDER_CONFIG")
            .env_remove("LARDER_KEY_SECRET")
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("data"));
        cmd
    }

    /// `larder --keyring <sandbox>/keyring ...`, after `keys init` created it.
    pub fn with_keyring(&self) -> PathBuf {
        let ring = self.path("keyring");
        if !ring.exists() {
            self.larder().arg("--keyring").arg(&ring).args(["keys", "init"]).assert().success();
        }
        ring
    }

    pub fn larder_ring(&self) -> Command {
        let ring = self.with_keyring();
        let mut cmd = self.larder();
        cmd.arg("--keyring").arg(ring);
        cmd
    }
}

/// stdout of a finished command as text.
pub fn stdout_text(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// stderr of a finished command as text.
pub fn stderr_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sets a file's Unix permission bits.
#[cfg(unix)]
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Small sizes: ~1 s of worker runs, a few thousand phone numbers.
pub const SMALL: &[&str] = &[
    "--requests",
    "150",
    "--inputs",
    "15",
    "--workers",
    "3",
    "--threads",
    "4",
    "--compute-ms",
    "40",
    "--phones",
    "3000",
    "--phones-uncached",
    "300",
    "--phone-threads",
    "100",
];

/// Checks the workers part of a `--json` report made with [`SMALL`] sizes.
pub fn check_workers(v: &Value) {
    let w = &v["workers"];
    let distinct = w["distinct_inputs_requested"].as_u64().expect("distinct inputs");
    let larder = &w["larder"];
    let std = &w["std_hasher"];
    assert!((2..=15).contains(&distinct), "{w}");
    // The point of the demo: one computation per distinct input, for the whole fleet.
    assert_eq!(larder["computations"].as_u64(), Some(distinct), "larder run: {larder}");
    // The seed's bug: every worker computes its own copy of inputs the others already stored.
    let std_c = std["computations"].as_u64().unwrap();
    assert!(std_c > distinct, "std-hasher run computed {std_c} for {distinct} distinct inputs: {std}");
    // Real, separate processes; the seeded hasher disagrees between them, larder keys agree.
    for run in [larder, std] {
        let pids: std::collections::BTreeSet<u64> =
            run["worker_pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 3, "{run}");
        assert!(!pids.contains(&u64::from(std::process::id())));
    }
    assert_eq!(larder["distinct_keys_for_one_input"].as_u64(), Some(1), "{larder}");
    assert_eq!(std["distinct_keys_for_one_input"].as_u64(), Some(3), "{std}");
    for run in [larder, std] {
        assert_eq!(run["requests"].as_u64(), Some(150), "{run}");
        assert_eq!(run["wrong"].as_u64(), Some(0), "{run}");
        let hit = run["hit_ratio"].as_f64().unwrap();
        let expect = 1.0 - run["computations"].as_f64().unwrap() / 150.0;
        assert!((hit - expect).abs() < 1e-9, "{run}");
        assert!(run["p50_ms"].as_f64().unwrap() <= run["p99_ms"].as_f64().unwrap());
    }
}
