//! `--config larder.toml` / `LARDER_CONFIG` with local keyrings only (the AWS KMS half, and the
//! checked-in example file, are in kms_config.rs): two keyrings wrap every data key and either
//! alone decrypts; allow-lists refuse other master keys; `rewrap` and `index` read the file;
//! every mistake in the file is a clear error naming the field, never a panic.

use std::path::{Path, PathBuf};

use crate::common::{stderr_text, stdout_text, Sandbox};
use serde_json::Value;

/// `larder --keyring PATH keys init` (and `add-index` when asked).
fn init_ring(sb: &Sandbox, name: &str, index: bool) -> PathBuf {
    let p = sb.path(name);
    sb.larder().arg("--keyring").arg(&p).args(["keys", "init"]).assert().success();
    if index {
        sb.larder().arg("--keyring").arg(&p).args(["keys", "add-index"]).assert().success();
    }
    p
}

fn write(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let p = sb.path(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn encrypt(sb: &Sandbox, config: &Path, value: &str) -> String {
    let out = sb
        .larder()
        .arg("--config")
        .arg(config)
        .args(["encrypt", "--text", "--context", "column=phone"])
        .write_stdin(value)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    stdout_text(&out).trim().to_owned()
}

fn decrypt(sb: &Sandbox, config: &Path, ct: &str) -> std::process::Output {
    sb.larder()
        .env("LARDER_CONFIG", config)
        .args(["decrypt", "--text", "--context", "column=phone"])
        .write_stdin(ct.to_owned())
        .output()
        .unwrap()
}

fn edks(sb: &Sandbox, ct: &str) -> Vec<(String, String)> {
    let out = sb.larder().args(["inspect", "-o", "json"]).write_stdin(ct.to_owned()).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["edks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["keyring"].as_str().unwrap().to_owned(), e["key_id"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn two_local_keyrings_wrap_every_data_key_and_the_second_alone_decrypts() {
    let sb = Sandbox::new();
    init_ring(&sb, "a.keyring", false);
    init_ring(&sb, "b.keyring", false);
    init_ring(&sb, "c.keyring", false);
    // Relative paths: relative to the configuration file's directory.
    let ab = write(
        &sb,
        "ab.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\n\n[[keyring]]\nname = \"b\"\ntype = \"local\"\npath = \"b.keyring\"\n",
    );
    let only_b = write(&sb, "b.toml", "[[keyring]]\ntype = \"local\"\npath = \"b.keyring\"\n");
    let only_a = write(&sb, "a.toml", "[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\n");
    let only_c = write(&sb, "c.toml", "[[keyring]]\ntype = \"local\"\npath = \"c.keyring\"\n");

    let ct = encrypt(&sb, &ab, "010-1234-5678");
    assert!(ct.starts_with("lv2."), "two keyrings write format v2: {ct}");
    assert_eq!(
        edks(&sb, &ct),
        [("local".to_owned(), "k1".to_owned()), ("local".to_owned(), "k1".to_owned())]
    );

    for cfg in [&only_b, &only_a, &ab] {
        let out = decrypt(&sb, cfg, &ct);
        assert!(out.status.success(), "{}: {}", cfg.display(), stderr_text(&out));
        assert_eq!(stdout_text(&out), "010-1234-5678\n");
    }
    // A keyring that wrapped nothing opens nothing (same key id k1, different key: refused,
    // never garbage).
    let out = decrypt(&sb, &only_c, &ct);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    assert!(out.stdout.is_empty());

    // The same file through LARDER_CONFIG for encrypt too, and `config check`.
    let out = sb.larder().env("LARDER_CONFIG", &ab).args(["config", "check", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["keyrings"][0]["role"], "primary");
    assert_eq!(v["keyrings"][1]["role"], "wrap");
    assert_eq!(v["keyrings"][1]["name"], "b");
    assert_eq!(v["keyrings"][1]["path"], sb.path("b.keyring").display().to_string());
}

#[test]
fn decrypt_allow_lists_refuse_other_master_keys() {
    let sb = Sandbox::new();
    let old = init_ring(&sb, "old.keyring", false);
    init_ring(&sb, "new.keyring", false);
    let under_k1 = {
        let out = sb
            .larder()
            .arg("--keyring")
            .arg(&old)
            .args(["encrypt", "--text", "--context", "column=phone"])
            .write_stdin("010-0000-0001")
            .output()
            .unwrap();
        stdout_text(&out).trim().to_owned()
    };
    sb.larder().arg("--keyring").arg(&old).args(["keys", "rotate"]).assert().success();
    let under_k2 = {
        let out = sb
            .larder()
            .arg("--keyring")
            .arg(&old)
            .args(["encrypt", "--text", "--context", "column=phone"])
            .write_stdin("010-0000-0002")
            .output()
            .unwrap();
        stdout_text(&out).trim().to_owned()
    };
    let cfg = write(
        &sb,
        "larder.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"new.keyring\"\n\n[[keyring]]\ntype = \"local\"\npath = \"old.keyring\"\nrole = \"decrypt\"\ndecrypt_key_ids = [\"k1\"]\n",
    );
    let out = decrypt(&sb, &cfg, &under_k1);
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "010-0000-0001\n");
    let out = decrypt(&sb, &cfg, &under_k2);
    assert_eq!(out.status.code(), Some(1), "k2 is not on the allow-list");
    assert!(out.stdout.is_empty());
    // Without the allow-list the same file opens it: the refusal above was the list's.
    let open = write(
        &sb,
        "open.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"new.keyring\"\n\n[[keyring]]\ntype = \"local\"\npath = \"old.keyring\"\nrole = \"decrypt\"\n",
    );
    assert!(decrypt(&sb, &open, &under_k2).status.success());
    // The decrypt-only keyring never wraps: new values carry one EDK, the new keyring's.
    let ct = encrypt(&sb, &cfg, "010-0000-0003");
    assert!(ct.starts_with("lv1."), "{ct}");

    // An allow-list naming a key the file does not have, or leaving out the primary of a
    // writing keyring, is a configuration error naming the field.
    let bad = write(
        &sb,
        "bad.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"old.keyring\"\ndecrypt_key_ids = [\"k1\"]\n",
    );
    let out = decrypt(&sb, &bad, &under_k1);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("keyring[0].decrypt_key_ids: leaves out \"k2\""),
        "{}",
        stderr_text(&out)
    );
    let bad = write(
        &sb,
        "bad2.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"old.keyring\"\ndecrypt_key_ids = [\"k1\", \"k2\", \"k9\"]\n",
    );
    let out = decrypt(&sb, &bad, &under_k1);
    assert!(
        stderr_text(&out).contains("keyring[0].decrypt_key_ids[2]: \"k9\" is not a key of"),
        "{}",
        stderr_text(&out)
    );
}

#[test]
fn rewrap_and_index_read_the_config() {
    let sb = Sandbox::new();
    let a = init_ring(&sb, "a.keyring", true);
    init_ring(&sb, "b.keyring", false);
    let ab = write(
        &sb,
        "ab.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\n[[keyring]]\ntype = \"local\"\npath = \"b.keyring\"\n",
    );
    let db = sb.path("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT)").unwrap();
        for i in 1..=300 {
            conn.execute(
                "INSERT INTO customers (id, phone) VALUES (?1, ?2)",
                rusqlite::params![i, format!("010-5555-{i:04}")],
            )
            .unwrap();
        }
    }
    let url = format!("sqlite:{}", db.display());
    let rewrap = |cfg: &Path, mode: &str| {
        let out = sb
            .larder()
            .arg("--config")
            .arg(cfg)
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
            .args(["--mode", mode, "--json", "--batch", "64", "--verify", "20"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let s = rewrap(&ab, "encrypt");
    assert_eq!((s["rewritten"].as_u64(), s["verify_ok"].as_u64()), (Some(300), Some(20)), "{s}");
    assert_eq!(s["keyring_generate_calls"], 1, "one data key for 300 rows: {s}");
    let s = rewrap(&ab, "rotate");
    assert_eq!(s["rewritten"], 0, "already current under both keyrings: {s}");

    // Every row has both EDKs: the second keyring alone decrypts each to its own number.
    let only_b = write(&sb, "b.toml", "[[keyring]]\ntype = \"local\"\npath = \"b.keyring\"\n");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, phone FROM customers ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let input: String = rows.iter().map(|(_, ct)| format!("{ct}\n")).collect();
    let out = sb
        .larder()
        .arg("--config")
        .arg(&only_b)
        .args(["decrypt", "--lines", "--context", "column=phone"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let want: String = (1..=300).map(|i| format!("010-5555-{i:04}\n")).collect();
    assert_eq!(stdout_text(&out), want);

    // Moving the column to b alone (a rotate under a one-keyring config) rewrites every row.
    let s = rewrap(&only_b, "rotate");
    assert_eq!(s["rewritten"], 300, "{s}");

    // `larder index` takes the index key from the first local keyring (or [index] path).
    let by_ring =
        sb.larder().arg("--keyring").arg(&a).args(["index", "phone", "010-1234-5678"]).output().unwrap();
    assert!(by_ring.status.success(), "{}", stderr_text(&by_ring));
    let by_cfg =
        sb.larder().arg("--config").arg(&ab).args(["index", "phone", "01012345678"]).output().unwrap();
    assert!(by_cfg.status.success(), "{}", stderr_text(&by_cfg));
    assert_eq!(stdout_text(&by_cfg), stdout_text(&by_ring));
    let explicit = write(
        &sb,
        "ix.toml",
        "[[keyring]]\ntype = \"local\"\npath = \"b.keyring\"\n[index]\npath = \"a.keyring\"\n",
    );
    let out = sb
        .larder()
        .arg("--config")
        .arg(&explicit)
        .args(["index", "phone", "010 1234 5678"])
        .output()
        .unwrap();
    assert_eq!(stdout_text(&out), stdout_text(&by_ring));
    let out =
        sb.larder().arg("--config").arg(&only_b).args(["index", "phone", "010-1234-5678"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("has no index key"), "{}", stderr_text(&out));
}

#[test]
fn mistakes_in_the_file_are_clear_errors_naming_the_field() {
    let sb = Sandbox::new();
    init_ring(&sb, "a.keyring", false);
    let run = |cfg: &Path, args: &[&str]| {
        sb.larder().arg("--config").arg(cfg).args(args).write_stdin("x").output().unwrap()
    };
    let cases: &[(&str, &str)] = &[
        ("[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\nregoin = \"x\"\n", "unknown field `keyring[0].regoin`"),
        ("[[keyring]]\ntype = \"local\"\n", "missing field `keyring[0].path`"),
        (
            "[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\n[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"arn:aws:kms:ap-northeast-2:1234:key/x\"\n",
            "`keyring[1].key_arn` = \"arn:aws:kms:ap-northeast-2:1234:key/x\" is not an AWS KMS key ARN: the account part must be 12 digits",
        ),
        ("[[keyring]]\ntype = \"local\"\npath = \"missing.keyring\"\n", "keyring[0] (keyring[0]): cannot open the local keyring"),
        ("[[keyring]\n", "not valid TOML"),
        ("\u{0}\u{1}binary", "not valid TOML"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let cfg = write(&sb, &format!("bad{i}.toml"), text);
        for args in [&["encrypt", "--text"][..], &["decrypt", "--text"], &["config", "check"]] {
            let out = run(&cfg, args);
            let err = stderr_text(&out);
            assert_eq!(out.status.code(), Some(1), "{text:?} {args:?}: {err}");
            assert!(err.contains(want), "{text:?} {args:?}\n  got:  {err}\n  want: {want}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // A missing file.
    let out = run(&sb.path("nope.toml"), &["encrypt", "--text"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("nope.toml does not exist"), "{}", stderr_text(&out));
    // --config with --keyring or --kms: usage errors (exit 2).
    let ok = write(&sb, "ok.toml", "[[keyring]]\ntype = \"local\"\npath = \"a.keyring\"\n");
    let out = sb
        .larder()
        .arg("--config")
        .arg(&ok)
        .arg("--keyring")
        .arg(sb.path("a.keyring"))
        .args(["encrypt", "--text"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains("give only one"));
    let out = run(
        &ok,
        &[
            "rewrap",
            "--db",
            "sqlite:x.db",
            "--table",
            "t",
            "--column",
            "c",
            "--mode",
            "rotate",
            "--to-kms",
            "aws:alias/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains("--to-kms and --config"), "{}", stderr_text(&out));
    let out = sb.larder().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_text(&out).contains("LARDER_CONFIG"));
}
