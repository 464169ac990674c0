//! Cached-value frame decode + verify (`larder_cache::frame::open`), what every SQLite and
//! Redis read goes through before a value is used, then the payload decode a reader does.
//!
//! Input: one mode byte, then the rest.
//! * mode even: the rest is a stored entry read under the key text `fuzz:v1:seed`. It must
//!   be refused (garbage, a forgery, a frame for another key) unless it is a frame the seeds'
//!   writer made; an accepted frame must be exactly what `seal` writes for its contents.
//! * mode odd: structured `[written u64][ttl u64][delta u32][pos u16][bit u8][payload]`: the
//!   payload is sealed, must open to the same metadata and payload, must not open under
//!   another key text or another secret, and must not open once altered at `pos` (a bit flip,
//!   or a truncation when `bit >= 8`). The payload is then decoded as a cached value would be
//!   (postcard into a typed value): a typed error or a value, never a panic.
#![no_main]

use std::sync::OnceLock;

use larder_cache::frame::{self, FrameMeta, MacKey};
use larder_key::KeySecret;
use libfuzzer_sys::fuzz_target;

/// The seeds' deployment secret: 32 bytes of 0x11.
fn mac_key() -> &'static MacKey {
    static K: OnceLock<MacKey> = OnceLock::new();
    K.get_or_init(|| MacKey::from_secret(&KeySecret::from_bytes(&[0x11; 32]).expect("32-byte secret")))
}

fn other_mac_key() -> &'static MacKey {
    static K: OnceLock<MacKey> = OnceLock::new();
    K.get_or_init(|| MacKey::from_secret(&KeySecret::from_bytes(&[0x22; 32]).expect("32-byte secret")))
}

const KEY_TEXT: &str = "fuzz:v1:seed";

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Quote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
    note: Option<String>,
    history: Vec<(i64, f64)>,
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        if let Ok(f) = frame::open(mac_key(), KEY_TEXT, rest) {
            let again =
                frame::seal(mac_key(), KEY_TEXT, f.meta, f.payload).expect("reseal an accepted frame");
            assert_eq!(again, rest, "an accepted frame is not the canonical sealing of its contents");
            assert!(
                frame::open(other_mac_key(), KEY_TEXT, rest).is_err(),
                "frame opens under another secret"
            );
            assert!(frame::open(mac_key(), "fuzz:v1:other", rest).is_err(), "frame opens under another key");
        }
        return;
    }
    let Some((head, payload)) = rest.split_at_checked(23) else { return };
    let meta = FrameMeta {
        written_ms: u64::from_le_bytes(le(&head[0..8])),
        ttl_ms: u64::from_le_bytes(le(&head[8..16])),
        delta_ms: u32::from_le_bytes(le(&head[16..20])),
    };
    let pos = usize::from(u16::from_le_bytes(le(&head[20..22])));
    let bit = head[22];
    let sealed = frame::seal(mac_key(), KEY_TEXT, meta, payload).expect("seal a small payload");
    let opened = frame::open(mac_key(), KEY_TEXT, &sealed).expect("a fresh frame does not open");
    assert_eq!(opened.meta, meta);
    assert_eq!(opened.payload, payload);
    assert!(frame::open(mac_key(), "fuzz:v1:seeD", &sealed).is_err(), "frame opens under another key");
    assert!(frame::open(other_mac_key(), KEY_TEXT, &sealed).is_err(), "frame opens under another secret");
    let pos = pos % sealed.len();
    let altered = if bit < 8 {
        let mut s = sealed.clone();
        s[pos] ^= 1 << bit;
        s
    } else {
        sealed[..pos].to_vec()
    };
    assert!(
        frame::open(mac_key(), KEY_TEXT, &altered).is_err(),
        "altered frame (pos {pos}, bit {bit}) opened"
    );
    // The reader's next step: a typed decode of the verified payload.
    let _ = postcard::from_bytes::<Quote>(payload);
    let _ = postcard::from_bytes::<Vec<String>>(payload);
    let _ = postcard::from_bytes::<(u64, Option<Vec<u8>>)>(payload);
});
