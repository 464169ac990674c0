//! `larder inspect` and `larder decrypt` on format v2 (multi-keyring) ciphertexts.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};
use larder::envelope::{EncryptionContext, Envelope, LocalKeyring};

#[test]
fn inspect_lists_every_edk_and_decrypt_reads_v2() {
    let sb = Sandbox::new();
    let ring = sb.with_keyring();
    let ctx = EncryptionContext::new().with("column", "phone");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The CLI's keyring is the second keyring of a multi-keyring envelope.
    let env = Envelope::builder(LocalKeyring::from_key_bytes("escrow", [9; 32]).unwrap())
        .with_keyring(LocalKeyring::load(&ring).unwrap())
        .build();
    let ct = rt.block_on(env.encrypt_text("010-1234-5678", &ctx)).unwrap();
    assert!(ct.starts_with("lv2."));

    let out = sb.larder().args(["inspect", "--json"]).write_stdin(ct.clone()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout_text(&out)).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["edks"].as_array().unwrap().len(), 2);
    assert_eq!(v["edks"][0]["key_id"], "escrow");
    assert_eq!(v["edks"][1]["key_id"], "k1");
    let out = sb.larder().arg("inspect").write_stdin(ct.clone()).output().unwrap();
    assert!(stdout_text(&out).contains("EDKs            2"), "{}", stdout_text(&out));

    let out = sb
        .larder()
        .arg("--keyring")
        .arg(&ring)
        .args(["decrypt", "--text", "--context", "column=phone"])
        .write_stdin(ct)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "010-1234-5678\n");
}
