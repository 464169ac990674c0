//! `larder index` and `larder keys add-index`: the index key comes from the keyring file,
//! spellings of one phone number give one index, and the CLI agrees with the library.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};
use larder::envelope::blind::{IndexSpec, Normalizer, Part};
use larder::envelope::{EncryptionContext, LocalKeyring};

#[test]
fn prints_one_index_for_every_spelling_and_matches_the_library() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let larder = || {
        let mut c = sb.larder();
        c.arg("--keyring").arg(&ring);
        c
    };
    // No index key yet: a clear error naming the fix.
    let out = larder().args(["index", "phone", "010-1234-5678"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("larder keys add-index"), "{}", stderr_text(&out));

    let out = larder().args(["keys", "add-index"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(stdout_text(&out).contains("i1"));
    let again = larder().args(["keys", "add-index"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "a second index key is refused");

    let out = larder()
        .args(["index", "phone", "010-1234-5678", "01012345678", "+82 10-1234-5678", "010-1234-5679"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let lines: Vec<String> = stdout_text(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].len(), 4, "16 bits by default: 4 hex digits");
    assert!(lines[0] == lines[1] && lines[1] == lines[2], "{lines:?}");
    assert_ne!(lines[0], lines[3]);

    // The library over the same keyring file computes the same values.
    let indexer = LocalKeyring::load(&ring).unwrap().blind_indexer().unwrap();
    let ctx = EncryptionContext::new().with("table", "customers").with("column", "phone");
    let spec = IndexSpec::new("phone", Normalizer::Phone, 16).unwrap();
    let with_ctx = indexer.blind_index(&spec, "010-1234-5678", &ctx).unwrap();
    assert_ne!(with_ctx.to_hex(), lines[0], "the context is part of the index");
    let no_ctx = indexer.blind_index(&spec, "010-1234-5678", &EncryptionContext::new()).unwrap();
    assert_eq!(no_ctx.to_hex(), lines[0]);

    let out = larder()
        .args(["index", "phone", "010-1234-5678", "--bits", "20", "--int"])
        .args(["--context", "table=customers", "--context", "column=phone"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let spec20 = IndexSpec::new("phone", Normalizer::Phone, 20).unwrap();
    let want = indexer.blind_index(&spec20, "010-1234-5678", &ctx).unwrap().to_i64().unwrap();
    assert_eq!(stdout_text(&out).trim(), want.to_string());

    let out = larder()
        .args(["index", "phone", "010-9999-5678", "--part", "last4", "--name", "phone_last4", "--bits", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let last4 = IndexSpec::new("phone_last4", Normalizer::Phone, 8).unwrap().part(Part::Last(4)).unwrap();
    let want = indexer.blind_index(&last4, "02-123-5678", &EncryptionContext::new()).unwrap();
    assert_eq!(stdout_text(&out).trim(), want.to_hex());

    // Rotating the master key keeps the index key: same output.
    larder().args(["keys", "rotate"]).assert().success();
    let out = larder().args(["index", "phone", "01012345678"]).output().unwrap();
    assert_eq!(stdout_text(&out).lines().next().unwrap(), lines[0]);
}

#[test]
fn bad_values_and_flags_are_reported() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    sb.larder().arg("--keyring").arg(&ring).args(["keys", "add-index"]).assert().success();
    let run = |args: &[&str]| sb.larder().arg("--keyring").arg(&ring).args(args).output().unwrap();

    let out = run(&["index", "phone", "010-1234-5678", "call me"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_text(&out).lines().count(), 1);
    let err = stderr_text(&out);
    assert!(err.contains("value 2") && !err.contains("call me"), "the value is personal data: {err}");

    let out = run(&["index", "email", "no-at-sign"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    for bad in [
        &["index", "phone", "010-1234-5678", "--bits", "0"][..],
        &["index", "phone", "010-1234-5678", "--bits", "64", "--int"],
        &["index", "phone", "010-1234-5678", "--part", "middle"],
        &["index", "phone", "010-1234-5678", "--part", "domain"],
        &["index", "phone", "010-1234-5678", "--name", "bad name"],
        &["index", "phone", "010-1234-5678", "--context", "nokey"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr_text(&out));
    }
}
