//! Real forks (issue 9): a parent warms an envelope, then forks 8 children that each encrypt
//! 10,000 values with the inherited envelope. Across every ciphertext of every process there
//! must be no repeated (data key, nonce) pair and no EDK used by two processes: a child never
//! encrypts with a data key, usage counter or generator state that another process holds.
//!
//! Variants: the local keyring with a warmed envelope; the local keyring created (and the
//! envelope built) on the forking thread with nothing encrypted before the fork; AWS KMS
//! against moto with a warmed envelope (the SDK client's pooled connections must not be
//! shared with the parent either).
//!
//! Its own test binary: it forks, and a fork in a process whose other test threads hold locks
//! (allocator, stdout, a runtime) can deadlock the child.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_envelope::{BlockingEnvelope, EncryptionContext, Envelope, Keyring, LocalKeyring};
use larder_testkit::moto::MotoServer;

const CHILDREN: usize = 8;
const PER_CHILD: usize = 10_000;

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("table", "inquiries").with("column", "phone")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("larder-envelope-fork-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// (EDK fields, nonce) of a binary ciphertext, read by offsets from docs/ciphertext-format.md.
fn edk_and_nonce(ct: &[u8]) -> (Vec<u8>, [u8; 12]) {
    let l = usize::from(ct[3]);
    let e = usize::from(u16::from_be_bytes([ct[4 + l], ct[5 + l]]));
    let edk_fields = ct[2..6 + l + e].to_vec();
    let nonce_at = 38 + l + e;
    (edk_fields, ct[nonce_at..nonce_at + 12].try_into().unwrap())
}

/// Appends `len(edk) u16 | edk | nonce` records for `n` fresh ciphertexts to `out`; checks
/// that a sample decrypts to what was encrypted.
fn encrypt_many(env: &BlockingEnvelope, n: usize, tag: usize, out: &mut Vec<u8>) -> Result<(), String> {
    for i in 0..n {
        let phone = format!("010-{:04}-{:04}", tag, i);
        let ct = env.encrypt(phone.as_bytes(), &ctx()).map_err(|e| e.to_string())?;
        if i % 997 == 0 {
            let back = env.decrypt(&ct, &ctx()).map_err(|e| e.to_string())?;
            if back.as_slice() != phone.as_bytes() {
                return Err(format!("round trip of {phone} gave other bytes"));
            }
        }
        let (edk, nonce) = edk_and_nonce(&ct);
        out.extend_from_slice(&(edk.len() as u16).to_be_bytes());
        out.extend_from_slice(&edk);
        out.extend_from_slice(&nonce);
    }
    Ok(())
}

fn read_records(path: &Path) -> Vec<(Vec<u8>, [u8; 12])> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        let edk = bytes[at + 2..at + 2 + n].to_vec();
        let nonce = bytes[at + 2 + n..at + 14 + n].try_into().unwrap();
        out.push((edk, nonce));
        at += 14 + n;
    }
    out
}

/// Forks the children, lets each encrypt with `env`, and checks the fleet's ciphertexts.
/// `parent_records` are the parent's own ciphertexts (before and after the fork).
/// Tests of this binary run one at a time: a fork copies only the forking thread, so another
/// test's thread inside larder at that moment could leave a lock held in the child (true of
/// any threaded program; a prefork server forks before it serves).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fork_and_check(env: &BlockingEnvelope, dir: &Path, parent_before: usize) {
    let mut parent = Vec::new();
    encrypt_many(env, parent_before, 9999, &mut parent).unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            let path = dir.join(format!("child-{i}"));
            let env = env.clone();
            larder_forktest::fork(move || {
                let mut out = Vec::new();
                match encrypt_many(&env, PER_CHILD, i, &mut out) {
                    Ok(()) => {
                        fs::write(&path, out).unwrap();
                        0
                    }
                    Err(e) => {
                        eprintln!("child {i}: {e}");
                        1
                    }
                }
            })
        })
        .collect();
    // The parent keeps encrypting while the children run: its key and stream stay its own.
    encrypt_many(env, 1_000, 9998, &mut parent).unwrap();
    for (i, c) in children.into_iter().enumerate() {
        assert_eq!(c.wait_timeout(Duration::from_secs(120)), 0, "child {i} failed");
    }
    fs::write(dir.join("parent"), &parent).unwrap();

    let mut owner: HashMap<Vec<u8>, String> = HashMap::new();
    let mut pairs = HashSet::new();
    let mut total = 0usize;
    let mut shared_edks = 0usize;
    let names: Vec<String> = (0..CHILDREN).map(|i| format!("child-{i}")).chain(["parent".into()]).collect();
    for name in &names {
        let records = read_records(&dir.join(name));
        if name != "parent" {
            assert_eq!(records.len(), PER_CHILD, "{name} wrote {} records", records.len());
        }
        let mut mine = HashSet::new();
        for (edk, nonce) in records {
            total += 1;
            pairs.insert((edk.clone(), nonce));
            mine.insert(edk);
        }
        for edk in mine {
            if let Some(other) = owner.insert(edk, name.clone()) {
                shared_edks += 1;
                eprintln!("an EDK is used by both {other} and {name}");
            }
        }
    }
    eprintln!(
        "{total} ciphertexts from {} processes: {} distinct (EDK, nonce) pairs, {} distinct EDKs",
        names.len(),
        pairs.len(),
        owner.len()
    );
    assert_eq!(total, CHILDREN * PER_CHILD + parent_before + 1_000);
    assert_eq!(pairs.len(), total, "{} repeated (data key, nonce) pairs", total - pairs.len());
    assert_eq!(shared_edks, 0, "data keys used by more than one process");
}

#[test]
fn forked_children_never_share_data_keys_or_nonces_local_keyring() {
    let _serial = serial();
    let dir = temp_dir("local-warm");
    let keyring = LocalKeyring::init(dir.join("keyring")).unwrap();
    let env = Envelope::builder(keyring).build().blocking().unwrap();
    fork_and_check(&env, &dir, 500);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn keyring_created_on_the_forking_thread_then_fork_before_any_encrypt() {
    let _serial = serial();
    let dir = temp_dir("local-cold");
    // `init` draws the master key on this very thread right before the fork.
    let keyring = LocalKeyring::init(dir.join("keyring")).unwrap();
    let env = Envelope::builder(keyring).build().blocking().unwrap();
    fork_and_check(&env, &dir, 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn forked_children_never_share_data_keys_or_nonces_kms() {
    let _serial = serial();
    let dir = temp_dir("kms");
    let moto = MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = rt.block_on(moto.create_key());
    drop(rt);
    // The keyring with its default retry policy and timeouts (moto answers on loopback).
    let keyring = larder_envelope::AwsKmsKeyring::new(moto.kms_client(), &key);
    assert_eq!(keyring.kind(), larder_envelope::KeyringKind::AwsKms);
    let env = Envelope::builder(keyring).build().blocking().unwrap();
    // Warm: a data key is cached and the SDK client holds a pooled connection to moto.
    fork_and_check(&env, &dir, 200);
    // One GenerateDataKey per process (parent + 8 children), whatever each encrypted.
    let generated = moto.count_requests("GenerateDataKey");
    assert_eq!(generated, CHILDREN + 1, "GenerateDataKey calls seen by moto");
    let _ = fs::remove_dir_all(&dir);
}
