//! Several real worker processes sharing one keyring file (the gunicorn-style deployment of
//! seed 000): each process encrypts with its own cached data key (exactly one keyring call per
//! process, whatever its thread count), and every process decrypts every other's ciphertexts.
//!
//! Its own test binary: it re-executes itself (`current_exe`) as the worker processes.

use std::process::Command;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}

const CHILD_ENV: &str = "LARDER_ENVELOPE_TEST_CHILD";

/// In a child: 8 threads × 250 encrypts, print the ciphertexts and the keyring call counts.
fn child(path: &str, out: &str) {
    use std::io::Write;
    let envelope = Envelope::builder(LocalKeyring::load(path).unwrap()).build().blocking().unwrap();
    let c = ctx();
    let hs: Vec<_> = (0..8)
        .map(|t| {
            let (envelope, c) = (envelope.clone(), c.clone());
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| envelope.encrypt_text(&format!("010-{t:04}-{i:04}"), &c).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    for h in hs {
        for ct in h.join().unwrap() {
            writeln!(f, "ct {ct}").unwrap();
        }
    }
    let s = envelope.stats();
    writeln!(f, "stats {} {}", s.generate_calls, s.decrypt_calls).unwrap();
    f.flush().unwrap();
}

#[test]
fn four_worker_processes_share_one_keyring_file() {
    if let (Ok(path), Ok(out)) = (std::env::var(CHILD_ENV), std::env::var("LARDER_ENVELOPE_TEST_OUT")) {
        child(&path, &out);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    LocalKeyring::init(&path).unwrap();
    let exe = std::env::current_exe().unwrap();
    // Start all four, then wait: they run at the same time.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            let child = Command::new(&exe)
                .args(["four_worker_processes_share_one_keyring_file", "--exact", "--test-threads=1"])
                .env(CHILD_ENV, &path)
                .env("LARDER_ENVELOPE_TEST_OUT", &out)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let reader = Arc::new(Envelope::builder(LocalKeyring::load(&path).unwrap()).build().blocking().unwrap());
    let c = ctx();
    let mut edks = std::collections::HashSet::new();
    let mut total = 0;
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
        let text = std::fs::read_to_string(out).unwrap();
        let mut n = 0;
        for line in text.lines() {
            if let Some(ct) = line.strip_prefix("ct ") {
                let plain = reader.decrypt_text(ct, &c).unwrap();
                assert!(plain.starts_with("010-"), "{plain}");
                let bin = URL_SAFE_NO_PAD.decode(&ct[4..]).unwrap();
                edks.insert(bin[2..2 + 66].to_vec());
                n += 1;
            } else if let Some(stats) = line.strip_prefix("stats ") {
                assert_eq!(stats, "1 0", "one generate per process, no decrypt calls");
            }
        }
        assert_eq!(n, 2_000);
        total += n;
    }
    assert_eq!(total, 8_000);
    // Four processes, four data keys; the reader opened each EDK once.
    assert_eq!(edks.len(), 4);
    assert_eq!(reader.stats().decrypt_calls, 4);
}
