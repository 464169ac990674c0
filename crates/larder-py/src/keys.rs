//! Python values → larder-key's canonical encoding (`docs/key-format.md`).
//!
//! The walk is written against larder-key's public [`Encoder`]: every byte goes through its
//! tag/length/raw writers and set/map parts are sorted exactly as `Encoder::set`/`map` do, so
//! the Rust and Python encodings cannot drift apart silently (the vector tests check both).
//! Python errors (wrong types, NaN, out-of-range integers) are raised from the walk itself;
//! the only fault left to the encoder is its size limit.
// Length: the walk from Python values to the key format's type grammar (`Walk`, ≈ 570 lines)
// mirrors larder-key's encoder case by case; it and the schema it walks are kept in one file so
// a new type tag is added in one place. The binding has no Rust unit tests (tests/python).

use std::collections::HashMap;

use larder_key::schema::{self, Header, VariantShape};
use larder_key::{tag, Encoder, KeySecret, KeySpace};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
    PyType,
};

use crate::KeyEncodingError;

/// Nesting deeper than this is refused (it also stops self-referencing lists).
const MAX_DEPTH: u32 = 128;

/// A typed wrapper kind for [`Typed`] beyond the integer and float tags.
const KIND_OPTION: u8 = tag::SOME;
const KIND_OK: u8 = tag::OK;
const KIND_ERR: u8 = tag::ERR;

fn enc_err(msg: impl Into<String>) -> PyErr {
    KeyEncodingError::new_err(msg.into())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Standard-library classes the walk recognizes, imported once per interpreter.
struct Classes {
    datetime: Py<PyType>,
    date: Py<PyType>,
    time: Py<PyType>,
    timedelta: Py<PyType>,
    decimal: Py<PyType>,
    uuid: Py<PyType>,
    enum_: Py<PyType>,
    ipv4: Py<PyType>,
    ipv6: Py<PyType>,
    epoch_aware: Py<PyAny>,
    epoch_naive: Py<PyAny>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let dt = py.import("datetime")?;
        let cls = |m: &Bound<'_, PyModule>, n: &str| -> PyResult<Py<PyType>> {
            Ok(m.getattr(n)?.cast_into::<PyType>()?.unbind())
        };
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let datetime = dt.getattr("datetime")?;
        let epoch_aware = datetime.call1((1970, 1, 1, 0, 0, 0, 0, utc))?.unbind();
        let epoch_naive = datetime.call1((1970, 1, 1))?.unbind();
        let ip = py.import("ipaddress")?;
        Ok(Classes {
            datetime: cls(&dt, "datetime")?,
            date: cls(&dt, "date")?,
            time: cls(&dt, "time")?,
            timedelta: cls(&dt, "timedelta")?,
            decimal: cls(&py.import("decimal")?, "Decimal")?,
            uuid: cls(&py.import("uuid")?, "UUID")?,
            enum_: cls(&py.import("enum")?, "Enum")?,
            ipv4: cls(&ip, "IPv4Address")?,
            ipv6: cls(&ip, "IPv6Address")?,
            epoch_aware,
            epoch_naive,
        })
    })
}

/// How a declared field is encoded (from `typing` annotations, see `python/larder/_stable.py`).
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    /// By the value's Python type.
    Dyn,
    /// A fixed-width integer with this tag.
    Int(u8),
    F32,
    F64,
    Char,
    Opt(Box<Spec>),
    Seq(Box<Spec>),
    Set(Box<Spec>),
    Map(Box<Spec>, Box<Spec>),
    Tuple(Vec<Spec>),
}

fn parse_spec(d: &Bound<'_, PyAny>) -> PyResult<Spec> {
    let t = d.cast::<PyTuple>().map_err(|_| PyTypeError::new_err("field descriptor must be a tuple"))?;
    let kind: String = t.get_item(0)?.extract()?;
    Ok(match kind.as_str() {
        "dyn" => Spec::Dyn,
        "int" => {
            let tg: u8 = t.get_item(1)?.extract()?;
            if !(tag::U8..=tag::I128).contains(&tg) {
                return Err(PyValueError::new_err(format!("unknown integer width tag {tg:#04x}")));
            }
            Spec::Int(tg)
        }
        "f32" => Spec::F32,
        "f64" => Spec::F64,
        "char" => Spec::Char,
        "opt" => Spec::Opt(Box::new(parse_spec(&t.get_item(1)?)?)),
        "seq" => Spec::Seq(Box::new(parse_spec(&t.get_item(1)?)?)),
        "set" => Spec::Set(Box::new(parse_spec(&t.get_item(1)?)?)),
        "map" => Spec::Map(Box::new(parse_spec(&t.get_item(1)?)?), Box::new(parse_spec(&t.get_item(2)?)?)),
        "tuple" => {
            let items = t.get_item(1)?;
            let mut v = Vec::new();
            for it in items.try_iter()? {
                v.push(parse_spec(&it?)?);
            }
            Spec::Tuple(v)
        }
        other => return Err(PyValueError::new_err(format!("unknown field descriptor {other:?}"))),
    })
}

/// A width marker and constructor: `larder.u32` in `Annotated[int, larder.u32]`, or
/// `larder.u32(7)` to key one value as a Rust `u32`.
#[pyclass(module = "larder._larder", frozen, name = "Width")]
pub(crate) struct Width {
    #[pyo3(get)]
    name: &'static str,
    code: u8,
}

#[pymethods]
impl Width {
    /// Wraps `value` so it is keyed as this Rust type.
    fn __call__(&self, py: Python<'_>, value: Py<PyAny>) -> Typed {
        let _ = py;
        Typed { kind: self.code, value }
    }

    /// The descriptor `@larder.stable` uses for a field annotated with this width.
    fn descriptor<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self.code {
            tag::F32 => PyTuple::new(py, ["f32"]),
            tag::F64 => PyTuple::new(py, ["f64"]),
            tag::CHAR => PyTuple::new(py, ["char"]),
            c => Ok(PyTuple::new(py, [("int", c)])?.get_item(0)?.cast_into::<PyTuple>()?),
        }
    }

    fn __repr__(&self) -> String {
        format!("larder.{}", self.name)
    }
}

/// Every width marker: name, tag.
pub(crate) const WIDTHS: &[(&str, u8)] = &[
    ("u8", tag::U8),
    ("u16", tag::U16),
    ("u32", tag::U32),
    ("u64", tag::U64),
    ("u128", tag::U128),
    ("i8", tag::I8),
    ("i16", tag::I16),
    ("i32", tag::I32),
    ("i64", tag::I64),
    ("i128", tag::I128),
    ("f32", tag::F32),
    ("f64", tag::F64),
    ("char", tag::CHAR),
];

pub(crate) fn width(name: &'static str, code: u8) -> Width {
    Width { name, code }
}

/// A value with an explicit Rust type: made by `larder.u32(7)`, `larder.option(x)`,
/// `larder.ok(x)`, `larder.err(x)`.
#[pyclass(module = "larder._larder", frozen, name = "Typed")]
pub(crate) struct Typed {
    kind: u8,
    #[pyo3(get)]
    value: Py<PyAny>,
}

#[pymethods]
impl Typed {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.value.bind(py).repr()?.to_string();
        let name = match self.kind {
            KIND_OPTION => "option",
            KIND_OK => "ok",
            KIND_ERR => "err",
            k => WIDTHS.iter().find(|(_, c)| *c == k).map_or("?", |(n, _)| n),
        };
        Ok(format!("larder.{name}({v})"))
    }
}

/// `larder.option(v)`: `None` keys as Rust `None` (`0x20`), anything else as `Some(v)`.
#[pyfunction]
pub(crate) fn option(value: Py<PyAny>) -> Typed {
    Typed { kind: KIND_OPTION, value }
}

/// `larder.ok(v)`: keys as Rust `Ok(v)`.
#[pyfunction]
pub(crate) fn ok(value: Py<PyAny>) -> Typed {
    Typed { kind: KIND_OK, value }
}

/// `larder.err(v)`: keys as Rust `Err(v)`.
#[pyfunction]
pub(crate) fn err(value: Py<PyAny>) -> Typed {
    Typed { kind: KIND_ERR, value }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Struct,
    TupleStruct,
    UnitStruct,
    Variant,
    Enum,
}

/// The schema of a class decorated with `@larder.stable`: its header and its fields.
#[pyclass(module = "larder._larder", frozen, name = "Schema")]
pub(crate) struct Schema {
    kind: Kind,
    header: Header,
    fields: Vec<(Py<PyString>, Spec)>,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    version: u32,
    members: Mutex<HashMap<String, Header>>,
}

#[pymethods]
impl Schema {
    /// `kind`: "struct", "tuple_struct", "unit_struct", "variant_named", "variant_tuple",
    /// "variant_unit" or "enum"; `fields`: (name, descriptor) pairs in declaration order.
    #[new]
    #[pyo3(signature = (kind, name, version, fields, variant=None))]
    fn new(
        py: Python<'_>,
        kind: &str,
        name: &str,
        version: u32,
        fields: Vec<(String, Bound<'_, PyAny>)>,
        variant: Option<&str>,
    ) -> PyResult<Self> {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let need_variant =
            || variant.ok_or_else(|| PyValueError::new_err("a variant schema needs `variant`"));
        let (k, header) = match kind {
            "struct" => (Kind::Struct, schema::struct_header(name, version, &names)),
            "tuple_struct" => (Kind::TupleStruct, schema::tuple_struct_header(name, version, names.len())),
            "unit_struct" => (Kind::UnitStruct, schema::unit_struct_header(name, version)),
            "variant_named" => (
                Kind::Variant,
                schema::variant_header(name, version, need_variant()?, VariantShape::Named(&names)),
            ),
            "variant_tuple" => (
                Kind::Variant,
                schema::variant_header(name, version, need_variant()?, VariantShape::Tuple(names.len())),
            ),
            "variant_unit" => {
                (Kind::Variant, schema::variant_header(name, version, need_variant()?, VariantShape::Unit))
            }
            "enum" => (Kind::Enum, [0u8; 17]),
            other => return Err(PyValueError::new_err(format!("unknown schema kind {other:?}"))),
        };
        if k == Kind::UnitStruct && !fields.is_empty() {
            return Err(PyValueError::new_err("a unit struct has no fields"));
        }
        let mut parsed = Vec::with_capacity(fields.len());
        for (n, d) in &fields {
            parsed.push((PyString::intern(py, n).unbind(), parse_spec(d)?));
        }
        Ok(Schema {
            kind: k,
            header,
            fields: parsed,
            name: name.to_owned(),
            version,
            members: Mutex::new(HashMap::new()),
        })
    }

    /// The 17-byte header (kind tag + schema id) of a struct or variant schema.
    fn header<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.header)
    }
}

impl Schema {
    fn member_header(&self, member: &str) -> Header {
        let mut m = self.members.lock();
        *m.entry(member.to_owned())
            .or_insert_with(|| schema::variant_header(&self.name, self.version, member, VariantShape::Unit))
    }
}

/// Walks Python values into an [`Encoder`] with a byte limit.
pub(crate) struct Walk {
    pub(crate) enc: Encoder,
    limit: usize,
}

impl Walk {
    pub(crate) fn new(limit: usize) -> Self {
        Walk { enc: Encoder::with_limit(limit), limit }
    }

    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.enc.as_bytes().len())
    }

    /// Finishes: the encoding, or `KeyEncodingError` when it went over the limit.
    pub(crate) fn finish(&self) -> PyResult<&[u8]> {
        if self.enc.is_faulted() {
            return Err(enc_err(format!(
                "value too large for a cache key: its encoding exceeds {} bytes (raise max_encoded_len, or key on fewer fields)",
                self.limit
            )));
        }
        Ok(self.enc.as_bytes())
    }

    fn len(&mut self, n: usize) -> PyResult<()> {
        if u32::try_from(n).is_err() {
            return Err(enc_err("a string or collection in the key is longer than 2^32-1"));
        }
        self.enc.len(n);
        Ok(())
    }

    /// Encodes `parts` (each produced by `f` into its own encoder), sorted bytewise.
    fn sorted<'py, 's, I>(&mut self, t: u8, n: usize, items: I, depth: u32) -> PyResult<()>
    where
        I: Iterator<Item = PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>, SpecPair<'s>)>>,
    {
        self.enc.tag(t);
        self.len(n)?;
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(n.min(4096));
        let mut left = self.remaining();
        for item in items {
            let (a, b, specs) = item?;
            let mut sub = Walk::new(left);
            sub.spec(&a, specs.0, depth + 1)?;
            if let (Some(b), Some(sb)) = (b, specs.1) {
                sub.spec(&b, sb, depth + 1)?;
            }
            if sub.enc.is_faulted() {
                // Over the limit: make the parent fault too, by writing past it.
                self.enc.raw(&vec![0u8; self.remaining() + 1]);
                return Ok(());
            }
            let bytes = sub.enc.as_bytes().to_vec();
            left -= bytes.len();
            parts.push(bytes);
        }
        parts.sort_unstable();
        for p in &parts {
            self.enc.raw(p);
        }
        Ok(())
    }

    fn int_dyn(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(v) = obj.extract::<i64>() {
            if v >= 0 {
                self.enc.tag(tag::U64);
                self.enc.raw(&(v as u64).to_le_bytes());
            } else {
                self.enc.tag(tag::I64);
                self.enc.raw(&v.to_le_bytes());
            }
            return Ok(());
        }
        if let Ok(v) = obj.extract::<u64>() {
            self.enc.tag(tag::U64);
            self.enc.raw(&v.to_le_bytes());
        } else if let Ok(v) = obj.extract::<u128>() {
            self.enc.tag(tag::U128);
            self.enc.raw(&v.to_le_bytes());
        } else if let Ok(v) = obj.extract::<i128>() {
            self.enc.tag(tag::I128);
            self.enc.raw(&v.to_le_bytes());
        } else {
            return Err(enc_err(
                "int out of range for a cache key: keys hold integers from -2**127 to 2**128-1 (pass a str or Decimal for larger numbers)",
            ));
        }
        Ok(())
    }

    fn int_typed(&mut self, obj: &Bound<'_, PyAny>, t: u8) -> PyResult<()> {
        if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "expected an int for a Rust {} field, got {}",
                tag_name(t),
                type_name(obj)
            )));
        }
        let range = || enc_err(format!("{} is out of range for a Rust {}", obj, tag_name(t)));
        self.enc.tag(t);
        match t {
            tag::U8 => self.enc.raw(&obj.extract::<u8>().map_err(|_| range())?.to_le_bytes()),
            tag::U16 => self.enc.raw(&obj.extract::<u16>().map_err(|_| range())?.to_le_bytes()),
            tag::U32 => self.enc.raw(&obj.extract::<u32>().map_err(|_| range())?.to_le_bytes()),
            tag::U64 => self.enc.raw(&obj.extract::<u64>().map_err(|_| range())?.to_le_bytes()),
            tag::U128 => self.enc.raw(&obj.extract::<u128>().map_err(|_| range())?.to_le_bytes()),
            tag::I8 => self.enc.raw(&obj.extract::<i8>().map_err(|_| range())?.to_le_bytes()),
            tag::I16 => self.enc.raw(&obj.extract::<i16>().map_err(|_| range())?.to_le_bytes()),
            tag::I32 => self.enc.raw(&obj.extract::<i32>().map_err(|_| range())?.to_le_bytes()),
            tag::I64 => self.enc.raw(&obj.extract::<i64>().map_err(|_| range())?.to_le_bytes()),
            tag::I128 => self.enc.raw(&obj.extract::<i128>().map_err(|_| range())?.to_le_bytes()),
            _ => return Err(PyValueError::new_err("not an integer width")),
        }
        Ok(())
    }

    fn float(&mut self, obj: &Bound<'_, PyAny>, t: u8) -> PyResult<()> {
        if !(obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>())
            || obj.is_instance_of::<PyBool>()
        {
            return Err(PyTypeError::new_err(format!(
                "expected a float for a Rust {} value, got {}",
                tag_name(t),
                type_name(obj)
            )));
        }
        let v: f64 = obj.extract()?;
        if v.is_nan() {
            return Err(enc_err(
                "a float key argument is NaN, which cannot be a cache key (NaN is not equal to itself)",
            ));
        }
        if t == tag::F32 {
            self.enc.f32(v as f32);
        } else {
            self.enc.f64(v);
        }
        Ok(())
    }

    fn str_value(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let s = obj.cast::<PyString>()?;
        let text =
            s.to_cow().map_err(|_| enc_err("a str in the key is not valid Unicode (lone surrogate)"))?;
        self.enc.tag(tag::STR);
        self.len(text.len())?;
        self.enc.raw(text.as_bytes());
        Ok(())
    }

    fn bytes_value(&mut self, b: &[u8]) -> PyResult<()> {
        self.enc.tag(tag::BYTES);
        self.len(b.len())?;
        self.enc.raw(b);
        Ok(())
    }

    /// Encodes `obj` as declared by `spec`.
    pub(crate) fn spec(&mut self, obj: &Bound<'_, PyAny>, spec: &Spec, depth: u32) -> PyResult<()> {
        if depth > MAX_DEPTH {
            return Err(enc_err(format!(
                "key value nested deeper than {MAX_DEPTH} levels (or refers to itself)"
            )));
        }
        if self.enc.is_faulted() {
            return Ok(());
        }
        match spec {
            Spec::Dyn => self.value(obj, depth),
            Spec::Int(t) => self.int_typed(obj, *t),
            Spec::F32 => self.float(obj, tag::F32),
            Spec::F64 => self.float(obj, tag::F64),
            Spec::Char => self.char_value(obj),
            Spec::Opt(inner) => {
                if obj.is_none() {
                    self.enc.tag(tag::NONE);
                    Ok(())
                } else {
                    self.enc.tag(tag::SOME);
                    self.spec(obj, inner, depth + 1)
                }
            }
            Spec::Seq(inner) => {
                if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
                    return Err(PyTypeError::new_err(format!(
                        "expected a list or tuple for a sequence field, got {}",
                        type_name(obj)
                    )));
                }
                let n = obj.len()?;
                self.enc.tag(tag::SEQ);
                self.len(n)?;
                for it in obj.try_iter()? {
                    self.spec(&it?, inner, depth + 1)?;
                }
                Ok(())
            }
            Spec::Set(inner) => {
                if !(obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>()) {
                    return Err(PyTypeError::new_err(format!(
                        "expected a set or frozenset for a set field, got {}",
                        type_name(obj)
                    )));
                }
                let n = obj.len()?;
                let items = obj.try_iter()?.map(|r| r.map(|x| (x, None, SpecPair(inner, None))));
                self.sorted(tag::SET, n, items, depth)
            }
            Spec::Map(k, v) => {
                let d = obj.cast::<PyDict>().map_err(|_| {
                    PyTypeError::new_err(format!("expected a dict for a map field, got {}", type_name(obj)))
                })?;
                let n = d.len();
                let items = d.iter().map(|(a, b)| Ok((a, Some(b), SpecPair(k, Some(v)))));
                self.sorted(tag::MAP, n, items, depth)
            }
            Spec::Tuple(specs) => {
                let t = obj.cast::<PyTuple>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "expected a tuple for a tuple field, got {}",
                        type_name(obj)
                    ))
                })?;
                if t.len() != specs.len() {
                    return Err(PyTypeError::new_err(format!(
                        "expected a tuple of {} items, got {}",
                        specs.len(),
                        t.len()
                    )));
                }
                self.tuple_header(t.len())?;
                for (it, s) in t.iter().zip(specs) {
                    self.spec(&it, s, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    fn tuple_header(&mut self, n: usize) -> PyResult<()> {
        match n {
            0 => self.enc.tag(tag::UNIT),
            1..=255 => {
                self.enc.tag(tag::TUPLE);
                self.enc.raw(&[n as u8]);
            }
            _ => {
                return Err(enc_err(format!(
                    "a tuple of {n} items cannot be a key (at most 255; pass a list for a sequence)"
                )))
            }
        }
        Ok(())
    }

    fn char_value(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let s: String = obj.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "expected a one-character str for a Rust char, got {}",
                type_name(obj)
            ))
        })?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                self.enc.tag(tag::CHAR);
                self.enc.raw(&u32::from(c).to_le_bytes());
                Ok(())
            }
            _ => Err(PyTypeError::new_err(format!(
                "expected a one-character str for a Rust char, got {} characters",
                s.chars().count()
            ))),
        }
    }

    /// Encodes `obj` by its Python type (`docs/python.md` has the table).
    pub(crate) fn value(&mut self, obj: &Bound<'_, PyAny>, depth: u32) -> PyResult<()> {
        if depth > MAX_DEPTH {
            return Err(enc_err(format!(
                "key value nested deeper than {MAX_DEPTH} levels (or refers to itself)"
            )));
        }
        if self.enc.is_faulted() {
            return Ok(());
        }
        let py = obj.py();
        // Exact built-in types first: the common case, and cheap pointer comparisons.
        if obj.is_none() {
            self.enc.tag(tag::UNIT);
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyBool>() {
            self.enc.tag(tag::BOOL);
            self.enc.raw(&[u8::from(obj.is_truthy()?)]);
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyInt>() {
            return self.int_dyn(obj);
        }
        if obj.is_exact_instance_of::<PyString>() {
            return self.str_value(obj);
        }
        if obj.is_exact_instance_of::<PyFloat>() {
            return self.float(obj, tag::F64);
        }
        if let Ok(t) = obj.cast_exact::<PyTuple>() {
            self.tuple_header(t.len())?;
            for it in t.iter() {
                self.value(&it, depth + 1)?;
            }
            return Ok(());
        }
        if let Ok(b) = obj.cast_exact::<PyBytes>() {
            return self.bytes_value(b.as_bytes());
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            self.enc.tag(tag::SEQ);
            self.len(l.len())?;
            // Index each time: the list may change size while being walked (a key refuses
            // nothing for that, but must not read past the end).
            let mut i = 0;
            while i < l.len() {
                let it = l.get_item(i)?;
                self.value(&it, depth + 1)?;
                i += 1;
            }
            if i != l.len() {
                return Err(enc_err("a list changed size while its key was being made"));
            }
            return Ok(());
        }
        if let Ok(d) = obj.cast_exact::<PyDict>() {
            let n = d.len();
            let items = d.iter().map(|(a, b)| Ok((a, Some(b), SpecPair(&Spec::Dyn, Some(&Spec::Dyn)))));
            return self.sorted(tag::MAP, n, items, depth);
        }
        if obj.is_exact_instance_of::<PySet>() || obj.is_exact_instance_of::<PyFrozenSet>() {
            let n = obj.len()?;
            let items = obj.try_iter()?.map(|r| r.map(|x| (x, None, SpecPair(&Spec::Dyn, None))));
            return self.sorted(tag::SET, n, items, depth);
        }
        if let Ok(t) = obj.cast::<Typed>() {
            let t = t.get();
            let inner = t.value.bind(py);
            return match t.kind {
                KIND_OPTION => self.spec(inner, &Spec::Opt(Box::new(Spec::Dyn)), depth + 1),
                KIND_OK | KIND_ERR => {
                    self.enc.tag(t.kind);
                    self.value(inner, depth + 1)
                }
                tag::F32 | tag::F64 => self.float(inner, t.kind),
                tag::CHAR => self.char_value(inner),
                k => self.int_typed(inner, k),
            };
        }
        // Classes declared with @larder.stable carry their schema.
        let ty = obj.get_type();
        if let Ok(s) = ty.getattr(pyo3::intern!(py, "__larder_schema__")) {
            if let Ok(schema) = s.cast::<Schema>() {
                return self.stable(obj, schema.get(), depth);
            }
        }
        let c = classes(py)?;
        if obj.is_instance(c.enum_.bind(py))? {
            return Err(PyTypeError::new_err(format!(
                "cannot key enum {}: decorate the Enum class with @larder.stable(name=\"...\", version=1) so its members key like the Rust enum's unit variants",
                type_name(obj)
            )));
        }
        if obj.is_instance(c.datetime.bind(py))? {
            let aware = !obj.getattr("tzinfo")?.is_none() && !obj.call_method0("utcoffset")?.is_none();
            let delta =
                if aware { obj.sub(c.epoch_aware.bind(py))? } else { obj.sub(c.epoch_naive.bind(py))? };
            let days: i64 = delta.getattr("days")?.extract()?;
            let secs: i64 = delta.getattr("seconds")?.extract()?;
            let micros: u32 = delta.getattr("microseconds")?.extract()?;
            self.enc.tag(if aware { tag::INSTANT } else { tag::NAIVE_DATETIME });
            self.enc.raw(&(days * 86_400 + secs).to_le_bytes());
            self.enc.raw(&(micros * 1000).to_le_bytes());
            return Ok(());
        }
        if obj.is_instance(c.date.bind(py))? {
            let y: i32 = obj.getattr("year")?.extract()?;
            let m: u8 = obj.getattr("month")?.extract()?;
            let d: u8 = obj.getattr("day")?.extract()?;
            self.enc.tag(tag::DATE);
            self.enc.raw(&y.to_le_bytes());
            self.enc.raw(&[m, d]);
            return Ok(());
        }
        if obj.is_instance(c.time.bind(py))? {
            if !obj.getattr("tzinfo")?.is_none() {
                return Err(enc_err(
                    "a datetime.time with a tzinfo names no instant and cannot be a key: combine it with a date (an aware datetime) or drop the tzinfo",
                ));
            }
            static TIME_HEADER: std::sync::OnceLock<Header> = std::sync::OnceLock::new();
            let h = TIME_HEADER.get_or_init(|| {
                schema::struct_header("python.datetime.time", 1, &["hour", "minute", "second", "microsecond"])
            });
            self.enc.header(h);
            for f in ["hour", "minute", "second"] {
                let v: u8 = obj.getattr(f)?.extract()?;
                self.enc.tag(tag::U8);
                self.enc.raw(&[v]);
            }
            let us: u32 = obj.getattr("microsecond")?.extract()?;
            self.enc.tag(tag::U32);
            self.enc.raw(&us.to_le_bytes());
            return Ok(());
        }
        if obj.is_instance(c.timedelta.bind(py))? {
            let days: i64 = obj.getattr("days")?.extract()?;
            let secs: i64 = obj.getattr("seconds")?.extract()?;
            let micros: u32 = obj.getattr("microseconds")?.extract()?;
            let total = days * 86_400 + secs;
            if total < 0 {
                return Err(enc_err(
                    "a negative timedelta cannot be a key (it keys as Rust's Duration, which is unsigned): pass total_seconds() or an int",
                ));
            }
            self.enc.tag(tag::DURATION);
            self.enc.raw(&(total as u64).to_le_bytes());
            self.enc.raw(&(micros * 1000).to_le_bytes());
            return Ok(());
        }
        if obj.is_instance(c.decimal.bind(py))? {
            return self.decimal(obj);
        }
        if obj.is_instance(c.uuid.bind(py))? {
            let b = obj.getattr("bytes")?;
            let b = b.cast::<PyBytes>()?;
            self.enc.tag(tag::UUID);
            self.enc.raw(b.as_bytes());
            return Ok(());
        }
        if obj.is_instance(c.ipv4.bind(py))? || obj.is_instance(c.ipv6.bind(py))? {
            let b = obj.getattr("packed")?;
            let b = b.cast::<PyBytes>()?.as_bytes();
            self.enc.tag(if b.len() == 4 { tag::IPV4 } else { tag::IPV6 });
            self.enc.raw(b);
            return Ok(());
        }
        // Subclasses of the built-ins (after the special classes, some of which subclass them).
        if obj.is_instance_of::<PyBool>() {
            self.enc.tag(tag::BOOL);
            self.enc.raw(&[u8::from(obj.is_truthy()?)]);
            return Ok(());
        }
        if obj.is_instance_of::<PyString>() {
            return self.str_value(obj);
        }
        if obj.is_instance_of::<PyBytes>() {
            return self.bytes_value(obj.cast::<PyBytes>()?.as_bytes());
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return self.bytes_value(&b.to_vec());
        }
        if obj.hasattr(pyo3::intern!(py, "__dataclass_fields__"))?
            || obj.hasattr(pyo3::intern!(py, "_fields"))?
            || obj.hasattr(pyo3::intern!(py, "model_fields"))?
        {
            return Err(PyTypeError::new_err(format!(
                "cannot key a {} without a declared schema: decorate the class with @larder.stable(name=\"{}\", version=1) (and declare Rust integer widths with typing.Annotated[int, larder.u32])",
                type_name(obj),
                ty.name().map(|n| n.to_string()).unwrap_or_default()
            )));
        }
        if obj.is_instance_of::<PyInt>() {
            return self.int_dyn(obj);
        }
        if obj.is_instance_of::<PyFloat>() {
            return self.float(obj, tag::F64);
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            self.tuple_header(t.len())?;
            for it in t.iter() {
                self.value(&it, depth + 1)?;
            }
            return Ok(());
        }
        if let Ok(l) = obj.cast::<PyList>() {
            self.enc.tag(tag::SEQ);
            self.len(l.len())?;
            for it in l.iter() {
                self.value(&it, depth + 1)?;
            }
            return Ok(());
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let n = d.len();
            let items = d.iter().map(|(a, b)| Ok((a, Some(b), SpecPair(&Spec::Dyn, Some(&Spec::Dyn)))));
            return self.sorted(tag::MAP, n, items, depth);
        }
        if obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>() {
            let n = obj.len()?;
            let items = obj.try_iter()?.map(|r| r.map(|x| (x, None, SpecPair(&Spec::Dyn, None))));
            return self.sorted(tag::SET, n, items, depth);
        }
        Err(PyTypeError::new_err(format!(
            "cannot make a cache key from a value of type {}: keys take None, bool, int, float, str, bytes, tuple, list, dict, set, frozenset, Decimal, datetime/date/time/timedelta, UUID, IPv4/IPv6 addresses, @larder.stable enums and classes, and larder.u32(...)-style typed values. Convert the value to one of these, or declare its class with @larder.stable(name=..., version=...); hash(), repr() and pickle are never used",
            type_name(obj)
        )))
    }

    fn decimal(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        if !obj.call_method0("is_finite")?.is_truthy()? {
            return Err(enc_err("a Decimal NaN or infinity cannot be a cache key"));
        }
        let t = obj.call_method0("as_tuple")?;
        let sign: u8 = t.get_item(0)?.extract()?;
        let digits: Vec<u8> = t.get_item(1)?.extract()?;
        let exp: i64 = t.get_item(2)?.extract()?;
        let out_of_range = || {
            enc_err(format!(
                "Decimal {obj} is outside rust_decimal's range (96-bit mantissa, at most 28 decimal places), so no Rust service could key it: round it or pass it as a str"
            ))
        };
        // mantissa × 10^exp; trailing zeros removed (normalized) as rust_decimal's normalize().
        let mut digits = digits;
        let mut exp = exp;
        while exp < 0 && digits.len() > 1 && digits.last() == Some(&0) {
            digits.pop();
            exp += 1;
        }
        let mut mantissa: u128 = 0;
        for d in &digits {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(*d)))
                .ok_or_else(out_of_range)?;
        }
        while exp > 0 {
            mantissa = mantissa.checked_mul(10).ok_or_else(out_of_range)?;
            exp -= 1;
        }
        let mut scale = u32::try_from(-exp).map_err(|_| out_of_range())?;
        if mantissa == 0 {
            scale = 0;
        }
        if mantissa >= (1u128 << 96) || scale > 28 {
            return Err(out_of_range());
        }
        let signed = if sign == 1 && mantissa != 0 { -(mantissa as i128) } else { mantissa as i128 };
        self.enc.tag(tag::DECIMAL);
        self.enc.raw(&signed.to_le_bytes());
        self.enc.raw(&scale.to_le_bytes());
        Ok(())
    }

    fn stable(&mut self, obj: &Bound<'_, PyAny>, schema: &Schema, depth: u32) -> PyResult<()> {
        if schema.kind == Kind::Enum {
            let member: String = obj.getattr("name")?.extract()?;
            let h = schema.member_header(&member);
            self.enc.header(&h);
            return Ok(());
        }
        self.enc.header(&schema.header);
        for (name, spec) in &schema.fields {
            let v = obj.getattr(name.bind(obj.py()))?;
            self.spec(&v, spec, depth + 1).map_err(|e| {
                if e.is_instance_of::<PyTypeError>(obj.py()) {
                    PyTypeError::new_err(format!("{}.{}: {}", schema.name, name, e.value(obj.py())))
                } else {
                    e
                }
            })?;
        }
        Ok(())
    }
}

/// The specs for the two halves of a set element or map entry.
pub(crate) struct SpecPair<'a>(&'a Spec, Option<&'a Spec>);

fn tag_name(t: u8) -> &'static str {
    WIDTHS.iter().find(|(_, c)| *c == t).map_or("number", |(n, _)| n)
}

/// Parses a secret given as bytes (at least 16) or hex text.
pub(crate) fn parse_secret(secret: &Bound<'_, PyAny>) -> PyResult<KeySecret> {
    let r = if let Ok(b) = secret.cast::<PyBytes>() {
        KeySecret::from_bytes(b.as_bytes())
    } else if let Ok(s) = secret.extract::<String>() {
        KeySecret::from_hex(&s)
    } else {
        return Err(PyTypeError::new_err(format!(
            "secret must be bytes (at least 16) or a hex str, got {}",
            type_name(secret)
        )));
    };
    r.map_err(|e| KeyEncodingError::new_err(e.to_string()))
}

/// `larder.KeySpace(namespace, version, secret=None)`: a family of cache keys.
#[pyclass(module = "larder._larder", frozen, name = "KeySpace")]
pub(crate) struct PyKeySpace {
    pub(crate) space: KeySpace,
}

#[pymethods]
impl PyKeySpace {
    /// `namespace`: 1–64 bytes of `[a-z0-9_.-]`; `version`: 0..2**32-1; `secret`: bytes
    /// (≥ 16) or hex text keying the digest (default: `LARDER_KEY_SECRET` when set, read once
    /// per process like Rust's `KeySpace::new` and `larder.memoize`, else the documented
    /// default key).
    #[new]
    #[pyo3(signature = (namespace, version, secret=None, max_encoded_len=None))]
    fn new(
        namespace: &Bound<'_, PyAny>,
        version: &Bound<'_, PyAny>,
        secret: Option<&Bound<'_, PyAny>>,
        max_encoded_len: Option<usize>,
    ) -> PyResult<Self> {
        let ns: String = namespace.extract().map_err(|_| {
            PyTypeError::new_err(format!("namespace must be a str, got {}", type_name(namespace)))
        })?;
        if !version.is_instance_of::<PyInt>() || version.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!("version must be an int, got {}", type_name(version))));
        }
        let v: u32 = version
            .extract()
            .map_err(|_| KeyEncodingError::new_err(format!("version {version} is not in 0..=4294967295")))?;
        let mut space = KeySpace::new(&ns, v).map_err(|e| KeyEncodingError::new_err(e.to_string()))?;
        if let Some(s) = secret {
            if !s.is_none() {
                space = space.with_secret(&parse_secret(s)?);
            }
        }
        if let Some(m) = max_encoded_len {
            space = space.with_max_encoded_len(m);
        }
        Ok(PyKeySpace { space })
    }

    /// The key text of `value`: `{namespace}:v{version}:{32 base32 characters}`.
    fn key(&self, value: &Bound<'_, PyAny>) -> PyResult<String> {
        let mut w = Walk::new(self.space.max_encoded_len());
        w.value(value, 0)?;
        Ok(self.space.key_from_encoding(w.finish()?).as_str().to_owned())
    }

    /// The canonical encoding of `value` (what the digest is computed over).
    fn encode<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let mut w = Walk::new(self.space.max_encoded_len());
        w.value(value, 0)?;
        Ok(PyBytes::new(py, w.finish()?))
    }

    /// The key text of an encoding made earlier.
    fn key_from_encoding(&self, encoding: &[u8]) -> String {
        self.space.key_from_encoding(encoding).as_str().to_owned()
    }

    #[getter]
    fn namespace(&self) -> &str {
        self.space.namespace()
    }

    #[getter]
    fn version(&self) -> u32 {
        self.space.version()
    }

    #[getter]
    fn prefix(&self) -> &str {
        self.space.prefix()
    }

    fn __repr__(&self) -> String {
        format!("larder.KeySpace({:?}, {})", self.space.namespace(), self.space.version())
    }
}

/// Checks a namespace (`[a-z0-9_.-]`, 1–64 bytes); raises `KeyEncodingError`.
#[pyfunction]
pub(crate) fn validate_namespace(namespace: &str) -> PyResult<()> {
    larder_key::validate_namespace(namespace).map_err(|e| KeyEncodingError::new_err(e.to_string()))
}

/// `module.qualname` → a valid namespace, as Rust's `#[memoize]` does for its default.
#[pyfunction]
pub(crate) fn sanitize_namespace(raw: &str) -> String {
    larder_cache::__private::sanitize_namespace(raw)
}
