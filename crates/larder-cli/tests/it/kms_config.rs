//! AWS KMS through the CLI against a real moto KMS server: the checked-in example
//! configuration (docs/larder.example.toml, two KMS regions + an escrow keyring + a decrypt-only
//! local keyring) end to end, `larder rewrap --to-kms` (local keyring → KMS, with a `kill -9`
//! and a resume), and `rewrap` under a configuration file naming a KMS key.
//!
//! No `required-features` here on purpose: a larder built without the `kms` feature must make
//! these tests fail with a message, not vanish. `bash scripts/test.sh` builds with
//! `--all-features`; alone: `cargo test -p larder-cli --features kms --test kms_config`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{stderr_text, stdout_text, Sandbox};
use larder_testkit::moto::MotoServer;
use serde_json::Value;

/// Fails (never skips) when the `larder` binary under test has no AWS KMS support.
fn require_kms_build() {
    let out =
        std::process::Command::new(assert_cmd::cargo::cargo_bin("larder")).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains("features: kms"),
        "the larder binary was built without the `kms` feature, so the AWS KMS tests cannot run \
         (`larder --version` says: {version:?}). Run them with `cargo test -p larder-cli --features kms` \
         or `bash scripts/test.sh` (which uses --all-features)."
    );
}

/// `larder` with moto's dummy credentials, the KMS endpoint from the standard
/// `AWS_ENDPOINT_URL_KMS` variable, and nothing else from AWS configuration (no region: with a
/// configuration file the region comes from each key ARN).
fn larder_aws(sb: &Sandbox, moto: &MotoServer) -> assert_cmd::Command {
    let mut cmd = sb.larder();
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL_KMS", moto.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL");
    cmd
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn init_ring(sb: &Sandbox, name: &str) -> PathBuf {
    let p = sb.path(name);
    sb.larder().arg("--keyring").arg(&p).args(["keys", "init"]).assert().success();
    p
}

fn ok_text(out: &std::process::Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr_text(out));
    stdout_text(out)
}

fn edks(sb: &Sandbox, ct: &str) -> Vec<(String, String)> {
    let out = sb.larder().args(["inspect", "-o", "json"]).write_stdin(ct.to_owned()).output().unwrap();
    let v: Value = serde_json::from_str(&ok_text(&out)).unwrap();
    v["edks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["keyring"].as_str().unwrap().to_owned(), e["key_id"].as_str().unwrap().to_owned()))
        .collect()
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/larder.example.toml")
}

#[test]
fn the_example_configuration_file_works_end_to_end() {
    require_kms_build();
    let moto = MotoServer::start();
    let (seoul_key, _) = rt().block_on(moto.create_key_with_alias_in("ap-northeast-2", "larder-pii"));
    let (tokyo_key, tokyo_alias) =
        rt().block_on(moto.create_key_with_alias_in("ap-northeast-1", "larder-pii-dr"));
    let sb = Sandbox::new();
    // The example, byte for byte, next to the keyring files its relative paths name.
    let text = std::fs::read_to_string(example()).unwrap();
    let cfg = sb.path("larder.toml");
    std::fs::write(&cfg, &text).unwrap();
    init_ring(&sb, "keys/escrow.keyring");
    let app = init_ring(&sb, "keys/app.keyring");
    let index = init_ring(&sb, "keys/index.keyring");
    sb.larder().arg("--keyring").arg(&index).args(["keys", "add-index"]).assert().success();

    // `config check` reads it as documented.
    let out = larder_aws(&sb, &moto)
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check", "-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok_text(&out)).unwrap();
    let rings = v["keyrings"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = rings
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["role"].as_str().unwrap(), r["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("kms-seoul", "primary", "aws-kms"),
            ("kms-tokyo", "wrap", "aws-kms"),
            ("escrow", "wrap", "local"),
            ("before-kms", "decrypt", "local")
        ]
    );
    assert_eq!(rings[0]["region"], "ap-northeast-2");
    assert_eq!(rings[1]["region"], "ap-northeast-1");
    assert_eq!(rings[3]["decrypt_key_ids"], serde_json::json!(["k1"]));
    assert_eq!(v["index_key_present"], true);
    assert_eq!(
        moto.count_requests("GenerateDataKey") + moto.count_requests("Decrypt"),
        0,
        "check calls no KMS"
    );

    // Encrypt: one data key, wrapped by Seoul (GenerateDataKey), Tokyo (Encrypt) and escrow.
    let out = larder_aws(&sb, &moto)
        .env("LARDER_CONFIG", &cfg)
        .args(["encrypt", "--text", "--context", "column=phone"])
        .write_stdin("010-1234-5678")
        .output()
        .unwrap();
    let ct = ok_text(&out).trim().to_owned();
    assert!(ct.starts_with("lv2."), "{ct}");
    let e = edks(&sb, &ct);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0], ("aws-kms".to_owned(), seoul_key.clone()));
    assert_eq!(e[1], ("aws-kms".to_owned(), tokyo_key.clone()));
    assert_eq!(e[2], ("local".to_owned(), "k1".to_owned()));
    assert_eq!((moto.count_requests("GenerateDataKey"), moto.count_requests("Encrypt")), (1, 1));

    let decrypt = |config: &Path, ct: &str| {
        larder_aws(&sb, &moto)
            .arg("--config")
            .arg(config)
            .args(["decrypt", "--text", "--context", "column=phone"])
            .write_stdin(ct.to_owned())
            .output()
            .unwrap()
    };
    // The whole configuration: Seoul opens it (one KMS Decrypt).
    assert_eq!(ok_text(&decrypt(&cfg, &ct)), "010-1234-5678\n");
    assert_eq!(moto.count_requests("Decrypt"), 1);
    // Only the second keyring (Tokyo) configured: it alone opens it.
    let tokyo_only = sb.path("tokyo.toml");
    std::fs::write(&tokyo_only, format!("[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"{tokyo_alias}\"\n"))
        .unwrap();
    assert_eq!(ok_text(&decrypt(&tokyo_only, &ct)), "010-1234-5678\n");
    // Configured by alias, the keyring cannot tell offline which KMS EDK is Tokyo's: it asks
    // KMS under the alias for the first EDK (Seoul's, refused), then the second.
    assert_eq!(moto.count_requests("Decrypt"), 3);
    // Only the escrow file: no KMS at all.
    let escrow_only = sb.path("escrow.toml");
    std::fs::write(&escrow_only, "[[keyring]]\ntype = \"local\"\npath = \"keys/escrow.keyring\"\n").unwrap();
    assert_eq!(ok_text(&decrypt(&escrow_only, &ct)), "010-1234-5678\n");
    assert_eq!(moto.count_requests("Decrypt"), 3, "the escrow keyring is local");

    // A value from before the move to KMS (app.keyring, k1) opens through `before-kms`; after
    // a rotation of that file, a value under k2 is refused by its allow-list.
    let old = |value: &str| {
        let out = sb
            .larder()
            .arg("--keyring")
            .arg(&app)
            .args(["encrypt", "--text", "--context", "column=phone"])
            .write_stdin(value.to_owned())
            .output()
            .unwrap();
        ok_text(&out).trim().to_owned()
    };
    let k1 = old("010-0000-0001");
    assert_eq!(ok_text(&decrypt(&cfg, &k1)), "010-0000-0001\n");
    sb.larder().arg("--keyring").arg(&app).args(["keys", "rotate"]).assert().success();
    let k2 = old("010-0000-0002");
    let out = decrypt(&cfg, &k2);
    assert_eq!(out.status.code(), Some(1), "k2 is not on before-kms's allow-list: {}", stderr_text(&out));
    assert!(out.stdout.is_empty());

    // `larder index` takes the key of [index] path.
    let by_cfg = larder_aws(&sb, &moto)
        .arg("--config")
        .arg(&cfg)
        .args(["index", "phone", "010-1234-5678"])
        .output()
        .unwrap();
    let by_ring =
        sb.larder().arg("--keyring").arg(&index).args(["index", "phone", "01012345678"]).output().unwrap();
    assert_eq!(ok_text(&by_cfg), ok_text(&by_ring));
}

fn sqlite_phones(path: &Path, n: i64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT)").unwrap();
    let tx = conn.transaction().unwrap();
    for i in 1..=n {
        tx.execute("INSERT INTO customers (id, phone) VALUES (?1, ?2)", rusqlite::params![i, phone(i)])
            .unwrap();
    }
    tx.commit().unwrap();
}

fn phone(i: i64) -> String {
    format!("010-{:04}-{:04}", i / 10_000, i % 10_000)
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
    serde_json::from_str(&ok_text(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout_text(out)))
}

/// Every row, decrypted through `larder decrypt --lines` with `auth` (KMS or keyring args), is
/// its own original number.
fn all_decrypt(sb: &Sandbox, moto: &MotoServer, db: &Path, auth: &[&str]) {
    let rows = rows(db);
    let input: String = rows.iter().map(|(_, ct)| format!("{ct}\n")).collect();
    let out = larder_aws(sb, moto)
        .env("AWS_REGION", "us-east-1")
        .args(["decrypt", "--lines", "--context", "column=phone"])
        .args(auth)
        .write_stdin(input)
        .output()
        .unwrap();
    let want: String = rows.iter().map(|(id, _)| format!("{}\n", phone(*id))).collect();
    assert_eq!(ok_text(&out), want, "every row decrypts to its own number");
}

#[test]
fn rewrap_to_kms_moves_a_local_column_survives_kill_9_and_is_idempotent() {
    require_kms_build();
    const N: i64 = 4_000;
    let moto = MotoServer::start();
    let key = rt().block_on(moto.create_key());
    let sb = Sandbox::new();
    let ring = init_ring(&sb, "app.keyring");
    let db = sb.path("app.db");
    sqlite_phones(&db, N);
    let url = format!("sqlite:{}", db.display());
    let base = |c: &mut assert_cmd::Command| {
        c.arg("--keyring").arg(&ring).args([
            "rewrap",
            "--db",
            &url,
            "--table",
            "customers",
            "--column",
            "phone",
            "--context",
            "column=phone",
        ]);
    };
    // The column as it is before the move: encrypted under the local keyring.
    let mut c = sb.larder();
    base(&mut c);
    let s = summary(&c.args(["--mode", "encrypt", "--json"]).output().unwrap());
    assert_eq!(s["rewritten"], N);
    assert_eq!(edks(&sb, &rows(&db)[0].1), [("local".to_owned(), "k1".to_owned())]);

    // local → KMS, slowed down and killed with SIGKILL after a few batches.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("larder"))
        .env_remove("LARDER_KEYRING")
        .env_remove("LARDER_CONFIG")
        .env("HOME", sb.dir.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
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
        .args(["--mode", "rotate", "--to-kms", &format!("aws:{key}"), "--kms-endpoint", &moto.endpoint()])
        .args(["--batch", "100", "--rate", "2000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&db).unwrap_or(0) < 600 {
        assert!(Instant::now() < deadline, "no progress within 60 s; moto log:\n{}", moto.log());
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = checkpoint(&db).expect("a checkpoint survives the kill");
    assert!(at < N, "killed mid-run");
    for (id, v) in rows(&db).iter().step_by(97) {
        let kind = edks(&sb, v)[0].0.clone();
        assert_eq!(kind == "aws-kms", *id <= at, "row {id} with checkpoint {at}: {kind}");
    }

    // Resume: the rest, through KMS, with --verify and the JSON summary.
    let gen_before = moto.count_requests("GenerateDataKey");
    let mut c = larder_aws(&sb, &moto);
    base(&mut c);
    c.env("AWS_REGION", "us-east-1").args([
        "--mode",
        "rotate",
        "--to-kms",
        &format!("aws:{key}"),
        "--kms-endpoint",
        &moto.endpoint(),
        "--json",
        "--verify",
        "50",
    ]);
    let s = summary(&c.output().unwrap());
    assert_eq!(s["resumed_after_id"], at);
    assert_eq!(s["rewritten"], N - at);
    assert_eq!((s["failed"].as_u64(), s["conflicts"].as_u64()), (Some(0), Some(0)), "{s}");
    assert_eq!((s["verify_sampled"].as_u64(), s["verify_ok"].as_u64()), (Some(50), Some(50)), "{s}");
    assert_eq!(s["keyring_generate_calls"], 1, "one KMS data key for {} rows: {s}", N - at);
    assert_eq!(moto.count_requests("GenerateDataKey") - gen_before, 1, "moto saw what larder counted");
    assert_eq!(checkpoint(&db), None);

    // Every row is now under the KMS key only, and decrypts through KMS to its own number.
    for (id, v) in rows(&db) {
        assert_eq!(edks(&sb, &v), [("aws-kms".to_owned(), key.clone())], "row {id}");
        if id > 40 {
            break; // `inspect` per row is slow; the --lines decrypt below covers all rows
        }
    }
    all_decrypt(&sb, &moto, &db, &["--kms", &format!("aws:{key}"), "--kms-endpoint", &moto.endpoint()]);
    // The local keyring alone no longer opens the column.
    let first = rows(&db)[0].1.clone();
    let out = sb
        .larder()
        .arg("--keyring")
        .arg(&ring)
        .args(["decrypt", "--text", "--context", "column=phone"])
        .write_stdin(first)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));

    // Idempotent: a rerun finds every row current, and calls KMS for nothing.
    let (gen, dec) = (moto.count_requests("GenerateDataKey"), moto.count_requests("Decrypt"));
    let mut c = larder_aws(&sb, &moto);
    base(&mut c);
    c.env("AWS_REGION", "us-east-1").args([
        "--mode",
        "rotate",
        "--to-kms",
        &format!("aws:{key}"),
        "--kms-endpoint",
        &moto.endpoint(),
        "--json",
    ]);
    let s = summary(&c.output().unwrap());
    assert_eq!((s["rewritten"].as_u64(), s["already_current"].as_u64()), (Some(0), Some(N as u64)), "{s}");
    assert_eq!((moto.count_requests("GenerateDataKey"), moto.count_requests("Decrypt")), (gen, dec));
}

#[test]
fn rewrap_under_a_configuration_file_naming_a_kms_key() {
    require_kms_build();
    let moto = MotoServer::start();
    let key = rt().block_on(moto.create_key());
    let sb = Sandbox::new();
    init_ring(&sb, "app.keyring");
    init_ring(&sb, "escrow.keyring");
    let db = sb.path("app.db");
    sqlite_phones(&db, 500);
    let url = format!("sqlite:{}", db.display());
    // KMS first (with an explicit endpoint field), the escrow file wrapping too, the old local
    // keyring only decrypting.
    let cfg = sb.path("larder.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n\n[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"{key}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\n\
             [[keyring]]\ntype = \"local\"\npath = \"escrow.keyring\"\n\n\
             [[keyring]]\ntype = \"local\"\npath = \"app.keyring\"\nrole = \"decrypt\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let rewrap = |auth: &[&str], mode: &str| {
        let mut c = larder_aws(&sb, &moto);
        c.env_remove("AWS_ENDPOINT_URL_KMS").args(auth).args([
            "rewrap",
            "--db",
            &url,
            "--table",
            "customers",
            "--column",
            "phone",
            "--context",
            "column=phone",
            "--mode",
            mode,
            "--json",
        ]);
        summary(&c.output().unwrap())
    };
    let local = ["--keyring".to_owned(), sb.path("app.keyring").display().to_string()];
    let local: Vec<&str> = local.iter().map(String::as_str).collect();
    let with_cfg = ["--config".to_owned(), cfg.display().to_string()];
    let with_cfg: Vec<&str> = with_cfg.iter().map(String::as_str).collect();
    assert_eq!(rewrap(&local, "encrypt")["rewritten"], 500);
    let s = rewrap(&with_cfg, "rotate");
    assert_eq!(s["rewritten"], 500, "{s}");
    assert_eq!(s["keyring_generate_calls"], 1, "{s}");
    let e = edks(&sb, &rows(&db)[0].1);
    assert_eq!(e, [("aws-kms".to_owned(), key.clone()), ("local".to_owned(), "k1".to_owned())]);
    let s = rewrap(&with_cfg, "rotate");
    assert_eq!(s["rewritten"], 0, "key ARNs compare offline: nothing to do the second time: {s}");
    // The escrow file alone decrypts the whole column.
    let escrow = sb.path("escrow.toml");
    std::fs::write(&escrow, "[[keyring]]\ntype = \"local\"\npath = \"escrow.keyring\"\n").unwrap();
    all_decrypt(&sb, &moto, &db, &["--config", escrow.to_str().unwrap()]);
}
