//! What larder-envelope writes to `tracing` (issue 13, item 6): a span per keyring call with
//! operation, keyring kind, outcome and latency, and never plaintext or key bytes.

use std::io::Write;
use std::sync::{Arc, Mutex};

use larder_envelope::{
    BoxFuture, DataKey, DataKeyLimits, EncryptedDataKey, EncryptionContext, Envelope, EnvelopeError,
    GeneratedKey, Keyring, KeyringKind,
};
use tracing_subscriber::fmt::format::FmtSpan;

/// The data key every call of [`FixedKeyring`] returns: the test knows its bytes, so it can
/// look for them in the output.
const DATA_KEY: [u8; 32] = [0xA7; 32];
/// The EDK bytes (not secret, but an EDK has no business in a log either).
const EDK: [u8; 8] = [0xE1, 0xD2, 0xC3, 0xB4, 0xE1, 0xD2, 0xC3, 0xB4];

struct FixedKeyring;

impl Keyring for FixedKeyring {
    fn kind(&self) -> KeyringKind {
        KeyringKind::Local
    }

    fn primary_key_id(&self) -> String {
        "fixed-test-key".into()
    }

    fn generate_data_key<'a>(
        &'a self,
        _: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        Box::pin(async move {
            Ok(GeneratedKey {
                plaintext: DataKey::from_array(DATA_KEY),
                edk: EncryptedDataKey {
                    kind: KeyringKind::Local,
                    key_id: self.primary_key_id(),
                    ciphertext: EDK.to_vec(),
                },
            })
        })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        _: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        Box::pin(async move {
            if edk.ciphertext == EDK {
                Ok(DataKey::from_array(DATA_KEY))
            } else {
                Err(EnvelopeError::InvalidEncryptedDataKey("not the fixed EDK".into()))
            }
        })
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every rendering of `bytes` a careless log line could contain.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        format!("{bytes:?}"),
        format!("{:?}", bytes.iter().map(|b| format!("{b:#x}")).collect::<Vec<_>>()),
        String::from_utf8_lossy(bytes).into_owned(),
    ]
}

#[test]
fn keyring_calls_are_spans_without_secrets() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let plaintext = "010-9876-5432 Kim Minji";
    let context = EncryptionContext::new().with("table", "inquiries").with("column", "phone");
    let (written, read) = tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // Two messages per data key: the third encrypt retires the first key (a limit).
            let writer = Envelope::builder(FixedKeyring)
                .data_key_limits(DataKeyLimits { max_messages: 2, ..DataKeyLimits::default() })
                .build();
            let reader = Envelope::builder(FixedKeyring).build();
            for _ in 0..3 {
                let ct = writer.encrypt_text(plaintext, &context).await.unwrap();
                assert_eq!(reader.decrypt_text(&ct, &context).await.unwrap(), plaintext);
            }
            let forged = {
                let mut ct = writer.encrypt(plaintext.as_bytes(), &context).await.unwrap();
                // The EDK's first byte (v1: version, alg, kind, id len, id, EDK len, EDK).
                ct[4 + "fixed-test-key".len() + 2] ^= 1;
                ct
            };
            assert!(reader.decrypt(&forged, &context).await.is_err());
            (writer.stats(), reader.stats())
        })
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();

    // The spans and fields are there.
    let closes: Vec<&str> =
        text.lines().filter(|l| l.contains("keyring_call") && l.contains("close")).collect();
    let generate = closes.iter().filter(|l| l.contains("operation=\"generate_data_key\"")).count();
    let decrypt_ok = closes
        .iter()
        .filter(|l| l.contains("operation=\"decrypt_data_key\"") && l.contains("outcome=\"ok\""))
        .count();
    let decrypt_refused = closes
        .iter()
        .filter(|l| {
            l.contains("operation=\"decrypt_data_key\"")
                && l.contains("outcome=\"invalid_encrypted_data_key\"")
        })
        .count();
    // 4 encrypts at 2 messages per data key: at least 2 keys (a refresh ahead of the limit may
    // have made one more); one span per call the envelope counted.
    assert!(written.generate_calls >= 2, "{written:?}");
    assert_eq!(generate as u64, written.generate_calls, "{text}");
    // The fixed keyring gives every data key the same EDK: the reader opens it once, then hits
    // its cache; the forged EDK is one more call, refused.
    assert_eq!((decrypt_ok, decrypt_refused), (1, 1), "{text}");
    assert_eq!(read.decrypt_calls, 2);
    assert_eq!(read.keyring_errors, 1);
    for l in &closes {
        assert!(l.contains("keyring=\"local\""), "{l}");
        assert!(l.contains("latency_us="), "{l}");
        assert!(l.contains(" INFO "), "keyring calls are info spans: {l}");
    }
    assert!(
        text.contains("data key retired: limit reached") && text.contains("limit=\"messages\""),
        "{text}"
    );
    assert!(text.contains("data-key cache miss"), "{text}");

    // And nothing secret is.
    let mut secrets = renderings(&DATA_KEY);
    secrets.extend(renderings(&EDK));
    secrets.push(plaintext.to_owned());
    secrets.push("010-9876-5432".into());
    secrets.push("inquiries".into());
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s:?} appears in the tracing output:\n{text}");
    }
}
