//! `larder.blind_index`, `larder.BlindIndexKey`, `larder.BlindIndex`, `larder.normalize`:
//! blind indexes for exact-match search over an encrypted column, computed by
//! `larder_envelope::blind` (the same normalization, key derivation and truncation as Rust and
//! `larder index`; docs/blind-index.md). Nothing of the format is reimplemented here.

use std::path::PathBuf;
use std::sync::Arc;

use larder_envelope::blind::{BlindIndexer, Field, IndexSpec, Normalizer, Part};
use larder_envelope::{EncryptionContext, LocalKeyring};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::envelope::PyLocalKeyring;
use crate::{BlindIndexError, KeyringError};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn bad(e: impl ToString) -> PyErr {
    BlindIndexError::new_err(e.to_string())
}

/// `larder.BlindIndexKey(key, id="index")`: a 32-byte index key (never an encryption key),
/// or `BlindIndexKey.from_keyring(keyring)` for the `index` record of a local keyring file.
/// Holds the key zeroized on drop; its repr shows only the id.
#[pyclass(module = "larder._larder", frozen, name = "BlindIndexKey")]
pub(crate) struct PyBlindIndexKey {
    indexer: Arc<BlindIndexer>,
}

#[pymethods]
impl PyBlindIndexKey {
    #[new]
    #[pyo3(signature = (key, id="index"))]
    fn new(key: &Bound<'_, PyAny>, id: &str) -> PyResult<Self> {
        let bytes = key.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "key must be bytes (32 bytes of a secret index key), got {}; or use BlindIndexKey.from_keyring(...)",
                type_name(key)
            ))
        })?;
        let arr: [u8; 32] = bytes.as_bytes().try_into().map_err(|_| {
            BlindIndexError::new_err(format!("an index key is 32 bytes, got {}", bytes.as_bytes().len()))
        })?;
        if arr == [0u8; 32] {
            return Err(BlindIndexError::new_err("an all-zero index key is refused"));
        }
        Ok(PyBlindIndexKey { indexer: Arc::new(BlindIndexer::from_key_bytes(id, arr)) })
    }

    /// The `index` record of a local keyring file (`larder keys add-index`): a `LocalKeyring`
    /// or a path. `KeyringError` for a missing or unsafe file, `BlindIndexError` if the file
    /// has no index key.
    #[staticmethod]
    fn from_keyring(py: Python<'_>, keyring: &Bound<'_, PyAny>) -> PyResult<Self> {
        let path = keyring_path(keyring)?;
        Ok(PyBlindIndexKey { indexer: load_indexer(py, path)? })
    }

    #[getter]
    fn id(&self) -> &str {
        self.indexer.id()
    }

    fn __repr__(&self) -> String {
        format!("larder.BlindIndexKey(id={:?})", self.indexer.id())
    }
}

fn keyring_path(keyring: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(k) = keyring.cast::<PyLocalKeyring>() {
        return Ok(k.get().path.clone());
    }
    keyring.extract::<PathBuf>().map_err(|_| {
        PyTypeError::new_err(format!(
            "keyring must be a larder.LocalKeyring or a path, got {}",
            type_name(keyring)
        ))
    })
}

fn load_indexer(py: Python<'_>, path: PathBuf) -> PyResult<Arc<BlindIndexer>> {
    let p = path.clone();
    let ring = py.detach(move || LocalKeyring::load(&p)).map_err(|e| KeyringError::new_err(e.to_string()))?;
    ring.blind_indexer().map(Arc::new).ok_or_else(|| {
        BlindIndexError::new_err(format!(
            "the keyring {} has no index key: add one with `larder keys add-index` (it is kept apart from the encryption keys)",
            path.display()
        ))
    })
}

/// A blind index value: `bits` bits in `ceil(bits / 8)` bytes (unused low bits zero).
/// `bytes(ix)`, `ix.hex` (as `larder index` prints it), `ix.int` (an int for `bits <= 63`,
/// for a bigint column; else `None`). Equal and hashable by value.
#[pyclass(module = "larder._larder", frozen, eq, hash, name = "BlindIndex")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyBlindIndex {
    bytes: Vec<u8>,
    bits: u16,
    int: Option<i64>,
}

#[pymethods]
impl PyBlindIndex {
    #[getter]
    fn bits(&self) -> u16 {
        self.bits
    }

    #[getter]
    fn hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[getter]
    fn int(&self) -> Option<i64> {
        self.int
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes)
    }

    fn __str__(&self) -> String {
        self.hex()
    }

    fn __repr__(&self) -> String {
        format!("larder.BlindIndex({:?}, bits={})", self.hex(), self.bits)
    }
}

fn normalizer(kind: &str, field: &str) -> PyResult<Normalizer> {
    Normalizer::from_name(kind)
        .ok_or_else(|| bad(format!("{field} {kind:?}: expected \"phone\", \"email\", \"name\" or \"text\"")))
}

fn part(p: &str, field: &str) -> PyResult<Part> {
    Part::parse(p)
        .ok_or_else(|| bad(format!("{field} {p:?}: expected \"full\", \"lastN\", \"firstN\" or \"domain\"")))
}

fn need_str(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be str, got {}", type_name(obj))))?;
    Ok(s.to_cow()?.into_owned())
}

fn context(ctx: Option<&Bound<'_, PyAny>>) -> PyResult<EncryptionContext> {
    let mut out = EncryptionContext::new();
    let Some(ctx) = ctx.filter(|c| !c.is_none()) else { return Ok(out) };
    let d = ctx.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!("context must be a dict of str to str, got {}", type_name(ctx)))
    })?;
    for (k, v) in d.iter() {
        out.insert(need_str(&k, "context keys")?, need_str(&v, "context values")?);
    }
    Ok(out)
}

/// The values: one str, or a list/tuple of str (one per field of a compound index).
fn values(value: &Bound<'_, PyAny>) -> PyResult<Vec<zeroize::Zeroizing<String>>> {
    if value.cast::<PyString>().is_ok() {
        return Ok(vec![zeroize::Zeroizing::new(need_str(value, "value")?)]);
    }
    if value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        return value
            .try_iter()?
            .map(|v| Ok(zeroize::Zeroizing::new(need_str(&v?, "each value of a compound index")?)))
            .collect();
    }
    Err(PyTypeError::new_err(format!(
        "value must be str (or a list/tuple of str for a compound index), got {}",
        type_name(value)
    )))
}

fn spec(
    kind: Option<&str>,
    part_name: &str,
    fields: Option<&Bound<'_, PyAny>>,
    name: Option<&str>,
    bits: i64,
) -> PyResult<IndexSpec> {
    let bits = u16::try_from(bits).map_err(|_| bad(format!("bits must be 1 to 256, got {bits}")))?;
    match (kind, fields.filter(|f| !f.is_none())) {
        (Some(k), None) => {
            let n = normalizer(k, "kind")?;
            let name = name.unwrap_or(n.name());
            let p = part(part_name, "part")?;
            IndexSpec::new(name, n, bits).and_then(|s| s.part(p)).map_err(bad)
        }
        (None, Some(fields)) => {
            let name = name.ok_or_else(|| bad("a compound index (fields=...) needs a name="))?;
            let mut out = Vec::new();
            for (i, f) in fields.try_iter()?.enumerate() {
                let f = f?;
                let (k, p): (String, String) = f.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "fields[{i}] must be a (kind, part) tuple of str such as (\"phone\", \"last4\"), got {}",
                        type_name(&f)
                    ))
                })?;
                out.push(Field {
                    normalizer: normalizer(&k, &format!("fields[{i}] kind"))?,
                    part: part(&p, &format!("fields[{i}] part"))?,
                });
            }
            IndexSpec::compound(name, out, bits).map_err(bad)
        }
        (Some(_), Some(_)) => Err(bad("give kind= (one field) or fields= (a compound index), not both")),
        (None, None) => {
            Err(bad("give kind= (\"phone\", \"email\", \"name\", \"text\") or fields=[(kind, part), ...]"))
        }
    }
}

fn indexer(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Arc<BlindIndexer>> {
    if let Ok(k) = key.cast::<PyBlindIndexKey>() {
        return Ok(k.get().indexer.clone());
    }
    if let Ok(k) = key.cast::<PyLocalKeyring>() {
        let k = k.get();
        if let Some(ix) = k.index.get() {
            return Ok(ix.clone());
        }
        let ix = load_indexer(py, k.path.clone())?;
        // The index key of a file never changes once added (rotation keeps it): keep it.
        return Ok(k.index.get_or_init(|| ix).clone());
    }
    Err(PyTypeError::new_err(format!(
        "key must be a larder.BlindIndexKey or larder.LocalKeyring, got {}",
        type_name(key)
    )))
}

/// `larder.blind_index(value, kind=None, *, key, part="full", fields=None, name=None, bits=16,
/// context=None)`.
#[pyfunction]
#[pyo3(signature = (value, kind=None, *, key, part="full", fields=None, name=None, bits=larder_envelope::blind::DEFAULT_BITS as i64, context=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn blind_index(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    kind: Option<&str>,
    key: &Bound<'_, PyAny>,
    part: &str,
    fields: Option<&Bound<'_, PyAny>>,
    name: Option<&str>,
    bits: i64,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyBlindIndex> {
    let spec = spec(kind, part, fields, name, bits)?;
    let ctx = self::context(context)?;
    let values = values(value)?;
    let indexer = indexer(py, key)?;
    let refs: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
    let ix = indexer.compound_index(&spec, &refs, &ctx).map_err(bad)?;
    Ok(PyBlindIndex { bytes: ix.as_bytes().to_vec(), bits: ix.bits(), int: ix.to_i64() })
}

/// `larder.normalize(value, kind, part="full")`: the canonical form a blind index is computed
/// from (to remove false positives by comparing decrypted values).
#[pyfunction]
#[pyo3(signature = (value, kind, part="full"))]
pub(crate) fn normalize(value: &Bound<'_, PyAny>, kind: &str, part: &str) -> PyResult<String> {
    let value = zeroize::Zeroizing::new(need_str(value, "value")?);
    let field = Field { normalizer: normalizer(kind, "kind")?, part: self::part(part, "part")? };
    // The same checks as an index (`domain` only for email).
    IndexSpec::compound(field.normalizer.name(), vec![field], 8).map_err(bad)?;
    Ok(field.canonical(&value).map_err(bad)?.to_string())
}
