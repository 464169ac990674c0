//! `larder encrypt|decrypt|inspect` on a real local keyring file, including bad input.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};

const PHONE: &str = "010-1234-5678";

fn encrypt_text(sb: &Sandbox, value: &str, ctx: &[&str]) -> String {
    let mut cmd = sb.larder_ring();
    cmd.args(["encrypt", "--text"]);
    for c in ctx {
        cmd.args(["--context", c]);
    }
    let out = cmd.write_stdin(value).output().unwrap();
    assert!(out.status.success(), "encrypt failed: {}", stderr_text(&out));
    let text = stdout_text(&out);
    assert!(text.starts_with("lv1.") && text.ends_with('\n'), "{text:?}");
    text
}

#[test]
fn text_round_trip_with_context() {
    let sb = Sandbox::new();
    let ct = encrypt_text(&sb, PHONE, &["table=customers", "column=phone"]);
    assert!(!ct.contains(PHONE));
    // Context pairs may come in any order.
    let out = sb
        .larder_ring()
        .args(["decrypt", "--text", "--context", "column=phone", "--context", "table=customers"])
        .write_stdin(ct)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), format!("{PHONE}\n"));
}

#[test]
fn binary_round_trip_of_arbitrary_bytes_from_a_file() {
    let sb = Sandbox::new();
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let input = sb.path("blob.bin");
    std::fs::write(&input, &data).unwrap();
    let out = sb.larder_ring().args(["encrypt", "--input"]).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let ct = out.stdout;
    assert!(ct.len() > data.len());
    let out = sb.larder_ring().arg("decrypt").write_stdin(ct).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, data);
}

#[test]
fn wrong_context_fails_and_prints_nothing() {
    let sb = Sandbox::new();
    let ct = encrypt_text(&sb, PHONE, &["column=phone"]);
    for ctx in
        [vec!["--context", "column=name"], vec![], vec!["--context", "column=phone", "--context", "x=y"]]
    {
        let out =
            sb.larder_ring().args(["decrypt", "--text"]).args(&ctx).write_stdin(ct.clone()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "context {ctx:?} must fail");
        assert!(out.stdout.is_empty(), "printed something for a failed decrypt: {:?}", stdout_text(&out));
        assert!(stderr_text(&out).contains("context"), "{}", stderr_text(&out));
    }
}

#[test]
fn garbage_and_tampered_ciphertexts_fail_cleanly() {
    let sb = Sandbox::new();
    for garbage in [&b"hello world"[..], &[0u8; 64][..], &[1, 1, 1, 200, 3][..]] {
        let out = sb.larder_ring().arg("decrypt").write_stdin(garbage.to_vec()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "garbage {garbage:?}");
        assert!(out.stdout.is_empty());
        assert!(!stderr_text(&out).contains("panicked"), "{}", stderr_text(&out));
    }
    let out =
        sb.larder_ring().args(["decrypt", "--text"]).write_stdin("lv1.!!!not-base64!!!").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    // One flipped character in the middle of a real ciphertext.
    let ct = encrypt_text(&sb, PHONE, &[]);
    let mut bytes = ct.trim_end().as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let out = sb.larder_ring().args(["decrypt", "--text"]).write_stdin(bytes).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn text_form_without_text_flag_is_a_usage_error() {
    let sb = Sandbox::new();
    let ct = encrypt_text(&sb, PHONE, &[]);
    let out = sb.larder_ring().arg("decrypt").write_stdin(ct).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains("--text"));
}

#[test]
fn empty_input_is_refused_unless_allowed() {
    let sb = Sandbox::new();
    let out = sb.larder_ring().arg("encrypt").write_stdin("").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("empty"), "{}", stderr_text(&out));
    let out = sb.larder_ring().arg("decrypt").write_stdin("").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("empty"));
    let out = sb.larder_ring().args(["encrypt", "--lines"]).write_stdin("").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("empty"));

    let out = sb.larder_ring().args(["encrypt", "--text", "--allow-empty"]).write_stdin("").output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let out = sb.larder_ring().args(["decrypt", "--text"]).write_stdin(out.stdout).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "\n");
}

#[test]
fn unreadable_input_file_is_reported() {
    let sb = Sandbox::new();
    let missing = sb.path("does-not-exist.txt");
    for sub in ["encrypt", "decrypt"] {
        for extra in [&[][..], &["--lines"][..]] {
            let out = sb.larder_ring().arg(sub).args(extra).arg("--input").arg(&missing).output().unwrap();
            assert_eq!(out.status.code(), Some(1));
            let err = stderr_text(&out);
            assert!(err.contains("does-not-exist.txt"), "{err}");
        }
    }
    let out = sb.larder().arg("inspect").arg("--input").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A directory is not readable as a file either.
    let out = sb.larder_ring().arg("encrypt").arg("--input").arg(sb.dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_keyring_is_reported_with_a_hint() {
    let sb = Sandbox::new();
    let out = sb
        .larder()
        .arg("--keyring")
        .arg(sb.path("nope"))
        .args(["encrypt", "--text"])
        .write_stdin(PHONE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("larder keys init"), "{}", stderr_text(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn lines_mode_reports_a_failing_line_and_processes_the_others() {
    let sb = Sandbox::new();
    let phones = ["010-1111-2222", "010-3333-4444", "010-5555-6666", "010-7777-8888"];
    let out = sb
        .larder_ring()
        .args(["encrypt", "--lines", "--context", "column=phone"])
        .write_stdin(phones.join("\n") + "\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let cts: Vec<String> = stdout_text(&out).lines().map(str::to_string).collect();
    assert_eq!(cts.len(), 4);
    assert!(stderr_text(&out).contains("encrypted 4 lines"), "{}", stderr_text(&out));

    // Line 3 is damaged; lines 1, 2 and 4 must still come out, in order.
    let mut input = cts.clone();
    input[2] = "lv1.AAAA".to_string();
    let out = sb
        .larder_ring()
        .args(["decrypt", "--lines", "--context", "column=phone"])
        .write_stdin(input.join("\n") + "\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_text(&out);
    assert!(err.contains("line 3:"), "{err}");
    assert!(!err.contains("line 1:") && !err.contains("line 2:") && !err.contains("line 4:"), "{err}");
    assert!(err.contains("3 of 4 lines"), "{err}");
    assert_eq!(stdout_text(&out), format!("{}\n{}\n{}\n", phones[0], phones[1], phones[3]));

    // CRLF input works too.
    let out = sb
        .larder_ring()
        .args(["decrypt", "--lines", "--context", "column=phone"])
        .write_stdin(cts.join("\r\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), phones.join("\n") + "\n");
}

#[test]
fn inspect_shows_the_header_and_no_secrets() {
    let sb = Sandbox::new();
    let ct = encrypt_text(&sb, PHONE, &["column=phone"]);
    let out = sb.larder().arg("inspect").write_stdin(ct.clone()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = stdout_text(&out);
    for needle in
        ["format version", "algorithm", "keyring         local", "key id          k1", "EDK size", "overhead"]
    {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains(PHONE));

    let out = sb.larder().args(["inspect", "--json"]).write_stdin(ct).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    assert_eq!(v["plaintext_bytes"], 13);
    assert_eq!(v["keyring"], "local");
    let overhead = v["overhead_bytes"].as_u64().unwrap();
    let edk = v["edk_bytes"].as_u64().unwrap();
    assert!(overhead <= edk + 64 + 8, "overhead {overhead} for an EDK of {edk}");

    // Binary form too.
    let out = sb.larder_ring().arg("encrypt").write_stdin(PHONE).output().unwrap();
    let out = sb.larder().arg("inspect").write_stdin(out.stdout).output().unwrap();
    assert!(out.status.success());
    assert!(stdout_text(&out).contains("binary form"));
}

#[test]
fn inspect_gives_a_clear_verdict_on_non_ciphertexts() {
    let sb = Sandbox::new();
    for input in [&b"just some text"[..], &b"lv1.zzzz"[..], &[9u8, 1, 1][..], &b""[..]] {
        let out = sb.larder().arg("inspect").write_stdin(input.to_vec()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "input {input:?}");
        let err = stderr_text(&out);
        assert!(err.contains("not a larder ciphertext") || err.contains("empty"), "{err}");
    }
}

#[test]
fn inspect_says_when_the_input_is_plain_text() {
    let sb = Sandbox::new();
    let out = sb.larder().arg("inspect").write_stdin("010-1234-5678\n").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_text(&out);
    assert!(err.contains("plain text") && err.contains("lv1."), "{err}");
}

#[test]
fn lines_mode_encrypt_reports_a_line_that_is_not_text() {
    let sb = Sandbox::new();
    let mut input = b"010-1111-2222\n".to_vec();
    input.extend_from_slice(b"\xff\xfe broken\n");
    input.extend_from_slice(b"010-3333-4444\n");
    let out = sb.larder_ring().args(["encrypt", "--lines"]).write_stdin(input).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_text(&out);
    assert!(err.contains("line 2: not UTF-8"), "{err}");
    assert!(err.contains("2 of 3 lines"), "{err}");
    let cts = stdout_text(&out);
    assert_eq!(cts.lines().count(), 2);
    let out = sb.larder_ring().args(["decrypt", "--lines"]).write_stdin(cts).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "010-1111-2222\n010-3333-4444\n");
}

#[test]
fn bad_flags_are_usage_errors() {
    let sb = Sandbox::new();
    sb.larder_ring().args(["encrypt", "--context", "novalue"]).write_stdin(PHONE).assert().code(2);
    sb.larder_ring().args(["encrypt", "--context", "=v"]).write_stdin(PHONE).assert().code(2);
    sb.larder_ring().args(["encrypt", "--kms", "gcp:abc"]).write_stdin(PHONE).assert().code(2);
    sb.larder_ring().args(["encrypt", "--kms-endpoint", "http://x"]).write_stdin(PHONE).assert().code(2);
    sb.larder_ring().args(["decrypt", "--allow-empty"]).write_stdin(PHONE).assert().code(2);
}

#[test]
fn rotation_keeps_old_ciphertexts_readable() {
    let sb = Sandbox::new();
    let old = encrypt_text(&sb, PHONE, &[]);
    sb.larder_ring().args(["keys", "rotate"]).assert().success();
    let new = encrypt_text(&sb, PHONE, &[]);
    let out = sb.larder().args(["inspect", "--json"]).write_stdin(new).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key_id"], "k2");
    let out = sb.larder_ring().args(["decrypt", "--text"]).write_stdin(old).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), format!("{PHONE}\n"));
}
