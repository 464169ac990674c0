//! Property tests: over nested generated values of many shapes, equal encodings ⇔ equal values.
//!
//! `Val` is a tree of real Rust values (integers of every width, floats, strings, bytes,
//! options, results, tuples, sequences, maps, sets, derived structs and enums). Its
//! `StableKey` impl adds **no bytes of its own**: each node writes exactly what the Rust value
//! it stands for writes. So two `Val`s of different Rust types (`1u32` and `1u64`, `Some(0)`
//! and `0`) are told apart by the format's own tags, not by the test.
//!
//! Each encoding also goes through a randomly chosen but equivalent Rust representation: sets
//! and maps through a `HashSet`/`HashMap` with a fresh `RandomState` (so iteration order
//! varies between encodings) or a `BTreeSet`/`BTreeMap`; byte strings as `Vec<u8>`, `&[u8]` or
//! a rotated `VecDeque<u8>`; sequences as `Vec`, slice or rotated `VecDeque`. Equal values
//! must still give equal bytes.
//!
//! Values are drawn from tiny alphabets (`0..3`, strings over "ab") so that equal values and
//! near-misses such as `("ab", "c")` / `("a", "bc")` come up all the time.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use larder_key::{encode, encode_with_limit, Encoder, KeyError, KeySpace, StableKey};
use proptest::prelude::*;

/// An `f64` with the equality the encoding promises: `-0.0 == 0.0` (NaN is never generated
/// here; it is refused, tested below).
#[derive(Debug, Clone, Copy)]
struct F64(f64);

impl F64 {
    fn bits(self) -> u64 {
        if self.0 == 0.0 {
            0
        } else {
            self.0.to_bits()
        }
    }
}
impl PartialEq for F64 {
    fn eq(&self, o: &Self) -> bool {
        self.bits() == o.bits()
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for F64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.bits().cmp(&o.bits())
    }
}
impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.bits().hash(h)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct F32(u32);

// Derived types inside the tree, so the derive's layout is part of the property too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, StableKey)]
struct Pair<A, B> {
    a: A,
    b: B,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, StableKey)]
struct Wrap<T>(T);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, StableKey)]
struct Nothing;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, StableKey)]
enum Shape<T> {
    Empty,
    One(T),
    Two(T, T),
    Named { v: T },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Val {
    Unit,
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(i128),
    F32(F32),
    F64(F64),
    Char(char),
    Str(String),
    Bytes(Vec<u8>),
    Dur(u64, u32),
    Opt(Option<Box<Val>>),
    Res(Result<Box<Val>, Box<Val>>),
    Tup1(Box<Val>),
    Tup2(Box<(Val, Val)>),
    Tup3(Box<(Val, Val, Val)>),
    Seq(Vec<Val>),
    Set(BTreeSet<Val>),
    Map(BTreeMap<Val, Val>),
    Pair(Box<Pair<Val, Val>>),
    Wrap(Box<Wrap<Val>>),
    Nothing,
    Shape(Box<Shape<Val>>),
}

thread_local! {
    static PICK: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
}

/// A cheap per-thread pseudo-random choice, so equal values take different representations.
fn pick(n: u64) -> u64 {
    PICK.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x % n
    })
}

fn rotated<T: Clone>(items: &[T]) -> VecDeque<T> {
    let mut d: VecDeque<T> = items.iter().cloned().collect();
    if !d.is_empty() {
        // Rotating then pushing back to the front leaves the same order but makes the ring
        // buffer wrap, so `as_slices` returns two parts.
        let k = pick(d.len() as u64) as usize;
        d.rotate_left(k);
        for _ in 0..k {
            let x = d.pop_back().unwrap();
            d.push_front(x);
        }
    }
    d
}

impl StableKey for Val {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Val::Unit => ().encode(enc),
            Val::Bool(v) => v.encode(enc),
            Val::U8(v) => v.encode(enc),
            Val::U16(v) => v.encode(enc),
            Val::U32(v) => v.encode(enc),
            Val::U64(v) => {
                if pick(2) == 0 {
                    v.encode(enc)
                } else {
                    // usize is written exactly like u64.
                    (*v as usize).encode(enc)
                }
            }
            Val::U128(v) => v.encode(enc),
            Val::I8(v) => v.encode(enc),
            Val::I16(v) => v.encode(enc),
            Val::I32(v) => v.encode(enc),
            Val::I64(v) => {
                if pick(2) == 0 {
                    v.encode(enc)
                } else {
                    (*v as isize).encode(enc)
                }
            }
            Val::I128(v) => v.encode(enc),
            Val::F32(v) => f32::from_bits(v.0).encode(enc),
            Val::F64(v) => v.0.encode(enc),
            Val::Char(v) => v.encode(enc),
            Val::Str(v) => match pick(3) {
                0 => v.encode(enc),
                1 => v.as_str().encode(enc),
                _ => std::borrow::Cow::Borrowed(v.as_str()).encode(enc),
            },
            Val::Bytes(v) => match pick(4) {
                0 => v.encode(enc),
                1 => v.as_slice().encode(enc),
                2 => rotated(v).encode(enc),
                _ => v.clone().into_boxed_slice().encode(enc),
            },
            Val::Dur(s, n) => Duration::new(*s, *n).encode(enc),
            Val::Opt(v) => v.encode(enc),
            Val::Res(v) => v.encode(enc),
            Val::Tup1(v) => (&**v,).encode(enc),
            Val::Tup2(v) => (&v.0, &v.1).encode(enc),
            Val::Tup3(v) => (&v.0, &v.1, &v.2).encode(enc),
            Val::Seq(v) => match (pick(3), v.len()) {
                (0, _) => v.encode(enc),
                (1, 2) => [&v[0], &v[1]].encode(enc),
                (1, _) => v.as_slice().encode(enc),
                _ => rotated(v).encode(enc),
            },
            Val::Set(v) => {
                if pick(2) == 0 {
                    v.encode(enc)
                } else {
                    let h: HashSet<&Val, RandomState> = v.iter().collect();
                    h.encode(enc)
                }
            }
            Val::Map(v) => {
                if pick(2) == 0 {
                    v.encode(enc)
                } else {
                    let h: HashMap<&Val, &Val, RandomState> = v.iter().collect();
                    h.encode(enc)
                }
            }
            Val::Pair(v) => v.encode(enc),
            Val::Wrap(v) => v.encode(enc),
            Val::Nothing => Nothing.encode(enc),
            Val::Shape(v) => v.encode(enc),
        }
    }
}

fn small_str() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['a', 'b']), 0..4).prop_map(|v| v.into_iter().collect())
}

fn leaf() -> impl Strategy<Value = Val> {
    prop_oneof![
        Just(Val::Unit),
        Just(Val::Nothing),
        any::<bool>().prop_map(Val::Bool),
        (0u8..3).prop_map(Val::U8),
        (0u16..3).prop_map(Val::U16),
        (0u32..3).prop_map(Val::U32),
        prop_oneof![0u64..3, Just(u64::MAX)].prop_map(Val::U64),
        (0u128..3).prop_map(Val::U128),
        (-1i8..2).prop_map(Val::I8),
        (-1i16..2).prop_map(Val::I16),
        (-1i32..2).prop_map(Val::I32),
        prop_oneof![-1i64..2, Just(i64::MIN)].prop_map(Val::I64),
        (-1i128..2).prop_map(Val::I128),
        prop::sample::select(vec![0.0f32, 1.0, -1.0, 0.5]).prop_map(|f| Val::F32(F32(f.to_bits()))),
        prop::sample::select(vec![0.0f64, -0.0, 1.0, -1.0, f64::INFINITY, f64::MIN_POSITIVE])
            .prop_map(|f| Val::F64(F64(f))),
        prop::sample::select(vec!['a', 'b', '\0', '한']).prop_map(Val::Char),
        small_str().prop_map(Val::Str),
        prop::collection::vec(0u8..3, 0..4).prop_map(Val::Bytes),
        (0u64..2, 0u32..2).prop_map(|(s, n)| Val::Dur(s, n)),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    leaf().prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            prop::option::of(inner.clone()).prop_map(|o| Val::Opt(o.map(Box::new))),
            prop_oneof![
                inner.clone().prop_map(|v| Ok(Box::new(v))),
                inner.clone().prop_map(|v| Err(Box::new(v)))
            ]
            .prop_map(Val::Res),
            inner.clone().prop_map(|v| Val::Tup1(Box::new(v))),
            (inner.clone(), inner.clone()).prop_map(|t| Val::Tup2(Box::new(t))),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|t| Val::Tup3(Box::new(t))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Val::Seq),
            prop::collection::btree_set(inner.clone(), 0..4).prop_map(Val::Set),
            prop::collection::btree_map(inner.clone(), inner.clone(), 0..4).prop_map(Val::Map),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Val::Pair(Box::new(Pair { a, b }))),
            inner.clone().prop_map(|v| Val::Wrap(Box::new(Wrap(v)))),
            prop_oneof![
                Just(Shape::Empty),
                inner.clone().prop_map(Shape::One),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Shape::Two(a, b)),
                inner.clone().prop_map(|v| Shape::Named { v }),
            ]
            .prop_map(|s| Val::Shape(Box::new(s))),
        ]
    })
}

fn enc(v: &Val) -> Vec<u8> {
    encode(v).expect("generated values are small and NaN-free")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Equal values ⇒ equal encodings, through every equivalent representation.
    #[test]
    fn equal_values_encode_equally(v in val()) {
        let first = enc(&v);
        for _ in 0..4 {
            prop_assert_eq!(&enc(&v.clone()), &first);
        }
    }

    /// Over a batch of values from tiny alphabets (many equal, many near-misses): two values
    /// share an encoding exactly when they are equal.
    #[test]
    fn encodings_equal_iff_values_equal(vs in prop::collection::vec(val(), 2..40)) {
        let mut by_encoding: HashMap<Vec<u8>, &Val> = HashMap::new();
        let mut by_value: BTreeMap<&Val, Vec<u8>> = BTreeMap::new();
        for v in &vs {
            let e = enc(v);
            if let Some(prev) = by_encoding.insert(e.clone(), v) {
                prop_assert_eq!(prev, v, "two different values share the encoding {:02x?}", e);
            }
            if let Some(prev) = by_value.insert(v, e.clone()) {
                prop_assert_eq!(prev, e, "one value, two encodings: {:?}", v);
            }
        }
    }

    /// Pairs built to be near-misses of each other (one leaf changed, or the same leaves
    /// regrouped) are equal exactly when their encodings are.
    #[test]
    fn regrouped_neighbours(a in val(), b in val(), c in val()) {
        let left = Val::Tup2(Box::new((Val::Tup2(Box::new((a.clone(), b.clone()))), c.clone())));
        let right = Val::Tup2(Box::new((a.clone(), Val::Tup2(Box::new((b.clone(), c.clone()))))));
        prop_assert_ne!(enc(&left), enc(&right));
        let flat = Val::Seq(vec![a.clone(), b.clone(), c.clone()]);
        let split = Val::Seq(vec![a.clone(), Val::Seq(vec![b.clone(), c.clone()])]);
        prop_assert_ne!(enc(&flat), enc(&split));
        prop_assert_eq!(enc(&Val::Opt(Some(Box::new(a.clone())))) == enc(&a), false);
        prop_assert_eq!(enc(&a) == enc(&b), a == b);
    }

    /// No limit makes the encoder panic; a limit is honoured exactly: the encoding is returned
    /// whole when it fits and refused with `TooLarge` (never truncated) when it does not.
    #[test]
    fn limits_are_exact(v in val(), slack in 0usize..64, below in any::<bool>()) {
        let full = enc(&v);
        let limit = if below { full.len().saturating_sub(slack + 1) } else { full.len() + slack };
        match encode_with_limit(&v, limit) {
            Ok(bytes) => {
                prop_assert!(full.len() <= limit);
                prop_assert_eq!(&bytes, &full);
            }
            Err(e) => {
                prop_assert!(full.len() > limit, "refused though it fits: {}", e);
                prop_assert_eq!(e, KeyError::TooLarge { limit });
            }
        }
        let space = KeySpace::new("prop", 1).unwrap().with_max_encoded_len(limit);
        prop_assert_eq!(space.key(&v).is_ok(), full.len() <= limit);
    }

    /// Extreme limits (0, tiny, `usize::MAX`) never panic and never truncate.
    #[test]
    fn extreme_limits(v in val(), limit in prop_oneof![Just(0usize), 1usize..8, 0usize..400, Just(usize::MAX)]) {
        let full = enc(&v);
        match encode_with_limit(&v, limit) {
            Ok(bytes) => prop_assert_eq!(bytes, full),
            Err(e) => {
                prop_assert_eq!(e, KeyError::TooLarge { limit });
                prop_assert!(full.len() > limit);
            }
        }
    }

    /// Any `f64`/`f32` bit pattern: NaN (every payload) is refused, everything else encodes.
    #[test]
    fn any_float_bits(bits in any::<u64>(), bits32 in any::<u32>(), huge in any::<bool>()) {
        let limit = if huge { usize::MAX } else { 0 };
        let f = f64::from_bits(bits);
        match encode_with_limit(&(1u8, f), limit) {
            Err(KeyError::NaN) => prop_assert!(f.is_nan()),
            Err(KeyError::TooLarge { .. }) => prop_assert!(!huge),
            Ok(b) => prop_assert!(!f.is_nan() && b.len() == 2 + 1 + 2 + 8),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        let g = f32::from_bits(bits32);
        prop_assert_eq!(encode(&g).is_err(), g.is_nan());
    }

    /// Arbitrary strings and bytes (not only the tiny alphabets): injective and stable.
    #[test]
    fn arbitrary_strings(a in ".{0,12}", b in ".{0,12}", x in prop::collection::vec(any::<u8>(), 0..12)) {
        prop_assert_eq!(encode(&a).unwrap() == encode(&b).unwrap(), a == b);
        prop_assert_eq!(encode(&(a.as_str(), b.as_str())).unwrap() == encode(&(b.as_str(), a.as_str())).unwrap(), a == b);
        prop_assert_ne!(encode(&x).unwrap(), encode(&a).unwrap());
        let ka = KeySpace::new("s", 1).unwrap().key(&(a.as_str(), &x)).unwrap();
        prop_assert_eq!(ka.as_str().len(), "s:v1:".len() + 32);
    }
}

/// `serde_json::Value` (feature `serde_json`): the CLI's input.
#[cfg(feature = "serde_json")]
mod json {
    use super::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-2i64..3).prop_map(Value::from),
            prop::sample::select(vec![0.0f64, -0.0, 0.5, 1.0, -1.0, 1e300]).prop_map(Value::from),
            Just(Value::from(u64::MAX)),
            small_str().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(small_str(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// JSON documents (the CLI's input): equal encodings exactly for equal values, no panic.
        #[test]
        fn json_values(vs in prop::collection::vec(json_value(), 2..24)) {
            let mut by_encoding: HashMap<Vec<u8>, &serde_json::Value> = HashMap::new();
            for v in &vs {
                let e = encode(v).unwrap();
                if let Some(prev) = by_encoding.insert(e, v) {
                    prop_assert_eq!(prev, v);
                }
            }
            for (i, a) in vs.iter().enumerate() {
                for b in &vs[i + 1..] {
                    prop_assert_eq!(encode(a).unwrap() == encode(b).unwrap(), a == b, "{} vs {}", a, b);
                }
            }
        }
    }
}
