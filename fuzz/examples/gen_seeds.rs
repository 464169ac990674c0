//! Writes the checked-in seed corpora of the fuzz targets (valid inputs the fuzzer mutates):
//!   cd fuzz && cargo run --example gen_seeds
//! Ciphertexts are made with the fuzz targets' fixed test master key, so the targets' oracles
//! (a decrypted plaintext ends with its own BLAKE3 trailer) hold for them.

use std::fs;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};

fn now<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}

fn with_trailer(msg: &[u8]) -> Vec<u8> {
    // Same rule as the target's `trailer_of`: 4 bytes of BLAKE3(msg), in hex.
    let mut v = msg.to_vec();
    for b in &blake3::hash(msg).as_bytes()[..4] {
        v.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    v
}

fn write(dir: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(dir);
    fs::create_dir_all(&dir).expect("create corpus dir");
    // Existing seeds are kept: ciphertexts use random data keys and nonces, so rewriting them
    // would only churn the checked-in files.
    let path = dir.join(name);
    if !path.exists() {
        fs::write(path, bytes).expect("write seed");
    }
}

fn main() {
    // Envelope ciphertexts: binary (mode 0/2) and text (mode 1/3), plus encrypt-then-alter
    // (mode 4) inputs.
    let keyring = LocalKeyring::from_key_bytes("fuzz-k1", [0x42; 32]).expect("key id");
    let env = Envelope::builder(keyring).build();
    let ctx = EncryptionContext::new().with("tenant", "fuzz").with("field", "phone");
    let messages: [&[u8]; 4] = [b"010-1234-5678", b"", "홍길동".as_bytes(), &&[b'x'; 300][..]];
    for (i, msg) in messages.iter().enumerate() {
        let pt = with_trailer(msg);
        let ct = now(env.encrypt(&pt, &ctx)).expect("encrypt");
        for mode in [0u8, 2] {
            let mut seed = vec![mode];
            seed.extend_from_slice(&ct);
            write("envelope_decrypt", &format!("bin{i}_m{mode}"), &seed);
        }
        let text =
            now(env.encrypt_text(std::str::from_utf8(&pt).unwrap_or("010-1234-5678"), &ctx)).expect("text");
        if std::str::from_utf8(&pt).is_ok() {
            for mode in [1u8, 3] {
                let mut seed = vec![mode];
                seed.extend_from_slice(text.as_bytes());
                write("envelope_decrypt", &format!("text{i}_m{mode}"), &seed);
            }
        }
        let mut alter = vec![4u8, i as u8 * 7, 0, (i % 9) as u8];
        alter.extend_from_slice(msg);
        write("envelope_decrypt", &format!("alter{i}"), &alter);
    }
    // Keyring files: `LocalKeyring::init` + `rotate` write real ones; a hand-written one with
    // comments, blank lines and the envelope seeds' master key.
    let tmp = std::env::temp_dir().join(format!("larder-gen-seeds-{}", std::process::id()));
    fs::create_dir_all(&tmp).expect("tmp dir");
    let path = tmp.join("keyring");
    let _ = fs::remove_file(&path);
    LocalKeyring::init(&path).expect("init keyring");
    write("keyring_file", "init", &fs::read(&path).expect("read keyring"));
    LocalKeyring::rotate(&path).expect("rotate");
    LocalKeyring::rotate(&path).expect("rotate");
    write("keyring_file", "rotated_twice", &fs::read(&path).expect("read keyring"));
    let _ = fs::remove_dir_all(&tmp);
    let key = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI"; // 32 × 0x42, base64url
    let text = format!(
        "# larder keyring for the fuzz seeds\n\nlarder-keyring 1\n# old key\nkey k0 1763895600 old {}\nkey fuzz-k1 1763899200 primary {key}\n",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );
    write("keyring_file", "hand_written", text.as_bytes());
    // Cache frames: valid entries under the target's key text and secret (mode 0), and
    // structured seal-then-alter inputs (mode 1).
    use larder_cache::frame::{self, FrameMeta, MacKey};
    let mac = MacKey::from_secret(&larder_key::KeySecret::from_bytes(&[0x11; 32]).expect("secret"));
    let meta = FrameMeta { written_ms: 1_763_895_600_000, ttl_ms: 600_000, delta_ms: 100 };
    let payloads: [Vec<u8>; 3] = [
        postcard::to_allocvec(&(7u64, 5_000_000u64, 450u32, 36u32, Some("note"), vec![(1i64, 2.5f64)]))
            .expect("postcard"),
        postcard::to_allocvec(&vec!["a".to_string(), "bc".to_string()]).expect("postcard"),
        Vec::new(),
    ];
    for (i, p) in payloads.iter().enumerate() {
        let f = frame::seal(&mac, "fuzz:v1:seed", meta, p).expect("seal");
        let mut seed = vec![0u8];
        seed.extend_from_slice(&f);
        write("cache_frame", &format!("frame{i}"), &seed);
        let mut s = vec![1u8];
        s.extend_from_slice(&meta.written_ms.to_le_bytes());
        s.extend_from_slice(&meta.ttl_ms.to_le_bytes());
        s.extend_from_slice(&meta.delta_ms.to_le_bytes());
        s.extend_from_slice(&(i as u16 * 13).to_le_bytes());
        s.push(i as u8 * 3);
        s.extend_from_slice(p);
        write("cache_frame", &format!("alter{i}"), &s);
    }
    // Check that every checked-in ciphertext seed still decrypts with a fresh envelope (a
    // format change would make them stale: delete them and run this again).
    let fresh =
        Envelope::builder(LocalKeyring::from_key_bytes("fuzz-k1", [0x42; 32]).expect("key id")).build();
    let mut checked = 0;
    for entry in fs::read_dir("corpus/envelope_decrypt").expect("seed dir") {
        let bytes = fs::read(entry.expect("entry").path()).expect("read seed");
        let Some((&mode, rest)) = bytes.split_first() else { continue };
        if mode & 4 != 0 {
            continue;
        }
        let ok = if mode & 1 == 0 {
            now(fresh.decrypt(rest, &ctx)).is_ok()
        } else {
            now(fresh.decrypt_text(std::str::from_utf8(rest).expect("text seed"), &ctx)).is_ok()
        };
        assert!(ok, "a ciphertext seed no longer decrypts: delete fuzz/corpus/envelope_decrypt/{{bin,text}}* and rerun");
        checked += 1;
    }
    println!("{checked} ciphertext seeds decrypt");
    println!("seeds written under fuzz/corpus/");
}
