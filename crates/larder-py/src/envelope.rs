//! `larder.Envelope`, its keyrings and `larder.mask`.
//!
//! Each process owns one Tokio runtime and one [`Envelope`] per Python `Envelope` object,
//! built on first use and rebuilt when the process id changes (a forked child never uses its
//! parent's data keys, caches, connections or runtime threads). Every operation runs with
//! the GIL released.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use larder_envelope::{
    AwsKmsKeyring, DataKeyLimits, EncryptionContext, Envelope, EnvelopeError, LocalKeyring,
};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::{DecryptionError, EncryptionError, KeyringError, MaskError};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn keyringish(e: &EnvelopeError) -> bool {
    matches!(
        e,
        EnvelopeError::KmsUnavailable(_)
            | EnvelopeError::Throttled(_)
            | EnvelopeError::AccessDenied(_)
            | EnvelopeError::KeyNotFound(_)
            | EnvelopeError::Keyring(_)
            | EnvelopeError::KeyringFile(_)
    )
}

fn enc_error(e: EnvelopeError) -> PyErr {
    if keyringish(&e) {
        KeyringError::new_err(e.to_string())
    } else {
        EncryptionError::new_err(e.to_string())
    }
}

fn dec_error(e: EnvelopeError) -> PyErr {
    if keyringish(&e) {
        KeyringError::new_err(e.to_string())
    } else {
        DecryptionError::new_err(e.to_string())
    }
}

/// `larder.LocalKeyring(path)`: the keyring file `larder keys init` writes (mode 0600).
#[pyclass(module = "larder._larder", frozen, name = "LocalKeyring")]
pub(crate) struct PyLocalKeyring {
    pub(crate) path: PathBuf,
    /// The file's blind-index key, once `larder.blind_index` has loaded it.
    pub(crate) index: std::sync::OnceLock<Arc<larder_envelope::blind::BlindIndexer>>,
}

#[pymethods]
impl PyLocalKeyring {
    /// Loads (and checks) the keyring file at `path`; `KeyringError` if it is missing,
    /// malformed or readable by others.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let p = path.clone();
        py.detach(move || LocalKeyring::load(&p)).map_err(|e| KeyringError::new_err(e.to_string()))?;
        Ok(PyLocalKeyring { path, index: std::sync::OnceLock::new() })
    }

    /// Creates a new keyring file with one fresh key (refuses to overwrite one).
    #[staticmethod]
    fn init(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let p = path.clone();
        py.detach(move || LocalKeyring::init(&p)).map_err(|e| KeyringError::new_err(e.to_string()))?;
        Ok(PyLocalKeyring { path, index: std::sync::OnceLock::new() })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn __repr__(&self) -> String {
        format!("larder.LocalKeyring({:?})", self.path)
    }
}

/// `larder.AwsKmsKeyring(key_id, endpoint_url=None, region=None)`: AWS KMS with the standard
/// credential chain (environment, profile, instance role).
#[pyclass(module = "larder._larder", frozen, name = "AwsKmsKeyring")]
pub(crate) struct PyAwsKmsKeyring {
    key_id: String,
    endpoint_url: Option<String>,
    region: Option<String>,
    additional_key_ids: Vec<String>,
}

#[pymethods]
impl PyAwsKmsKeyring {
    #[new]
    #[pyo3(signature = (key_id, endpoint_url=None, region=None, additional_key_ids=Vec::new()))]
    fn new(
        key_id: String,
        endpoint_url: Option<String>,
        region: Option<String>,
        additional_key_ids: Vec<String>,
    ) -> PyResult<Self> {
        if key_id.is_empty() {
            return Err(PyValueError::new_err("key_id must not be empty (a key id, ARN or alias/NAME)"));
        }
        Ok(PyAwsKmsKeyring { key_id, endpoint_url, region, additional_key_ids })
    }

    #[getter]
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn __repr__(&self) -> String {
        format!("larder.AwsKmsKeyring({:?})", self.key_id)
    }
}

#[derive(Clone)]
enum KeyringSpec {
    Local(PathBuf),
    Aws { key_id: String, endpoint: Option<String>, region: Option<String>, more: Vec<String> },
}

struct Live {
    pid: u32,
    runtime: Arc<tokio::runtime::Runtime>,
    envelope: Envelope,
}

/// `larder.Envelope(keyring, max_age=300, max_messages=2**20, max_bytes=2**32)`.
#[pyclass(module = "larder._larder", frozen, name = "Envelope")]
pub(crate) struct PyEnvelope {
    keyring: KeyringSpec,
    limits: DataKeyLimits,
    live: Mutex<Option<Live>>,
    building: Mutex<()>,
}

impl PyEnvelope {
    fn open(&self) -> Result<Live, EnvelopeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("larder-py-envelope")
            .enable_all()
            .build()
            .map_err(|e| EnvelopeError::Keyring(format!("could not start a runtime: {e}")))?;
        let envelope = match &self.keyring {
            KeyringSpec::Local(p) => {
                Envelope::builder(LocalKeyring::load(p)?).data_key_limits(self.limits).build()
            }
            KeyringSpec::Aws { key_id, endpoint, region, more } => {
                let kr = runtime.block_on(async {
                    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                    if let Some(u) = endpoint {
                        loader = loader.endpoint_url(u);
                    }
                    if let Some(r) = region {
                        loader = loader.region(aws_config::Region::new(r.clone()));
                    }
                    let conf = loader.load().await;
                    if conf.region().is_none() {
                        return Err(EnvelopeError::Keyring(
                            "no AWS region: pass region=... or set AWS_REGION (for example us-east-1)".into(),
                        ));
                    }
                    let mut b = AwsKmsKeyring::builder(aws_sdk_kms::Client::new(&conf), key_id.clone());
                    for k in more {
                        b = b.additional_key_id(k.clone());
                    }
                    Ok(b.build())
                })?;
                Envelope::builder(kr).data_key_limits(self.limits).build()
            }
        };
        Ok(Live { pid: std::process::id(), runtime: Arc::new(runtime), envelope })
    }

    /// This process's envelope and runtime (built on first use, rebuilt after a fork). One
    /// thread builds; concurrent first callers wait for it (without the GIL), so a cold burst
    /// of threads shares one envelope and its one data key.
    fn live(&self, py: Python<'_>) -> PyResult<(Arc<tokio::runtime::Runtime>, Envelope)> {
        let pid = std::process::id();
        if let Some(l) = self.live.lock().as_ref() {
            if l.pid == pid {
                return Ok((l.runtime.clone(), l.envelope.clone()));
            }
        }
        py.detach(|| -> Result<(Arc<tokio::runtime::Runtime>, Envelope), String> {
            let _building = self.building.lock();
            if let Some(l) = self.live.lock().as_ref() {
                if l.pid == pid {
                    return Ok((l.runtime.clone(), l.envelope.clone()));
                }
            }
            let fresh = self.open().map_err(|e| e.to_string())?;
            let out = (fresh.runtime.clone(), fresh.envelope.clone());
            if let Some(old) = self.live.lock().replace(fresh) {
                // A parent's runtime: its threads do not exist in this process, so it must not
                // be shut down (that would wait for them). Leak it.
                std::mem::forget(old);
            }
            Ok(out)
        })
        .map_err(KeyringError::new_err)
    }
}

fn context(ctx: Option<&Bound<'_, PyAny>>) -> PyResult<EncryptionContext> {
    let mut out = EncryptionContext::new();
    let Some(ctx) = ctx else { return Ok(out) };
    if ctx.is_none() {
        return Ok(out);
    }
    let d = ctx.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "context must be a dict of str to str (e.g. {{\"table\": \"t\", \"column\": \"phone\"}}), got {}",
            type_name(ctx)
        ))
    })?;
    for (k, v) in d.iter() {
        let (Ok(k), Ok(v)) = (k.cast::<PyString>(), v.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "context keys and values must be str, got {}: {}",
                type_name(&k),
                type_name(&v)
            )));
        };
        out.insert(k.to_cow()?.into_owned(), v.to_cow()?.into_owned());
    }
    Ok(out)
}

fn need_bytes<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a [u8]> {
    obj.cast::<PyBytes>().map(|b| b.as_bytes()).map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be bytes, got {} (use encrypt_text/decrypt_text for str)",
            type_name(obj)
        ))
    })
}

fn need_str(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be str, got {} (use encrypt/decrypt for bytes)",
            type_name(obj)
        ))
    })?;
    Ok(s.to_cow()?.into_owned())
}

#[pymethods]
impl PyEnvelope {
    /// `keyring`: a `LocalKeyring` or `AwsKmsKeyring`. A cached data key is retired after
    /// `max_age` seconds, `max_messages` ciphertexts or `max_bytes` plaintext bytes.
    #[new]
    #[pyo3(signature = (keyring, max_age=300.0, max_messages=1u64 << 20, max_bytes=1u64 << 32))]
    fn new(keyring: &Bound<'_, PyAny>, max_age: f64, max_messages: u64, max_bytes: u64) -> PyResult<Self> {
        let spec = if let Ok(k) = keyring.cast::<PyLocalKeyring>() {
            KeyringSpec::Local(k.get().path.clone())
        } else if let Ok(k) = keyring.cast::<PyAwsKmsKeyring>() {
            let k = k.get();
            KeyringSpec::Aws {
                key_id: k.key_id.clone(),
                endpoint: k.endpoint_url.clone(),
                region: k.region.clone(),
                more: k.additional_key_ids.clone(),
            }
        } else {
            return Err(PyTypeError::new_err(format!(
                "keyring must be a larder.LocalKeyring or larder.AwsKmsKeyring, got {}",
                type_name(keyring)
            )));
        };
        if !(max_age.is_finite() && max_age > 0.0) {
            return Err(PyValueError::new_err("max_age must be a positive number of seconds"));
        }
        if max_messages == 0 || max_bytes == 0 {
            return Err(PyValueError::new_err("max_messages and max_bytes must be >= 1"));
        }
        let limits =
            DataKeyLimits { max_age: Duration::from_secs_f64(max_age.min(3.15e7)), max_messages, max_bytes };
        Ok(PyEnvelope { keyring: spec, limits, live: Mutex::new(None), building: Mutex::new(()) })
    }

    /// Encrypts bytes under `context` (a dict of str); returns the binary ciphertext.
    #[pyo3(signature = (plaintext, context=None))]
    fn encrypt<'py>(
        &self,
        py: Python<'py>,
        plaintext: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let pt = need_bytes(plaintext, "plaintext")?.to_vec();
        let ctx = self::context(context)?;
        let (rt, env) = self.live(py)?;
        let ct = py.detach(move || rt.block_on(env.encrypt(&pt, &ctx))).map_err(enc_error)?;
        Ok(PyBytes::new(py, &ct))
    }

    /// Decrypts a binary ciphertext under the same `context`; `DecryptionError` if it was
    /// altered, is not a larder ciphertext, or the context differs.
    #[pyo3(signature = (ciphertext, context=None))]
    fn decrypt<'py>(
        &self,
        py: Python<'py>,
        ciphertext: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ct = need_bytes(ciphertext, "ciphertext")?.to_vec();
        let ctx = self::context(context)?;
        let (rt, env) = self.live(py)?;
        let pt = py.detach(move || rt.block_on(env.decrypt(&ct, &ctx))).map_err(dec_error)?;
        Ok(PyBytes::new(py, &pt))
    }

    /// Encrypts text; returns the `lv1.` text form (base64url), for text columns.
    #[pyo3(signature = (plaintext, context=None))]
    fn encrypt_text(
        &self,
        py: Python<'_>,
        plaintext: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let pt = zeroize::Zeroizing::new(need_str(plaintext, "plaintext")?);
        let ctx = self::context(context)?;
        let (rt, env) = self.live(py)?;
        py.detach(move || rt.block_on(env.encrypt_text(&pt, &ctx))).map_err(enc_error)
    }

    /// Decrypts an `lv1.` text ciphertext under the same `context`.
    #[pyo3(signature = (ciphertext, context=None))]
    fn decrypt_text(
        &self,
        py: Python<'_>,
        ciphertext: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let ct = need_str(ciphertext, "ciphertext")?;
        let ctx = self::context(context)?;
        let (rt, env) = self.live(py)?;
        py.detach(move || rt.block_on(env.decrypt_text(&ct, &ctx))).map_err(dec_error)
    }

    /// Counters of this process's envelope: keyring calls and data-key cache hits/misses.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (_, env) = self.live(py)?;
        let s = env.stats();
        let d = PyDict::new(py);
        d.set_item("generate_calls", s.generate_calls)?;
        d.set_item("decrypt_calls", s.decrypt_calls)?;
        d.set_item("keyring_errors", s.keyring_errors)?;
        d.set_item("encrypt_cache_hits", s.encrypt_cache_hits)?;
        d.set_item("encrypt_cache_misses", s.encrypt_cache_misses)?;
        d.set_item("decrypt_cache_hits", s.decrypt_cache_hits)?;
        d.set_item("decrypt_cache_misses", s.decrypt_cache_misses)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        match &self.keyring {
            KeyringSpec::Local(p) => format!("larder.Envelope(larder.LocalKeyring({p:?}))"),
            KeyringSpec::Aws { key_id, .. } => format!("larder.Envelope(larder.AwsKmsKeyring({key_id:?}))"),
        }
    }
}

/// `larder.mask.phone`: `"010-1234-5678"` → `"010-****-5678"`.
#[pyfunction]
pub(crate) fn mask_phone(value: &str) -> PyResult<String> {
    larder_envelope::mask::phone(value).map_err(|e| MaskError::new_err(e.to_string()))
}

/// `larder.mask.email`.
#[pyfunction]
pub(crate) fn mask_email(value: &str) -> PyResult<String> {
    larder_envelope::mask::email(value).map_err(|e| MaskError::new_err(e.to_string()))
}

/// `larder.mask.name`.
#[pyfunction]
pub(crate) fn mask_name(value: &str) -> PyResult<String> {
    larder_envelope::mask::name(value).map_err(|e| MaskError::new_err(e.to_string()))
}
