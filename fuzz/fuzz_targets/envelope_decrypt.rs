//! Ciphertext parse + decrypt, binary and text forms (`Envelope::decrypt`, `decrypt_text`,
//! `inspect`), through the public API with a local keyring holding a fixed test master key.
//!
//! Input: one mode byte, then the rest.
//! * bit 0: 0 = binary form, 1 = text form (the rest as UTF-8; invalid UTF-8 is skipped).
//! * bit 1: 0 = one envelope shared by every run (its decrypt cache warm with the seeds' data
//!   keys), 1 = a fresh envelope (every data key goes through the keyring's unwrap).
//! * bit 2: 1 = "encrypt, then alter" mode: the rest is `[pos u16 LE][bit u8][plaintext]`;
//!   the plaintext is encrypted, the ciphertext altered at `pos` (a bit flip, or a
//!   truncation when `bit >= 8`), and decrypting the altered bytes must fail.
//!
//! Oracles, beyond "no panic": every seed plaintext ends with a hex trailer of its own BLAKE3
//! hash, and the fuzzer cannot make a new valid ciphertext without the master key, so a
//! successful decrypt must return a plaintext whose trailer checks; `inspect` must accept
//! whatever decrypts; an unaltered ciphertext must round-trip; an altered one must not open.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use larder_envelope::{EncryptionContext, Envelope, LocalKeyring};
use libfuzzer_sys::fuzz_target;

/// The fixed test master key of the seeds (fuzz/README in docs/reliability.md).
const KEY_ID: &str = "fuzz-k1";
const MASTER: [u8; 32] = [0x42; 32];

fn envelope() -> Envelope {
    Envelope::builder(LocalKeyring::from_key_bytes(KEY_ID, MASTER).expect("valid test key id")).build()
}

fn context() -> EncryptionContext {
    EncryptionContext::new().with("tenant", "fuzz").with("field", "phone")
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

/// Every seed plaintext is `msg || trailer_of(msg)`: the first 4 bytes of BLAKE3(msg) in hex
/// (ASCII, so text-form seeds stay UTF-8).
fn trailer_of(msg: &[u8]) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = blake3::hash(msg);
    let mut out = [0u8; 8];
    for (i, b) in h.as_bytes()[..4].iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

fn check_plaintext(pt: &[u8]) {
    assert!(pt.len() >= 8, "decrypt returned a {}-byte plaintext no seed has", pt.len());
    let (msg, trailer) = pt.split_at(pt.len() - 8);
    assert_eq!(trailer_of(msg), trailer, "decrypt returned wrong plaintext");
}

fuzz_target!(|data: &[u8]| {
    static SHARED: OnceLock<Envelope> = OnceLock::new();
    let Some((&mode, rest)) = data.split_first() else { return };
    let fresh;
    let env = if mode & 2 != 0 {
        fresh = envelope();
        &fresh
    } else {
        SHARED.get_or_init(envelope)
    };
    let ctx = context();

    if mode & 4 != 0 {
        let Some((head, plaintext)) = rest.split_at_checked(3) else { return };
        let pos = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let bit = head[2];
        let ct = now(env.encrypt(plaintext, &ctx)).expect("encrypt under the local keyring failed");
        let pt = now(env.decrypt(&ct, &ctx)).expect("fresh ciphertext did not decrypt");
        assert_eq!(&pt[..], plaintext, "round trip changed the plaintext");
        let pos = pos % ct.len();
        let altered = if bit < 8 {
            let mut c = ct.clone();
            c[pos] ^= 1 << bit;
            c
        } else {
            ct[..pos].to_vec()
        };
        assert!(
            now(env.decrypt(&altered, &ctx)).is_err(),
            "altered ciphertext (pos {pos}, bit {bit}) opened"
        );
        let text =
            now(env.encrypt_text(&String::from_utf8_lossy(plaintext), &ctx)).expect("encrypt_text failed");
        let mut t = text.into_bytes();
        let tpos = pos % t.len();
        t[tpos] = t[tpos].wrapping_add(1 + (bit % 64));
        if let Ok(t) = String::from_utf8(t) {
            assert!(now(env.decrypt_text(&t, &ctx)).is_err(), "altered text ciphertext opened");
        }
        return;
    }

    if mode & 1 == 0 {
        let inspected = Envelope::inspect(rest);
        if let Ok(pt) = now(env.decrypt(rest, &ctx)) {
            check_plaintext(&pt);
            assert!(inspected.is_ok(), "inspect refused a ciphertext that decrypts");
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let inspected = Envelope::inspect_text(text);
        if let Ok(pt) = now(env.decrypt_text(text, &ctx)) {
            check_plaintext(pt.as_bytes());
            assert!(inspected.is_ok(), "inspect_text refused a ciphertext that decrypts");
        }
    }
});
