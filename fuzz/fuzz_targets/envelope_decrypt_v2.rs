//! Ciphertext format v2 (several EDKs) parse + decrypt through the public API: a multi-keyring
//! envelope (local `a1` primary, local `b1` also wrapping) and a reader holding only `b1`, with
//! the keys and contexts of docs/ciphertext-v2-vectors.json, whose ciphertexts are the seeds
//! (`fuzz/corpus/envelope_decrypt_v2`: one mode byte, then a vector's bytes or text form).
//!
//! Input: one mode byte, then the rest.
//! * bits 0-1: which vector's encryption context (0-3) is presented.
//! * bit 2: 0 = binary form, 1 = text form (the rest as UTF-8; invalid UTF-8 is skipped).
//! * bit 3: 0 = envelopes shared by every run (decrypt caches warm), 1 = fresh ones.
//! * bit 4: 0 = decrypt with the multi-keyring envelope, 1 = with the `b1`-only reader (the
//!   failover path: it skips EDKs it does not accept).
//! * bit 5: "encrypt, then alter": the rest is `[pos u16 LE][bit u8][plaintext]`; the plaintext
//!   is encrypted by the multi-keyring envelope (a v2 ciphertext with two EDKs), both readers
//!   must open it, then the ciphertext is altered at `pos` (a bit flip, or a truncation when
//!   `bit >= 8`) and neither may open it.
//!
//! Oracles, beyond "no panic": the fuzzer cannot make a valid ciphertext without a master key,
//! so whatever decrypts must be one of the vectors' plaintexts; `inspect` must accept whatever
//! decrypts and list at least one EDK.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};
use libfuzzer_sys::fuzz_target;

/// docs/ciphertext-v2-vectors.json: local keys a1 and b1, the four vectors' contexts and
/// plaintexts.
const MASTER_A: [u8; 32] = [0x0A; 32];
const MASTER_B: [u8; 32] = [0x0B; 32];
const CONTEXTS: [&[(&str, &str)]; 4] = [
    &[("table", "inquiries"), ("column", "phone")],
    &[("table", "inquiries"), ("column", "phone")],
    &[("column", "email")],
    &[],
];
const PLAINTEXTS: [&[u8]; 3] = [b"010-1234-5678", b"hong.gildong@example.com", b""];

fn multi() -> Envelope {
    Envelope::builder(LocalKeyring::from_key_bytes("a1", MASTER_A).expect("key id"))
        .with_keyring(LocalKeyring::from_key_bytes("b1", MASTER_B).expect("key id"))
        .build()
}

fn b_only() -> Envelope {
    Envelope::builder(LocalKeyring::from_key_bytes("b1", MASTER_B).expect("key id")).build()
}

/// The local keyring never waits, so every future is ready on its first poll; one that is not
/// would be a finding in itself.
fn now<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a local-keyring envelope future was not ready at once"),
    }
}

fn check_plaintext(pt: &[u8]) {
    assert!(PLAINTEXTS.contains(&pt), "decrypt returned a plaintext no vector has ({} bytes)", pt.len());
}

fuzz_target!(|data: &[u8]| {
    static SHARED: OnceLock<(Envelope, Envelope)> = OnceLock::new();
    let Some((&mode, rest)) = data.split_first() else { return };
    let fresh;
    let (m, b) = if mode & 8 != 0 {
        fresh = (multi(), b_only());
        (&fresh.0, &fresh.1)
    } else {
        let s = SHARED.get_or_init(|| (multi(), b_only()));
        (&s.0, &s.1)
    };
    let ctx: EncryptionContext = CONTEXTS[usize::from(mode & 3)].iter().map(|(k, v)| (*k, *v)).collect();

    if mode & 32 != 0 {
        let Some((head, plaintext)) = rest.split_at_checked(3) else { return };
        let pos = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let bit = head[2];
        let ct = now(m.encrypt(plaintext, &ctx)).expect("encrypt with two local keyrings failed");
        assert_eq!(ct[0], 2, "a two-keyring envelope writes format v2");
        for reader in [m, b] {
            let pt = now(reader.decrypt(&ct, &ctx)).expect("fresh v2 ciphertext did not decrypt");
            assert_eq!(&pt[..], plaintext, "round trip changed the plaintext");
        }
        let pos = pos % ct.len();
        let altered = if bit < 8 {
            let mut c = ct.clone();
            c[pos] ^= 1 << bit;
            c
        } else {
            ct[..pos].to_vec()
        };
        for reader in [m, b] {
            assert!(now(reader.decrypt(&altered, &ctx)).is_err(), "altered v2 ciphertext (pos {pos}, bit {bit}) opened");
        }
        return;
    }

    let reader = if mode & 16 != 0 { b } else { m };
    if mode & 4 == 0 {
        let inspected = Envelope::inspect(rest);
        if let Ok(pt) = now(reader.decrypt(rest, &ctx)) {
            check_plaintext(&pt);
            assert!(inspected.is_ok_and(|i| !i.edks.is_empty()), "inspect refused a ciphertext that decrypts");
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let inspected = Envelope::inspect_text(text);
        if let Ok(pt) = now(reader.decrypt_text(text, &ctx)) {
            check_plaintext(pt.as_bytes());
            assert!(inspected.is_ok_and(|i| !i.edks.is_empty()), "inspect_text refused a ciphertext that decrypts");
        }
    }
});
