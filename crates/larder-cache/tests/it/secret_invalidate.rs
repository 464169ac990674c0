//! One key space per memoized function, with its secret: with `LARDER_KEY_SECRET` set, a
//! `KeySpace::new` built by hand names exactly the entries `#[memoize]` reads, so
//! `invalidate` through the public API reaches the shared entry every process reads.
//!
//! Two real processes memoize the same function on one SQLite file (`LARDER_CACHE`, no local
//! tier). The function returns `x * 1000 + generation`, the generation being read from a file
//! the test bumps, so a stale entry is visible as an old generation. A control invalidation
//! with the unkeyed space (what a hand-built space meant before: the default key) must leave
//! the entry in place — that is the bug this test would catch.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::test_path;
use larder_cache::{default_cache, memoize, KeySecret, KeySpace};

const ROLE_ENV: &str = "LARDER_SECRET_TEST_ROLE";
const GEN_ENV: &str = "LARDER_SECRET_TEST_GEN";
const SECRET_HEX: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

static COMPUTED: AtomicU64 = AtomicU64::new(0);

fn generation() -> u64 {
    let path = std::env::var(GEN_ENV).expect("generation file");
    std::fs::read_to_string(path).expect("read generation").trim().parse().expect("a number")
}

#[memoize(namespace = "secret_calc", version = 1, ttl = "10m")]
fn calc(x: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    x * 1000 + generation()
}

/// In a worker: answers `call X`, `invalidate X`, `invalidate_unkeyed X` on stdin, one line
/// out per command (`value computed_so_far` or `ok`), until stdin closes.
fn worker_main_if_requested() {
    if std::env::var(ROLE_ENV).is_err() {
        return;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("read command");
        let (cmd, arg) = line.split_once(' ').expect("command and argument");
        let x: u64 = arg.parse().expect("argument");
        let reply = match cmd {
            "call" => format!("{} {}", calc(x), COMPUTED.load(Ordering::SeqCst)),
            "invalidate" => {
                // The public API, with a key space built by hand the documented way.
                let space = KeySpace::new("secret_calc", 1).expect("space");
                default_cache().invalidate_blocking(&space, &x);
                "ok".into()
            }
            "invalidate_unkeyed" => {
                let space = KeySpace::new_with_secret("secret_calc", 1, &KeySecret::default_key()).unwrap();
                default_cache().invalidate_blocking(&space, &x);
                "ok".into()
            }
            other => panic!("unknown command {other}"),
        };
        writeln!(out, "{reply}").expect("reply");
        out.flush().expect("flush");
    }
    std::process::exit(0);
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(db: &Path, gen_file: &Path) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &test_path(module_path!(), "two_processes_share_one_keyed_space_and_invalidate_it"),
                "--exact",
                "--nocapture",
            ])
            .env(ROLE_ENV, "1")
            .env(GEN_ENV, gen_file)
            .env("LARDER_KEY_SECRET", SECRET_HEX)
            .env("LARDER_CACHE", format!("sqlite:{}", db.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn worker");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Worker { child, stdin, stdout }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        // The test harness prints its own lines first ("running 1 test", the test name).
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "worker exited before answering {cmd}");
            let line = line.trim();
            if line == "ok"
                || line.split(' ').count() == 2 && line.split(' ').all(|p| p.parse::<u64>().is_ok())
            {
                return line.to_owned();
            }
        }
    }

    /// `(value, computations in this process so far)`.
    fn call(&mut self, x: u64) -> (u64, u64) {
        let r = self.ask(&format!("call {x}"));
        let (v, n) = r.split_once(' ').unwrap();
        (v.parse().unwrap(), n.parse().unwrap())
    }

    fn finish(mut self) {
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success(), "worker failed");
    }
}

#[test]
fn two_processes_share_one_keyed_space_and_invalidate_it() {
    worker_main_if_requested();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("memo.db");
    let gen_file = dir.path().join("generation");
    let set_gen = |g: u64| std::fs::write(&gen_file, g.to_string()).unwrap();
    set_gen(1);
    let mut a = Worker::spawn(&db, &gen_file);
    let mut b = Worker::spawn(&db, &gen_file);

    assert_eq!(a.call(7), (7001, 1), "A computes");
    assert_eq!(b.call(7), (7001, 0), "B is served A's value from the shared file");

    // The source changes. Invalidating with the unkeyed space (the default key, not the
    // deployment secret) names another entry: nothing is dropped, both keep the old value.
    set_gen(2);
    assert_eq!(a.ask("invalidate_unkeyed 7"), "ok");
    assert_eq!(b.call(7), (7001, 0), "control: the unkeyed space must not reach the keyed entry");

    // A hand-built KeySpace::new reads LARDER_KEY_SECRET like #[memoize]: the entry goes.
    assert_eq!(a.ask("invalidate 7"), "ok");
    assert_eq!(b.call(7), (7002, 1), "B recomputes after A's invalidation");
    assert_eq!(a.call(7), (7002, 1), "A is served B's fresh value, computed once for both");

    // And the other way round.
    set_gen(3);
    assert_eq!(b.ask("invalidate 7"), "ok");
    assert_eq!(a.call(7), (7003, 2), "A recomputes after B's invalidation");
    assert_eq!(b.call(7), (7003, 1), "B is served A's fresh value");

    a.finish();
    b.finish();
    // Entries were MACed with the deployment secret, not a per-store one.
    assert!(!larder_cache::store_secret::sqlite_secret_path(&db).exists());
}
