//! `#[derive(StableKey)]`: layouts (checked against `larder_key::schema`, the run-time
//! statement of the format), attributes and their effect on keys.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::common::LoanQuote;
use larder_key::schema::{self, VariantShape};
use larder_key::{encode, tag, KeySpace, StableKey};

fn e<T: StableKey + ?Sized>(v: &T) -> Vec<u8> {
    encode(v).unwrap()
}

#[test]
fn named_struct_layout() {
    let q = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let header = schema::struct_header("LoanQuote", 1, &["user_id", "amount_won", "rate_bp", "term_months"]);
    assert_eq!(header[0], tag::STRUCT);
    let expected = [&header[..], &e(&7u64), &e(&5_000_000u64), &e(&450u32), &e(&36u32)].concat();
    assert_eq!(e(&q), expected);
    // Fits one 64-byte BLAKE3 block.
    assert_eq!(expected.len(), 45);
}

#[derive(StableKey)]
struct Pt(i32, i32);

#[derive(StableKey)]
struct Marker;

#[test]
fn tuple_and_unit_struct_layouts() {
    assert_eq!(e(&Pt(1, -1)), [&schema::tuple_struct_header("Pt", 1, 2)[..], &e(&1i32), &e(&-1i32)].concat());
    assert_eq!(e(&Marker), schema::unit_struct_header("Marker", 1));
    assert_eq!(e(&Marker)[0], tag::UNIT_STRUCT);
    assert_eq!(e(&Pt(1, 2))[0], tag::TUPLE_STRUCT);
    // A tuple struct is not the tuple it wraps.
    assert_ne!(e(&Pt(1, 2)), e(&(1i32, 2i32)));
}

#[derive(StableKey)]
enum Event {
    Ping,
    Move(i32, i32),
    Rename {
        from: String,
        to: String,
    },
    #[stable_key(name = "Legacy")]
    Old(u8),
}

#[test]
fn enum_layouts() {
    let h = |v, s| schema::variant_header("Event", 1, v, s);
    assert_eq!(e(&Event::Ping), h("Ping", VariantShape::Unit));
    assert_eq!(
        e(&Event::Move(1, 2)),
        [&h("Move", VariantShape::Tuple(2))[..], &e(&1i32), &e(&2i32)].concat()
    );
    assert_eq!(
        e(&Event::Rename { from: "a".into(), to: "b".into() }),
        [&h("Rename", VariantShape::Named(&["from", "to"]))[..], &e("a"), &e("b")].concat()
    );
    assert_eq!(e(&Event::Old(3)), [&h("Legacy", VariantShape::Tuple(1))[..], &e(&3u8)].concat());
    assert_eq!(e(&Event::Ping)[0], tag::ENUM);
    // Variants with the same field values differ.
    assert_ne!(e(&Event::Move(1, 2)), e(&Event::Old(1)));
}

// The same shape under another Rust name, renamed back: same keys.
mod renamed {
    use larder_key::StableKey;
    #[derive(StableKey)]
    #[stable_key(name = "LoanQuote")]
    pub struct QuoteRequest {
        pub user_id: u64,
        pub amount_won: u64,
        pub rate_bp: u32,
        pub term_months: u32,
    }

    #[derive(StableKey)]
    #[stable_key(name = "LoanQuote", version = 2)]
    pub struct QuoteV2 {
        pub user_id: u64,
        pub amount_won: u64,
        pub rate_bp: u32,
        pub term_months: u32,
    }

    #[derive(StableKey)]
    pub struct LoanQuote {
        pub user_id: u64,
        pub amount_won: u64,
        pub rate_bp: u32,
        pub term_months: u32,
    }

    /// Same field values, field order changed.
    #[derive(StableKey)]
    #[stable_key(name = "LoanQuote")]
    pub struct Reordered {
        pub amount_won: u64,
        pub user_id: u64,
        pub rate_bp: u32,
        pub term_months: u32,
    }
}

#[test]
fn name_and_version_attributes() {
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let original =
        space.key(&LoanQuote { user_id: 7, amount_won: 5, rate_bp: 450, term_months: 36 }).unwrap();
    let renamed = space
        .key(&renamed::QuoteRequest { user_id: 7, amount_won: 5, rate_bp: 450, term_months: 36 })
        .unwrap();
    assert_eq!(original, renamed, "name = \"LoanQuote\" keeps keys across a Rust rename");
    let other_module =
        space.key(&renamed::LoanQuote { user_id: 7, amount_won: 5, rate_bp: 450, term_months: 36 }).unwrap();
    assert_eq!(original, other_module, "the module path is not part of the key");
    let v2 =
        space.key(&renamed::QuoteV2 { user_id: 7, amount_won: 5, rate_bp: 450, term_months: 36 }).unwrap();
    assert_ne!(original, v2, "version = 2 changes every key");
    // Field names are in the schema: reordering fields changes the key even when the
    // values would line up.
    let swapped =
        space.key(&renamed::Reordered { amount_won: 7, user_id: 5, rate_bp: 450, term_months: 36 }).unwrap();
    assert_ne!(original, swapped);
}

fn email_norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn cents(won: &f64) -> i64 {
    (won * 100.0).round() as i64
}

#[derive(StableKey)]
struct Customer {
    #[stable_key(with = email_norm)]
    email: String,
    #[stable_key(with = cents)]
    balance: f64,
    #[stable_key(skip)]
    #[allow(dead_code)]
    last_seen_ms: u64,
}

#[test]
fn field_attributes_skip_and_with() {
    let a = Customer { email: "  Kim@Example.KR ".into(), balance: 10.004, last_seen_ms: 1 };
    let b = Customer { email: "kim@example.kr".into(), balance: 10.0, last_seen_ms: 999 };
    let c = Customer { email: "lee@example.kr".into(), balance: 10.0, last_seen_ms: 1 };
    let d = Customer { email: "kim@example.kr".into(), balance: 10.01, last_seen_ms: 1 };
    assert_eq!(e(&a), e(&b));
    assert_ne!(e(&a), e(&c));
    assert_ne!(e(&a), e(&d));
    // The normalized values are what is written, and the skipped field is not in the schema.
    let header = schema::struct_header("Customer", 1, &["email", "balance"]);
    assert_eq!(e(&b), [&header[..], &e("kim@example.kr"), &e(&1000i64)].concat());
}

#[derive(StableKey)]
struct Page<T, K: Ord> {
    items: Vec<T>,
    index: BTreeMap<K, u32>,
    #[stable_key(skip)]
    _marker: PhantomData<fn() -> K>,
}

#[derive(StableKey)]
enum Tree<T> {
    Leaf(T),
    Node(Box<Tree<T>>, Box<Tree<T>>),
}

fn blob_len(b: &&[u8]) -> usize {
    b.len()
}

#[derive(StableKey)]
struct Borrowed<'a> {
    name: &'a str,
    #[stable_key(with = blob_len)]
    blob: &'a [u8],
}

#[test]
fn generics_lifetimes_and_recursion() {
    let p =
        Page::<String, u8> { items: vec!["a".into()], index: BTreeMap::from([(1, 2)]), _marker: PhantomData };
    let header = schema::struct_header("Page", 1, &["items", "index"]);
    assert_eq!(e(&p), [&header[..], &e(&vec!["a".to_owned()]), &e(&BTreeMap::from([(1u8, 2u32)]))].concat());
    // The type parameters are not in the schema; the values' own tags tell them apart.
    let q = Page::<u8, u8> { items: vec![1], index: BTreeMap::new(), _marker: PhantomData };
    assert_ne!(e(&p), e(&q));
    let t = Tree::Node(Box::new(Tree::Leaf(1u8)), Box::new(Tree::Leaf(2u8)));
    let u = Tree::Node(
        Box::new(Tree::Leaf(1u8)),
        Box::new(Tree::Node(Box::new(Tree::Leaf(2)), Box::new(Tree::Leaf(3)))),
    );
    assert_ne!(e(&t), e(&u));
    let b = Borrowed { name: "x", blob: b"abc" };
    assert_eq!(
        e(&b),
        [&schema::struct_header("Borrowed", 1, &["name", "blob"])[..], &e("x"), &e(&3usize)].concat()
    );
}

#[derive(StableKey)]
#[allow(non_camel_case_types)]
struct r#type {
    r#match: u8,
}

#[derive(StableKey)]
enum Never {}

#[derive(StableKey)]
struct Empty {}

#[test]
fn raw_identifiers_and_empty_types() {
    // `r#` is not part of a name.
    assert_eq!(e(&r#type { r#match: 1 })[..17], schema::struct_header("type", 1, &["match"]));
    assert_eq!(e(&Empty {}), schema::struct_header("Empty", 1, &[]));
    fn takes<T: StableKey>() {}
    takes::<Never>();
}

#[test]
fn schema_ids_distinguish_kinds() {
    // The same name and version as a named struct with no fields, a tuple struct with no
    // fields, a unit struct and a unit variant: four different headers.
    let all = [
        schema::struct_header("X", 1, &[]),
        schema::tuple_struct_header("X", 1, 0),
        schema::unit_struct_header("X", 1),
        schema::variant_header("X", 1, "X", VariantShape::Unit),
        schema::variant_header("X", 1, "X", VariantShape::Tuple(0)),
        schema::variant_header("X", 1, "X", VariantShape::Named(&[])),
        schema::struct_header("X", 2, &[]),
        schema::struct_header("Y", 1, &[]),
        schema::struct_header("X", 1, &["a"]),
        schema::struct_header("X", 1, &["ab", "c"]),
        schema::struct_header("X", 1, &["a", "bc"]),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(
        schema::struct_schema("X", 1, &["a"]),
        [0x40, 1, 0, 0, 0, b'X', 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a']
    );
}
