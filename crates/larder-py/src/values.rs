//! Python values ↔ CBOR (`docs/cache-value-format.md`, "CBOR payloads"): what memoized
//! functions store, readable by Rust services that use `ValueCodec::Cbor`.

use std::sync::Arc;

use ciborium::value::{Integer, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CacheError;

/// CBOR tag marking a pickled Python value (opt-in `memoize(pickle=True)`, only with a
/// secret). From the first-come-first-served range; private to larder.
pub(crate) const PICKLE_TAG: u64 = 0x6c70_6b6c; // "lpkl"

const MAX_DEPTH: u32 = 128;

/// A cached value: a CBOR item, shared by reference (a local hit clones an `Arc`).
#[derive(Clone, Debug)]
pub(crate) struct Stored(pub(crate) Arc<Value>);

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Stored(Arc::new(v)))
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn pickle_fns(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PICKLE.get_or_try_init(py, || {
        let m = py.import("pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })
}

/// Converts a function's result into what is stored.
pub(crate) fn to_stored(obj: &Bound<'_, PyAny>, pickle: bool) -> PyResult<Stored> {
    if pickle {
        let (dumps, _) = pickle_fns(obj.py())?;
        let b = dumps.bind(obj.py()).call1((obj,))?;
        let b = b.cast::<PyBytes>()?.as_bytes().to_vec();
        return Ok(Stored(Arc::new(Value::Tag(PICKLE_TAG, Box::new(Value::Bytes(b))))));
    }
    Ok(Stored(Arc::new(to_cbor(obj, 0)?)))
}

/// Converts a stored value back; `None` when it is a pickle and pickles are not allowed.
pub(crate) fn from_stored<'py>(
    py: Python<'py>,
    v: &Stored,
    pickle: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Value::Tag(PICKLE_TAG, inner) = &*v.0 {
        if !pickle {
            return Ok(None);
        }
        let Value::Bytes(b) = &**inner else { return Ok(None) };
        let (_, loads) = pickle_fns(py)?;
        return loads.bind(py).call1((PyBytes::new(py, b),)).map(Some);
    }
    from_cbor(py, &v.0, 0, false).map(Some)
}

fn unsupported(obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "a memoized function returned a {}, which the language-neutral cache codec (CBOR) cannot store: return None, bool, int, float, str, bytes, list, tuple (read back as a list) or dict values, or opt in to pickle with memoize(pickle=True) and a configured secret",
        type_name(obj)
    ))
}

/// Python → CBOR. Tuples become arrays (read back as lists).
pub(crate) fn to_cbor(obj: &Bound<'_, PyAny>, depth: u32) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(CacheError::new_err("a memoized value is nested too deeply (or refers to itself)"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.is_truthy()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Value::Integer(Integer::from(v)));
        }
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(Value::Integer(Integer::from(v)));
        }
        if let Ok(v) = obj.extract::<i128>() {
            if let Ok(i) = Integer::try_from(v) {
                return Ok(Value::Integer(i));
            }
        }
        return Err(CacheError::new_err(
            "a memoized int is outside CBOR's integer range (-2**64 to 2**64-1): return it as a str",
        ));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract::<f64>()?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s
            .to_cow()
            .map_err(|_| CacheError::new_err("a memoized str is not valid Unicode (lone surrogate)"))?;
        return Ok(Value::Text(s.into_owned()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut v = Vec::with_capacity(l.len());
        for it in l.iter() {
            v.push(to_cbor(&it, depth + 1)?);
        }
        return Ok(Value::Array(v));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut v = Vec::with_capacity(t.len());
        for it in t.iter() {
            v.push(to_cbor(&it, depth + 1)?);
        }
        return Ok(Value::Array(v));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut v = Vec::with_capacity(d.len());
        for (k, val) in d.iter() {
            v.push((to_cbor(&k, depth + 1)?, to_cbor(&val, depth + 1)?));
        }
        return Ok(Value::Map(v));
    }
    Err(unsupported(obj))
}

/// CBOR → Python. Map keys that are arrays become tuples (so they stay hashable).
pub(crate) fn from_cbor<'py>(
    py: Python<'py>,
    v: &Value,
    depth: u32,
    as_key: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(CacheError::new_err("a cached value is nested too deeply"));
    }
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Integer(i) => i128::from(*i).into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(from_cbor(py, it, depth + 1, as_key)?);
            }
            if as_key {
                PyTuple::new(py, out)?.into_any()
            } else {
                PyList::new(py, out)?.into_any()
            }
        }
        Value::Map(entries) => {
            let d = PyDict::new(py);
            for (k, val) in entries {
                d.set_item(from_cbor(py, k, depth + 1, true)?, from_cbor(py, val, depth + 1, false)?)?;
            }
            d.into_any()
        }
        Value::Tag(_, inner) => from_cbor(py, inner, depth + 1, as_key)?,
        _ => return Err(CacheError::new_err("a cached value holds a CBOR item Python cannot represent")),
    })
}

/// `larder.cbor_dumps(value)`: the CBOR bytes a memoized value is stored as.
#[pyfunction]
pub(crate) fn cbor_dumps<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let v = to_cbor(value, 0)?;
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).map_err(|e| CacheError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &out))
}

/// `larder.cbor_loads(data)`: the inverse of `cbor_dumps` (a `CacheError` for bad input).
#[pyfunction]
pub(crate) fn cbor_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut rest = data;
    let v: Value =
        ciborium::from_reader(&mut rest).map_err(|e| CacheError::new_err(format!("bad CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(CacheError::new_err("bad CBOR: trailing bytes"));
    }
    from_cbor(py, &v, 0, false)
}
