//! The Python binding of larder: the native module `larder._larder`, wrapped by the pure-Python
//! package in `python/larder/` (built together by maturin; `pyproject.toml` at the repository
//! root).
//!
//! What it is for: a Django or Celery worker gets the same things a Rust service does, from the
//! same Rust code — stable keys (`KeySpace`, byte-identical with `larder-key`), the memo cache
//! (`Cache`, `Memo` under `@larder.memoize`, on `larder-cache` with its CBOR value codec) and
//! envelope encryption (`Envelope`, `LocalKeyring`, `AwsKmsKeyring`, `larder-envelope`) and blind
//! indexes (`blind_index`, `BlindIndexKey`, `normalize`: `larder_envelope::blind`).
//! Python values are walked here, in Rust, straight into larder-key's `Encoder`: there is no
//! second implementation of the key format in Python.
//!
//! What it deliberately does not do: it never keys a value through `hash()`, `repr()` or
//! pickle (unknown types are a `TypeError` naming the fix); it never stores pickles unless a
//! function opts in *and* a secret authenticates the store; it holds no state across `fork()`
//! (caches and envelopes are rebuilt in a child, by process id); and it has no Rust API of its
//! own (Rust callers use the `larder` crate).
//!
//! Example (Python):
//!
//! ```python
//! import larder
//! larder.KeySpace("loan_calc", 1).key({"user_id": 7, "amount_won": 5000000})
//! # 'loan_calc:v1:k643e2wvx7rcsfyuy3tqyfbuykeoyfkm', as `larder key --json` prints it
//! ```
//!
//! Unsafe code: none here. The FFI glue (the C entry point `PyInit__larder`, type objects,
//! method tables) is generated inside PyO3's own crates and macros, which the lint does not
//! reach, so this crate keeps the workspace's `forbid(unsafe_code)` like every other. Should a
//! PyO3 upgrade start tripping it, relax it to `deny` here only, with `allow` on the
//! generated items, and say so.
#![forbid(unsafe_code)]

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod blind;
mod envelope;
mod keys;
mod memo;
mod values;

create_exception!(_larder, LarderError, PyException, "Base class of every larder error.");
create_exception!(
    _larder,
    KeyEncodingError,
    LarderError,
    "A value cannot become a cache key (NaN, out of range, too large, bad namespace or secret)."
);
create_exception!(
    _larder,
    CacheError,
    LarderError,
    "The cache could not be configured or opened, or a value cannot be stored."
);
create_exception!(_larder, EnvelopeError, LarderError, "Base class of the envelope's errors.");
create_exception!(_larder, EncryptionError, EnvelopeError, "A value could not be encrypted.");
create_exception!(
    _larder,
    DecryptionError,
    EnvelopeError,
    "A ciphertext could not be decrypted: altered, not a larder ciphertext, or another context. Never an empty string."
);
create_exception!(
    _larder,
    KeyringError,
    EnvelopeError,
    "The keyring failed: KMS unreachable, throttled or denied, or a bad keyring file."
);
create_exception!(
    _larder,
    BlindIndexError,
    LarderError,
    "A blind index could not be computed: a value its normalizer refuses (not a phone number, e-mail...), a bad index specification, or a bad or missing index key."
);
create_exception!(
    _larder,
    MaskError,
    LarderError,
    "A value could not be masked (not a phone number, e-mail or name)."
);

#[pymodule]
fn _larder(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LarderError", py.get_type::<LarderError>())?;
    m.add("KeyEncodingError", py.get_type::<KeyEncodingError>())?;
    m.add("CacheError", py.get_type::<CacheError>())?;
    m.add("EnvelopeError", py.get_type::<EnvelopeError>())?;
    m.add("EncryptionError", py.get_type::<EncryptionError>())?;
    m.add("DecryptionError", py.get_type::<DecryptionError>())?;
    m.add("KeyringError", py.get_type::<KeyringError>())?;
    m.add("MaskError", py.get_type::<MaskError>())?;
    m.add("BlindIndexError", py.get_type::<BlindIndexError>())?;

    m.add_class::<keys::PyKeySpace>()?;
    m.add_class::<keys::Schema>()?;
    m.add_class::<keys::Width>()?;
    m.add_class::<keys::Typed>()?;
    for (name, code) in keys::WIDTHS {
        m.add(*name, keys::width(name, *code))?;
    }
    m.add_function(wrap_pyfunction!(keys::option, m)?)?;
    m.add_function(wrap_pyfunction!(keys::ok, m)?)?;
    m.add_function(wrap_pyfunction!(keys::err, m)?)?;
    m.add_function(wrap_pyfunction!(keys::validate_namespace, m)?)?;
    m.add_function(wrap_pyfunction!(keys::sanitize_namespace, m)?)?;

    m.add_class::<memo::PyCache>()?;
    m.add_class::<memo::Memo>()?;
    m.add_function(wrap_pyfunction!(values::cbor_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(values::cbor_loads, m)?)?;

    m.add_class::<envelope::PyLocalKeyring>()?;
    m.add_class::<envelope::PyAwsKmsKeyring>()?;
    m.add_class::<envelope::PyEnvelope>()?;
    m.add_class::<blind::PyBlindIndexKey>()?;
    m.add_class::<blind::PyBlindIndex>()?;
    m.add_function(wrap_pyfunction!(blind::blind_index, m)?)?;
    m.add_function(wrap_pyfunction!(blind::normalize, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::mask_phone, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::mask_email, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::mask_name, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
