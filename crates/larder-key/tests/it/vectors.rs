//! Regenerates `docs/key-vectors.json` from Rust values and fails on any difference.
//!
//! A failure here means a key changed: every cache keyed by this format would miss after an
//! upgrade. That is a breaking change of the format, never a routine one. If it is truly
//! intended (a new vector, a documented format revision), rewrite the file with
//! `LARDER_BLESS=1 cargo test -p larder-key --all-features --test vectors` and say why in the
//! commit.
//!
//! Each vector gives the value (a description, the Rust expression, a typed JSON form, and for
//! JSON vectors the JSON value the CLI takes), the canonical encoding in hex, and the key text
//! under the default digest key and under the sample secret written at the top of the file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::common::LoanQuote;
use larder_key::schema::{self, VariantShape};
use larder_key::{encode, KeySecret, KeySpace, StableKey, DIGEST_KEY_CONTEXT};
use serde_json::{json, Value};

/// The sample secret of the vectors (hex). Not a real secret of anything.
const SAMPLE_SECRET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[derive(StableKey)]
#[stable_key(name = "LoanQuote", version = 2)]
struct LoanQuoteV2 {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(StableKey)]
struct Point(i32, i32);

#[derive(StableKey)]
struct Anonymous;

#[derive(StableKey)]
enum Shape {
    Empty,
    Circle(u32),
    Rect { w: u32, h: u32 },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Vector {
    name: &'static str,
    description: &'static str,
    rust: &'static str,
    /// A typed JSON form of the value: `{"<type>": value}`, recursively (see the file's
    /// `typed_form` note).
    typed: Value,
    /// For JSON values: the JSON the `larder key --json` command takes.
    json: Option<Value>,
    namespace: &'static str,
    version: u32,
    encoding: Vec<u8>,
    key_default: String,
    key_secret: String,
}

struct Builder {
    secret: KeySecret,
    out: Vec<Vector>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn add<T: StableKey + ?Sized>(
        &mut self,
        name: &'static str,
        description: &'static str,
        rust: &'static str,
        typed: Value,
        json: Option<Value>,
        namespace: &'static str,
        version: u32,
        value: &T,
    ) {
        let space = KeySpace::new_with_secret(namespace, version, &KeySecret::default_key()).unwrap();
        let encoding = encode(value).unwrap();
        let key_default = space.key(value).unwrap().as_str().to_owned();
        let key_secret = space.with_secret(&self.secret).key(value).unwrap().as_str().to_owned();
        assert_eq!(space.key_from_encoding(&encoding).as_str(), key_default);
        self.out.push(Vector {
            name,
            description,
            rust,
            typed,
            json,
            namespace,
            version,
            encoding,
            key_default,
            key_secret,
        });
    }

    fn v<T: StableKey + ?Sized>(
        &mut self,
        name: &'static str,
        description: &'static str,
        rust: &'static str,
        typed: Value,
        value: &T,
    ) {
        self.add(name, description, rust, typed, None, "vectors", 1, value);
    }

    fn j(&mut self, name: &'static str, description: &'static str, namespace: &'static str, v: Value) {
        self.add(name, description, "serde_json::Value", Value::Null, Some(v.clone()), namespace, 1, &v);
    }
}

fn build() -> Value {
    let mut b = Builder { secret: KeySecret::from_hex(SAMPLE_SECRET_HEX).unwrap(), out: Vec::new() };

    b.v("unit", "the unit value", "()", json!({"unit": null}), &());
    b.v("bool_true", "true", "true", json!({"bool": true}), &true);
    b.v("u8", "1 as u8", "1u8", json!({"u8": 1}), &1u8);
    b.v("u32", "1 as u32 (differs from u64)", "1u32", json!({"u32": 1}), &1u32);
    b.v("u64", "1 as u64", "1u64", json!({"u64": 1}), &1u64);
    b.v("usize", "1 as usize: written as u64", "1usize", json!({"u64": 1}), &1usize);
    b.v("u128_max", "u128::MAX", "u128::MAX", json!({"u128": u128::MAX.to_string()}), &u128::MAX);
    b.v("i16_neg", "-2 as i16 (two's complement)", "-2i16", json!({"i16": -2}), &-2i16);
    b.v("i64_min", "i64::MIN", "i64::MIN", json!({"i64": i64::MIN}), &i64::MIN);
    b.v("f64", "1.5 as f64", "1.5f64", json!({"f64": 1.5}), &1.5f64);
    b.v("f64_neg_zero", "-0.0 as f64: written as 0.0", "-0.0f64", json!({"f64": "-0.0"}), &-0.0f64);
    b.v("f32", "0.1 as f32", "0.1f32", json!({"f32": 0.1f32}), &0.1f32);
    b.v("char", "the char '한' (U+D55C)", "'한'", json!({"char": "한"}), &'한');
    b.v("str_empty", "the empty string", "\"\"", json!({"str": ""}), "");
    b.v("str", "a UTF-8 string", "\"héllo\"", json!({"str": "héllo"}), "héllo");
    b.v(
        "bytes",
        "bytes 00 ff 10 (Vec<u8>, [u8], [u8; N], VecDeque<u8> alike)",
        "vec![0u8, 0xff, 0x10]",
        json!({"bytes": "00ff10"}),
        &vec![0u8, 0xff, 0x10],
    );
    b.v("none", "None::<u32>", "None::<u32>", json!({"option": null}), &None::<u32>);
    b.v(
        "some_zero",
        "Some(0u32) (differs from 0u32)",
        "Some(0u32)",
        json!({"option": {"u32": 0}}),
        &Some(0u32),
    );
    b.v("ok", "Ok::<u8, String>(7)", "Ok::<u8, String>(7)", json!({"ok": {"u8": 7}}), &Ok::<u8, String>(7));
    b.v(
        "err",
        "Err::<u8, String>(\"no\")",
        "Err::<u8, String>(\"no\".into())",
        json!({"err": {"str": "no"}}),
        &Err::<u8, String>("no".into()),
    );
    b.v(
        "tuple_ab_c",
        "(\"ab\", \"c\")",
        "(\"ab\", \"c\")",
        json!({"tuple": [{"str": "ab"}, {"str": "c"}]}),
        &("ab", "c"),
    );
    b.v(
        "tuple_a_bc",
        "(\"a\", \"bc\") (differs from (\"ab\", \"c\"))",
        "(\"a\", \"bc\")",
        json!({"tuple": [{"str": "a"}, {"str": "bc"}]}),
        &("a", "bc"),
    );
    b.v(
        "seq_empty",
        "an empty Vec<Vec<u32>>",
        "Vec::<Vec<u32>>::new()",
        json!({"seq": []}),
        &Vec::<Vec<u32>>::new(),
    );
    b.v(
        "seq_of_empty",
        "vec![vec![]] (differs from vec![])",
        "vec![Vec::<u32>::new()]",
        json!({"seq": [{"seq": []}]}),
        &vec![Vec::<u32>::new()],
    );
    b.v(
        "seq_u32",
        "vec![1u32, 2, 3] (also [u32; 3], VecDeque)",
        "vec![1u32, 2, 3]",
        json!({"seq": [{"u32": 1}, {"u32": 2}, {"u32": 3}]}),
        &vec![1u32, 2, 3],
    );
    let set: HashSet<&str> = ["pear", "apple", "fig"].into_iter().collect();
    b.v(
        "set",
        "the set {\"pear\", \"apple\", \"fig\"} (HashSet or BTreeSet): sorted by encoding",
        "HashSet::from([\"pear\", \"apple\", \"fig\"])",
        json!({"set": [{"str": "pear"}, {"str": "apple"}, {"str": "fig"}]}),
        &set,
    );
    assert_eq!(
        encode(&set).unwrap(),
        encode(&["fig", "pear", "apple"].into_iter().collect::<BTreeSet<_>>()).unwrap()
    );
    let map: HashMap<&str, u32> = [("b", 2), ("a", 1), ("ccc", 3)].into_iter().collect();
    b.v("map", "the map {\"b\": 2u32, \"a\": 1u32, \"ccc\": 3u32} (HashMap or BTreeMap): sorted by key encoding", "HashMap::from([(\"b\", 2u32), (\"a\", 1), (\"ccc\", 3)])", json!({"map": [[{"str": "b"}, {"u32": 2}], [{"str": "a"}, {"u32": 1}], [{"str": "ccc"}, {"u32": 3}]]}), &map);
    assert_eq!(
        encode(&map).unwrap(),
        encode(&map.iter().map(|(k, v)| (*k, *v)).collect::<BTreeMap<_, _>>()).unwrap()
    );
    b.v(
        "duration",
        "1.5 seconds",
        "Duration::from_millis(1500)",
        json!({"duration": {"secs": 1, "nanos": 500_000_000}}),
        &Duration::from_millis(1500),
    );
    b.v(
        "ipv4",
        "10.0.0.1 (IpAddr::V4 alike)",
        "Ipv4Addr::new(10, 0, 0, 1)",
        json!({"ipv4": "10.0.0.1"}),
        &IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    );
    b.v("ipv6", "::1", "Ipv6Addr::LOCALHOST", json!({"ipv6": "::1"}), &Ipv6Addr::LOCALHOST);

    let quote = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let quote_typed = json!({"struct": {"name": "LoanQuote", "version": 1, "fields": [
        ["user_id", {"u64": 7}], ["amount_won", {"u64": 5_000_000}], ["rate_bp", {"u32": 450}], ["term_months", {"u32": 36}]]}});
    b.add("derive_loan_quote", "#[derive(StableKey)] struct LoanQuote { user_id: u64, amount_won: u64, rate_bp: u32, term_months: u32 }", "LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 }", quote_typed, None, "loan_calc", 1, &quote);
    let v2 = LoanQuoteV2 { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let v2_typed = json!({"struct": {"name": "LoanQuote", "version": 2, "fields": [
        ["user_id", {"u64": 7}], ["amount_won", {"u64": 5_000_000}], ["rate_bp", {"u32": 450}], ["term_months", {"u32": 36}]]}});
    b.add(
        "derive_loan_quote_v2",
        "the same with #[stable_key(name = \"LoanQuote\", version = 2)]: a new schema version, new keys",
        "LoanQuoteV2 { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 }",
        v2_typed,
        None,
        "loan_calc",
        1,
        &v2,
    );
    b.v(
        "derive_tuple_struct",
        "#[derive(StableKey)] struct Point(i32, i32)",
        "Point(3, -4)",
        json!({"tuple_struct": {"name": "Point", "version": 1, "fields": [{"i32": 3}, {"i32": -4}]}}),
        &Point(3, -4),
    );
    b.v(
        "derive_unit_struct",
        "#[derive(StableKey)] struct Anonymous;",
        "Anonymous",
        json!({"unit_struct": {"name": "Anonymous", "version": 1}}),
        &Anonymous,
    );
    b.v(
        "derive_enum_unit",
        "#[derive(StableKey)] enum Shape { Empty, Circle(u32), Rect { w: u32, h: u32 } }: Empty",
        "Shape::Empty",
        json!({"variant": {"name": "Shape", "version": 1, "variant": "Empty", "shape": "unit"}}),
        &Shape::Empty,
    );
    b.v("derive_enum_tuple", "Shape::Circle(5)", "Shape::Circle(5)", json!({"variant": {"name": "Shape", "version": 1, "variant": "Circle", "shape": "tuple", "fields": [{"u32": 5}]}}), &Shape::Circle(5));
    b.v("derive_enum_named", "Shape::Rect { w: 2, h: 3 }", "Shape::Rect { w: 2, h: 3 }", json!({"variant": {"name": "Shape", "version": 1, "variant": "Rect", "shape": "named", "fields": [["w", {"u32": 2}], ["h", {"u32": 3}]]}}), &Shape::Rect { w: 2, h: 3 });

    b.j("json_loan_calc", "the JSON object of `larder key --namespace loan_calc --version 1 --json '{\"user_id\":7,\"amount_won\":5000000}'`", "loan_calc", json!({"user_id": 7, "amount_won": 5_000_000}));
    b.j("json_mixed", "a JSON document with every JSON type (null, bool, negative, float, string, array, nested object)", "vectors", json!({"z": null, "ok": true, "n": -3, "x": 0.25, "s": "한글", "a": [1, "1", [], {}], "o": {"k": [false]}}));

    let schemas = [
        (
            "LoanQuote v1",
            schema::struct_schema("LoanQuote", 1, &["user_id", "amount_won", "rate_bp", "term_months"]),
            schema::struct_header("LoanQuote", 1, &["user_id", "amount_won", "rate_bp", "term_months"]),
        ),
        (
            "Point v1 (tuple struct, 2 fields)",
            schema::tuple_struct_schema("Point", 1, 2),
            schema::tuple_struct_header("Point", 1, 2),
        ),
        (
            "Anonymous v1 (unit struct)",
            schema::unit_struct_schema("Anonymous", 1),
            schema::unit_struct_header("Anonymous", 1),
        ),
        (
            "Shape v1 variant Rect { w, h }",
            schema::variant_schema("Shape", 1, "Rect", VariantShape::Named(&["w", "h"])),
            schema::variant_header("Shape", 1, "Rect", VariantShape::Named(&["w", "h"])),
        ),
    ];

    let default_key = blake3::derive_key(DIGEST_KEY_CONTEXT, b"");
    let secret_bytes: Vec<u8> = (0u8..32).collect();
    let secret_key = blake3::derive_key(DIGEST_KEY_CONTEXT, &secret_bytes);

    json!({
        "about": "Test vectors of the larder cache key format (docs/key-format.md). Generated by crates/larder-key/tests/it/vectors.rs; a change here is a breaking change of every key.",
        "digest": {
            "algorithm": "keyed BLAKE3 over the encoding, first 20 bytes, RFC 4648 base32 lowercase without padding",
            "key_derivation": "digest key = BLAKE3 derive_key(context, secret bytes); the default key uses the empty secret",
            "context": DIGEST_KEY_CONTEXT,
            "default_digest_key_hex": hex(&default_key),
            "sample_secret_hex": SAMPLE_SECRET_HEX,
            "sample_secret_digest_key_hex": hex(&secret_key),
            "key_text": "{namespace}:v{version}:{base32 digest}",
        },
        "schema_ids": {
            "about": "derived types: header = kind tag byte, then the first 16 bytes of BLAKE3 derive_key(context, schema bytes)",
            "context": schema::SCHEMA_ID_CONTEXT,
            "examples": schemas.iter().map(|(d, s, h)| json!({"description": d, "schema_hex": hex(s), "header_hex": hex(h)})).collect::<Vec<_>>(),
        },
        "typed_form": "each vector's `typed` is {\"<kind>\": value}: integers as JSON numbers (u128 as a decimal string), f64 -0.0 as the string \"-0.0\", bytes as hex, tuple/seq/set as arrays, map as [key, value] pairs in insertion order (the encoder sorts), struct fields as [name, value] pairs",
        "vectors": b.out.iter().map(|v| json!({
            "name": v.name,
            "description": v.description,
            "rust": v.rust,
            "typed": v.typed,
            "json": v.json,
            "namespace": v.namespace,
            "version": v.version,
            "encoding_hex": hex(&v.encoding),
            "key_default": v.key_default,
            "key_sample_secret": v.key_secret,
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn vectors_match_the_checked_in_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/key-vectors.json");
    let generated = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    if std::env::var("LARDER_BLESS").as_deref() == Ok("1") {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("cannot read {path}: {e}; generate it with LARDER_BLESS=1 cargo test -p larder-key --all-features --test vectors")
    });
    if on_disk != generated {
        let disk: Value = serde_json::from_str(&on_disk).expect("docs/key-vectors.json is not JSON");
        let gen: Value = serde_json::from_str(&generated).unwrap();
        let empty = vec![];
        let dv = disk["vectors"].as_array().unwrap_or(&empty);
        let gv = gen["vectors"].as_array().unwrap_or(&empty);
        let mut diffs = Vec::new();
        for g in gv {
            match dv.iter().find(|d| d["name"] == g["name"]) {
                None => diffs.push(format!("new vector {}", g["name"])),
                Some(d) if d != g => {
                    diffs.push(format!("vector {} changed:\n  file: {d}\n  now:  {g}", g["name"]))
                }
                Some(_) => {}
            }
        }
        for d in dv {
            if !gv.iter().any(|g| g["name"] == d["name"]) {
                diffs.push(format!("vector {} disappeared", d["name"]));
            }
        }
        if disk["digest"] != gen["digest"] || disk["schema_ids"] != gen["schema_ids"] {
            diffs.push("the digest or schema id section changed".into());
        }
        panic!(
            "keys changed — every deployed cache would miss. {} difference(s):\n{}\n(only if intended: LARDER_BLESS=1)",
            diffs.len().max(1),
            diffs.join("\n")
        );
    }
}

/// The sample secret's hex in the file is what `KeySecret::from_hex` reads, and
/// `LARDER_KEY_SECRET` of the CLI takes the same form.
#[test]
fn sample_secret_is_the_32_bytes_0_to_31() {
    let from_hex = KeySecret::from_hex(SAMPLE_SECRET_HEX).unwrap();
    let from_bytes = KeySecret::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    let space = KeySpace::new("vectors", 1).unwrap();
    assert_eq!(
        space.with_secret(&from_hex).key(&1u8).unwrap(),
        space.with_secret(&from_bytes).key(&1u8).unwrap()
    );
}
