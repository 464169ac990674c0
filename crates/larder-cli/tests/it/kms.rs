//! `--kms aws:KEY_ID --kms-endpoint URL` against a real moto KMS server started by the test.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};
use larder_testkit::moto::MotoServer;
use serde_json::Value;

fn key_of(moto: &MotoServer) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(moto.create_key())
}

/// `larder ARGS --kms aws:KEY --kms-endpoint URL` with moto's dummy credentials and region,
/// and nothing else from AWS configuration.
fn larder_kms(sb: &Sandbox, moto: &MotoServer, key: &str, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = sb.larder();
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    cmd.args(args).args(["--kms", &format!("aws:{key}"), "--kms-endpoint", &moto.endpoint()]);
    cmd
}

#[test]
fn encrypt_decrypt_inspect_through_kms() {
    let moto = MotoServer::start();
    let key = key_of(&moto);
    let sb = Sandbox::new();
    let out = larder_kms(&sb, &moto, &key, &["encrypt", "--text", "--context", "column=phone"])
        .write_stdin("010-1234-5678")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\nmoto log:\n{}", stderr_text(&out), moto.log());
    let ct = stdout_text(&out);
    assert_eq!(moto.count_requests("GenerateDataKey"), 1);

    let out = sb.larder().args(["inspect", "--json"]).write_stdin(ct.clone()).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["keyring"], "aws-kms");
    assert_eq!(v["key_id"].as_str(), Some(key.as_str()));

    let decrypt = |ctx: &str| {
        larder_kms(&sb, &moto, &key, &["decrypt", "--text", "--context", ctx])
            .write_stdin(ct.clone())
            .output()
            .unwrap()
    };
    let out = decrypt("column=phone");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "010-1234-5678\n");
    assert_eq!(moto.count_requests("Decrypt"), 1);
    let out = decrypt("column=name");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn demo_phones_through_kms() {
    let moto = MotoServer::start();
    let key = key_of(&moto);
    let sb = Sandbox::new();
    let out = larder_kms(&sb, &moto, &key, &["demo", "--json", "--only", "phones"])
        .args(["--phones", "1000", "--phones-uncached", "40", "--phone-threads", "20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_text(&out), stderr_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let p = &v["phones"];
    assert!(p["simulated_kms_latency_ms"].is_null(), "no simulated latency with a real KMS");
    assert_eq!(p["cache_on"]["errors"].as_u64(), Some(0), "{p}");
    assert_eq!(p["cache_off"]["errors"].as_u64(), Some(0), "{p}");
    let on =
        p["cache_on"]["generate_calls"].as_u64().unwrap() + p["cache_on"]["decrypt_calls"].as_u64().unwrap();
    assert!((1..=4).contains(&on), "{p}");
    assert_eq!(p["cache_off"]["generate_calls"].as_u64(), Some(40));
    assert_eq!(p["cache_off"]["decrypt_calls"].as_u64(), Some(40));
    // Cross-check against what reached the server: the wrapper's counts plus the one
    // GenerateDataKey the demo makes to measure a ciphertext's size.
    let gen_on = p["cache_on"]["generate_calls"].as_u64().unwrap();
    assert_eq!(moto.count_requests("GenerateDataKey") as u64, gen_on + 40 + 1, "moto log:\n{}", moto.log());
}

#[test]
fn kms_without_a_region_says_so() {
    let moto = MotoServer::start();
    let sb = Sandbox::new();
    let out = sb
        .larder()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["encrypt", "--text", "--kms", "aws:alias/nope", "--kms-endpoint", &moto.endpoint()])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("AWS_REGION"), "{}", stderr_text(&out));
}
