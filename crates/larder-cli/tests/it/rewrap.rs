//! `larder rewrap` over real SQLite files and a real PostgreSQL: plaintext → ciphertext with a
//! `kill -9` in the middle and a resume (no row lost, skipped or encrypted twice), idempotent
//! reruns, rotation to a new master key, v1 → v2, `--verify` and the `--json` summary.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{stderr_text, stdout_text, Sandbox};
use larder::envelope::{EncryptionContext, Envelope, LocalKeyring};
use serde_json::Value;

const ROWS: i64 = 20_000;

fn phone(i: i64) -> String {
    format!("010-{:04}-{:04}", i / 10_000, i % 10_000)
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("column", "phone")
}

fn sqlite_with_phones(path: &Path) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT)").unwrap();
    let tx = conn.transaction().unwrap();
    for i in 1..=ROWS {
        tx.execute("INSERT INTO customers (id, phone) VALUES (?1, ?2)", rusqlite::params![i, phone(i)])
            .unwrap();
    }
    tx.commit().unwrap();
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut st = conn.prepare("SELECT id, phone FROM customers ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn checkpoint(path: &Path) -> Option<i64> {
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row("SELECT last_id FROM larder_rewrap_progress WHERE job = 'customers.phone'", [], |r| {
        r.get(0)
    })
    .ok()
}

fn summary(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr_text(out));
    serde_json::from_str(&stdout_text(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout_text(out)))
}

/// Every row decrypts (with the keyring file) to the phone number it started as, exactly once
/// encrypted; returns the key ids and format versions seen.
fn check_all(ring: &Path, rows: &[(i64, String)]) -> (Vec<String>, Vec<u8>) {
    assert_eq!(rows.len() as i64, ROWS, "no row lost");
    let env = Envelope::builder(LocalKeyring::load(ring).unwrap()).build().blocking().unwrap();
    let ctx = ctx();
    let (mut ids, mut versions) = (Vec::new(), Vec::new());
    for (id, stored) in rows {
        let plain = env.decrypt_text(stored, &ctx).unwrap_or_else(|e| panic!("row {id}: {e}"));
        assert_eq!(plain, phone(*id), "row {id} decrypts to its own number, not to another ciphertext");
        let info = Envelope::inspect_text(stored).unwrap();
        ids.push(info.key_id);
        versions.push(info.version);
    }
    ids.sort();
    ids.dedup();
    versions.sort();
    versions.dedup();
    (ids, versions)
}

#[test]
fn sqlite_encrypt_survives_kill_9_then_rotates_and_moves_to_v2_idempotently() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let db = sb.path("app.db");
    sqlite_with_phones(&db);
    let url = format!("sqlite:{}", db.display());
    let rewrap = |extra: &[&str]| {
        let mut c = sb.larder();
        c.arg("--keyring").arg(&ring).args([
            "rewrap",
            "--db",
            &url,
            "--table",
            "customers",
            "--column",
            "phone",
        ]);
        c.args(["--context", "column=phone"]).args(extra);
        c
    };

    // A slow run (rate-limited), killed with SIGKILL after a few batches.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("larder"))
        .env_remove("LARDER_KEYRING")
        .env("HOME", sb.dir.path())
        .arg("--keyring")
        .arg(&ring)
        .args([
            "rewrap",
            "--db",
            &url,
            "--table",
            "customers",
            "--column",
            "phone",
            "--context",
            "column=phone",
        ])
        .args(["--mode", "encrypt", "--batch", "100", "--rate", "4000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&db).unwrap_or(0) < 3_000 {
        assert!(Instant::now() < deadline, "no progress within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = checkpoint(&db).expect("a checkpoint survives the kill");
    assert!(at < ROWS, "killed mid-run");
    let mid = rows(&db);
    for (id, v) in &mid {
        // Committed batches (up to the checkpoint) are encrypted, the rest untouched.
        assert_eq!(v.starts_with("lv1."), *id <= at, "row {id} with checkpoint {at}");
    }

    // Resume: starts after the checkpoint, finishes, leaves no job behind.
    let s = summary(&rewrap(&["--mode", "encrypt", "--json", "--batch", "500"]).output().unwrap());
    assert_eq!(s["resumed_after_id"], at);
    assert_eq!(s["scanned"], ROWS - at);
    assert_eq!(s["rewritten"], ROWS - at);
    assert_eq!((s["failed"].as_u64(), s["conflicts"].as_u64()), (Some(0), Some(0)));
    assert_eq!(checkpoint(&db), None);
    let (ids, versions) = check_all(&ring, &rows(&db));
    assert_eq!((ids, versions), (vec!["k1".to_string()], vec![1]));

    // Idempotent: a rerun changes nothing.
    let s = summary(&rewrap(&["--mode", "encrypt", "--json"]).output().unwrap());
    assert_eq!((s["rewritten"].as_u64(), s["already_current"].as_u64()), (Some(0), Some(ROWS as u64)));

    // Rotation: a new primary key, every row moved to it. Keyring calls are bounded by data
    // keys, not rows: one generate for 20,000 values, one decrypt per data key the earlier runs
    // made (the killed run's and the resumed run's).
    sb.larder().arg("--keyring").arg(&ring).args(["keys", "rotate"]).assert().success();
    let s = summary(&rewrap(&["--mode", "rotate", "--json", "--verify", "50"]).output().unwrap());
    assert_eq!(s["rewritten"], ROWS);
    assert_eq!(s["keyring_generate_calls"], 1);
    assert!(s["keyring_decrypt_calls"].as_u64().unwrap() <= 3, "{s}");
    assert_eq!((s["verify_sampled"].as_u64(), s["verify_ok"].as_u64()), (Some(50), Some(50)));
    let (ids, _) = check_all(&ring, &rows(&db));
    assert_eq!(ids, vec!["k2".to_string()]);
    let s = summary(&rewrap(&["--mode", "rotate", "--json"]).output().unwrap());
    assert_eq!(s["rewritten"], 0);

    // v1 → v2, then idempotent again.
    let s = summary(&rewrap(&["--mode", "rotate", "--v2", "--json"]).output().unwrap());
    assert_eq!(s["rewritten"], ROWS);
    let (_, versions) = check_all(&ring, &rows(&db));
    assert_eq!(versions, vec![2]);
    let s = summary(&rewrap(&["--mode", "rotate", "--v2", "--json"]).output().unwrap());
    assert_eq!(s["rewritten"], 0);

    // Plain-text summary and a usage error.
    let out = rewrap(&["--mode", "rotate", "--v2"]).output().unwrap();
    assert!(stdout_text(&out).contains("0 rewritten"), "{}", stdout_text(&out));
    let out = rewrap(&["--mode", "rotate", "--key", "id; DROP TABLE customers"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn postgres_encrypt_and_rotate() {
    let pg = larder_testkit::postgres::PgServer::start();
    let mut client = postgres::Client::connect(&pg.conn_str(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, phone text);
             INSERT INTO customers (phone) SELECT '010-' || lpad((g / 10000)::text, 4, '0') || '-' || lpad((g % 10000)::text, 4, '0')
               FROM generate_series(1, 20000) g;
             INSERT INTO customers (phone) VALUES (NULL);",
        )
        .unwrap();
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let rewrap = |extra: &[&str]| {
        let mut c = sb.larder();
        c.arg("--keyring").arg(&ring).args([
            "rewrap",
            "--db",
            &pg.url(),
            "--table",
            "customers",
            "--column",
            "phone",
        ]);
        c.args(["--context", "column=phone", "--json"]).args(extra);
        c.output().unwrap()
    };
    let s = summary(&rewrap(&["--mode", "encrypt", "--verify", "20"]));
    assert_eq!((s["rewritten"].as_u64(), s["nulls"].as_u64()), (Some(ROWS as u64), Some(1)));
    assert_eq!(s["verify_ok"], 20);
    assert_eq!(summary(&rewrap(&["--mode", "encrypt"]))["rewritten"], 0);
    sb.larder().arg("--keyring").arg(&ring).args(["keys", "rotate"]).assert().success();
    assert_eq!(summary(&rewrap(&["--mode", "rotate"]))["rewritten"], ROWS);
    let stored: Vec<(i64, String)> = client
        .query("SELECT id, phone FROM customers WHERE phone IS NOT NULL ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (ids, _) = check_all(&ring, &stored);
    assert_eq!(ids, vec!["k2".to_string()]);
    assert_eq!(summary(&rewrap(&["--mode", "rotate"]))["rewritten"], 0);
}

#[test]
fn postgres_survives_kill_9_and_resumes_without_losing_or_repeating_a_row() {
    let pg = larder_testkit::postgres::PgServer::start();
    let mut client = postgres::Client::connect(&pg.conn_str(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, phone text);
             INSERT INTO customers (phone) SELECT '010-' || lpad((g / 10000)::text, 4, '0') || '-' || lpad((g % 10000)::text, 4, '0')
               FROM generate_series(1, 20000) g;",
        )
        .unwrap();
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let args = |c: &mut std::process::Command| {
        c.env_remove("LARDER_KEYRING").env_remove("LARDER_CONFIG").env("HOME", sb.dir.path());
        c.arg("--keyring").arg(&ring).args([
            "rewrap",
            "--db",
            &pg.url(),
            "--table",
            "customers",
            "--column",
            "phone",
            "--context",
            "column=phone",
            "--mode",
            "encrypt",
        ]);
    };
    let checkpoint = |client: &mut postgres::Client| -> Option<i64> {
        client
            .query_opt("SELECT last_id FROM larder_rewrap_progress WHERE job = 'customers.phone'", &[])
            .ok()
            .flatten()
            .map(|r| r.get(0))
    };
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("larder"));
    args(&mut cmd);
    let mut child = cmd
        .args(["--batch", "100", "--rate", "4000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&mut client).unwrap_or(0) < 3_000 {
        assert!(Instant::now() < deadline, "no progress within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The server has noticed the dead connection and rolled back its open batch when a new
    // session sees the table; the checkpoint is the last committed batch.
    let at = checkpoint(&mut client).expect("a checkpoint survives the kill");
    assert!(at < ROWS, "killed mid-run");
    let encrypted: i64 =
        client.query_one("SELECT count(*) FROM customers WHERE phone LIKE 'lv1.%'", &[]).unwrap().get(0);
    assert_eq!(encrypted, at, "exactly the committed batches are encrypted");

    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("larder"));
    args(&mut cmd);
    let out = cmd.args(["--json"]).output().unwrap();
    let s = summary(&out);
    assert_eq!(s["resumed_after_id"], at);
    assert_eq!(s["rewritten"], ROWS - at);
    assert_eq!((s["failed"].as_u64(), s["conflicts"].as_u64()), (Some(0), Some(0)));
    assert_eq!(checkpoint(&mut client), None);
    let stored: Vec<(i64, String)> = client
        .query("SELECT id, phone FROM customers ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (ids, versions) = check_all(&ring, &stored);
    assert_eq!((ids, versions), (vec!["k1".to_string()], vec![1]));
}

#[test]
fn rate_limit_paces_the_run() {
    // A lower bound only (a loaded machine can only make the run slower): 600 rows at 1,000
    // rows/s take at least 0.6 s.
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let run = |db: &Path, rate: &str| {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT)").unwrap();
        for i in 1..=600 {
            conn.execute("INSERT INTO customers VALUES (?1, ?2)", rusqlite::params![i, phone(i)]).unwrap();
        }
        let mut c = sb.larder();
        c.arg("--keyring").arg(&ring).args(["rewrap", "--db", &format!("sqlite:{}", db.display())]);
        c.args(["--table", "customers", "--column", "phone", "--mode", "encrypt", "--batch", "50", "--json"]);
        c.args(["--rate", rate]);
        summary(&c.output().unwrap())
    };
    let paced = run(&sb.path("paced.db"), "1000");
    assert_eq!(paced["rewritten"], 600);
    assert!(paced["seconds"].as_f64().unwrap() >= 0.59, "{paced}");
    assert!(paced["rows_per_second"].as_f64().unwrap() <= 1_020.0, "{paced}");
}

#[test]
fn progress_bar_on_a_terminal_only() {
    // `script` (util-linux, Debian's essential bsdutils) runs the command on a pseudo-terminal.
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("`script` is needed to give the run a terminal: apt-get install bsdutils");
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let db = sb.path("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT)").unwrap();
    for i in 1..=1500 {
        conn.execute("INSERT INTO customers VALUES (?1, ?2)", rusqlite::params![i, phone(i)]).unwrap();
    }
    let cmd = format!(
        "{} --keyring {} rewrap --db sqlite:{} --table customers --column phone --mode encrypt --batch 100 --rate 3000",
        assert_cmd::cargo::cargo_bin("larder").display(),
        ring.display(),
        db.display()
    );
    let out = std::process::Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("LARDER_CONFIG")
        .env("HOME", sb.dir.path())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("rewrap [") && tty.contains("/1500"), "a bar with the row count: {tty:?}");
    // Not a terminal (a pipe, a log): no bar, no escape codes, only the summary.
    conn.execute("UPDATE customers SET phone = ?1", ["010-0000-0000"]).unwrap();
    let out = sb
        .larder()
        .arg("--keyring")
        .arg(&ring)
        .args(["rewrap", "--db", &format!("sqlite:{}", db.display()), "--table", "customers"])
        .args(["--column", "phone", "--mode", "encrypt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(
        !stderr_text(&out).contains('\u{1b}') && !stderr_text(&out).contains("rewrap ["),
        "{}",
        stderr_text(&out)
    );
    assert!(stdout_text(&out).contains("1500 rewritten"), "{}", stdout_text(&out));
}
