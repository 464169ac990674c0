//! Explicit cases of the encoding's promises: injectivity near-misses, representation
//! independence (hash-collection order, byte containers, word size), exact byte layouts,
//! optional-crate types and bad input.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use larder_key::{encode, encode_with_limit, tag, KeyError, KeySecret, KeySpace, StableKey};

fn e<T: StableKey + ?Sized>(v: &T) -> Vec<u8> {
    encode(v).unwrap()
}

#[test]
fn strings_in_tuples_do_not_run_together() {
    assert_ne!(e(&("ab", "c")), e(&("a", "bc")));
    assert_ne!(e(&("", "abc")), e(&("abc", "")));
    assert_ne!(e(&vec!["ab".to_owned(), "c".to_owned()]), e(&vec!["a".to_owned(), "bc".to_owned()]));
    assert_ne!(e(&(&b"ab"[..], &b"c"[..])), e(&(&b"a"[..], &b"bc"[..])));
}

#[test]
fn option_is_not_its_content() {
    assert_ne!(e(&Some(0u32)), e(&0u32));
    assert_ne!(e(&Some(Some(0u32))), e(&Some(0u32)));
    assert_ne!(e(&None::<u32>), e(&Some(None::<u32>)));
    assert_ne!(e(&None::<u32>), e(&()));
    assert_ne!(e(&Ok::<u8, u8>(1)), e(&Err::<u8, u8>(1)));
    assert_ne!(e(&Ok::<u8, u8>(1)), e(&Some(1u8)));
}

#[test]
fn nesting_depth_is_visible() {
    assert_ne!(e(&Vec::<Vec<u8>>::new()), e(&vec![Vec::<u8>::new()]));
    assert_ne!(e(&Vec::<u32>::new()), e(&vec![Vec::<u32>::new()]));
    assert_ne!(e(&vec![vec![1u32], vec![2]]), e(&vec![vec![1u32, 2]]));
    assert_ne!(e(&((1u8, 2u8), 3u8)), e(&(1u8, (2u8, 3u8))));
    assert_ne!(e(&(1u8, 2u8)), e(&[1u8, 2u8]));
    assert_ne!(e(&(1u32, 2u32)), e(&vec![1u32, 2]));
}

#[test]
fn integer_widths_and_signs_differ() {
    let all = [
        e(&1u8),
        e(&1u16),
        e(&1u32),
        e(&1u64),
        e(&1u128),
        e(&1i8),
        e(&1i16),
        e(&1i32),
        e(&1i64),
        e(&1i128),
        e(&true),
        e(&'\u{1}'),
        e(&1.0f32),
        e(&1.0f64),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_ne!(e(&1u32), e(&1u64));
    assert_eq!(e(&1u32), [tag::U32, 1, 0, 0, 0]);
    assert_eq!(e(&-2i16), [tag::I16, 0xfe, 0xff]);
}

#[test]
fn usize_and_isize_are_64_bit() {
    assert_eq!(e(&7usize), e(&7u64));
    assert_eq!(e(&-7isize), e(&-7i64));
    assert_eq!(e(&usize::MAX), e(&(usize::MAX as u64)));
    assert_eq!(e(&vec![1usize, 2]), e(&vec![1u64, 2]));
}

#[test]
fn byte_containers_encode_alike() {
    let v: Vec<u8> = vec![1, 2, 3, 250];
    let expected = [tag::BYTES, 4, 0, 0, 0, 1, 2, 3, 250];
    assert_eq!(e(&v), expected);
    assert_eq!(e(&v[..]), expected);
    assert_eq!(e(&[1u8, 2, 3, 250]), expected);
    assert_eq!(e(&Box::<[u8]>::from(&v[..])), expected);
    // A VecDeque whose ring buffer wraps around (two slices) still writes one byte string.
    let mut d: VecDeque<u8> = VecDeque::with_capacity(4);
    d.extend([9, 9, 1, 2]);
    d.pop_front();
    d.pop_front();
    d.push_back(3);
    d.push_back(250);
    assert_eq!(d.as_slices().1.len(), 2, "the deque should wrap for this test");
    assert_eq!(e(&d), expected);
    // Bytes are not a sequence of u8 values, nor a string.
    assert_ne!(e(&v), e(&v.iter().map(|&b| b as u16).collect::<Vec<_>>()));
    assert_ne!(e(&b"abc"[..]), e("abc"));
}

#[test]
fn sequences_of_any_container_encode_alike() {
    let v = vec![1u32, 2, 3];
    let d: VecDeque<u32> = v.iter().copied().collect();
    assert_eq!(e(&v), e(&d));
    assert_eq!(e(&v), e(&v[..]));
    assert_eq!(e(&v), e(&[1u32, 2, 3]));
    assert_eq!(
        e(&v),
        [tag::SEQ, 3, 0, 0, 0, tag::U32, 1, 0, 0, 0, tag::U32, 2, 0, 0, 0, tag::U32, 3, 0, 0, 0]
    );
}

#[test]
fn smart_pointers_and_references_are_transparent() {
    let s = "héllo".to_owned();
    let expected = e(&s);
    assert_eq!(e(&&s), expected);
    assert_eq!(e(&Box::new(s.clone())), expected);
    assert_eq!(e(&Rc::new(s.clone())), expected);
    assert_eq!(e(&Arc::<str>::from(s.as_str())), expected);
    assert_eq!(e(&std::borrow::Cow::Borrowed(s.as_str())), expected);
    assert_eq!(expected, [&[tag::STR, 6, 0, 0, 0][..], "héllo".as_bytes()].concat());
}

/// Builds `n` values into hash collections in different orders with different `RandomState`s.
#[test]
fn hash_collections_do_not_leak_order() {
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let mut set_a: HashSet<String, RandomState> = HashSet::with_hasher(RandomState::new());
    let mut set_b: HashSet<String, RandomState> = HashSet::with_hasher(RandomState::new());
    let mut map_a: HashMap<String, u32, RandomState> = HashMap::with_hasher(RandomState::new());
    let mut map_b: HashMap<String, u32, RandomState> = HashMap::with_hasher(RandomState::new());
    for (i, k) in keys.iter().enumerate() {
        set_a.insert(k.clone());
        map_a.insert(k.clone(), i as u32);
    }
    for (i, k) in keys.iter().enumerate().rev() {
        set_b.insert(k.clone());
        map_b.insert(k.clone(), i as u32);
    }
    // The precondition that makes this test meaningful: the two iterate differently.
    assert_ne!(set_a.iter().collect::<Vec<_>>(), set_b.iter().collect::<Vec<_>>());
    assert_eq!(e(&set_a), e(&set_b));
    assert_eq!(e(&map_a), e(&map_b));
    // And equal to the ordered collections.
    assert_eq!(e(&set_a), e(&keys.iter().cloned().collect::<BTreeSet<_>>()));
    let btree: BTreeMap<String, u32> = map_a.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(e(&map_a), e(&btree));
    // A different value changes the map's encoding.
    map_b.insert("k7".into(), 999);
    assert_ne!(e(&map_a), e(&map_b));
    // Sets and maps and sequences are distinct.
    let seq: Vec<String> = btree.keys().cloned().collect();
    assert_ne!(e(&set_a), e(&seq));
    assert_ne!(e(&BTreeMap::<u8, u8>::new()), e(&BTreeSet::<u8>::new()));
}

#[test]
fn hash_set_of_hash_sets() {
    let build = |order: &[u32]| {
        let mut outer: HashSet<Vec<u32>, RandomState> = HashSet::with_hasher(RandomState::new());
        for &i in order {
            outer.insert(vec![i, i + 1]);
        }
        outer
    };
    assert_eq!(e(&build(&[1, 2, 3, 4, 5])), e(&build(&[5, 3, 1, 4, 2])));
    let s = RandomState::new();
    assert_ne!(s.hash_one(1u8), RandomState::new().hash_one(1u8), "RandomState is seeded per instance");
}

#[test]
fn floats() {
    assert_eq!(e(&-0.0f64), e(&0.0f64));
    assert_eq!(e(&-0.0f32), e(&0.0f32));
    assert_eq!(e(&1.5f64), [&[tag::F64][..], &1.5f64.to_bits().to_le_bytes()].concat());
    assert_ne!(e(&1.0f64), e(&1.0f32));
    assert_ne!(e(&f64::INFINITY), e(&f64::NEG_INFINITY));
    assert_ne!(e(&f64::MIN_POSITIVE), e(&0.0f64));
    for nan in [f64::NAN, -f64::NAN, f64::from_bits(0x7ff0_0000_0000_0001)] {
        assert_eq!(encode(&nan).unwrap_err(), KeyError::NaN);
        assert_eq!(encode(&vec![Some(nan)]).unwrap_err(), KeyError::NaN);
    }
    let mut m = BTreeMap::new();
    m.insert(1u8, f32::NAN);
    assert_eq!(encode(&m).unwrap_err(), KeyError::NaN);
    let err = KeySpace::new("f", 1).unwrap().key(&(1u8, f64::NAN)).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn std_value_types() {
    assert_eq!(e(&Duration::new(3, 7)), [tag::DURATION, 3, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]);
    assert_ne!(e(&Duration::from_secs(1)), e(&Duration::from_millis(1)));
    let v4 = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(e(&v4), [tag::IPV4, 10, 0, 0, 1]);
    assert_eq!(e(&IpAddr::V4(v4)), e(&v4));
    let mapped = v4.to_ipv6_mapped();
    assert_ne!(e(&IpAddr::V6(mapped)), e(&IpAddr::V4(v4)));
    assert_eq!(e(&Ipv6Addr::LOCALHOST)[0], tag::IPV6);
    assert_eq!(e(&'한'), [tag::CHAR, 0x5c, 0xd5, 0, 0]);
    assert_eq!(e(&()), [tag::UNIT]);
    assert_eq!(e(&(1u8,)), [tag::TUPLE, 1, tag::U8, 1]);
    let twelve = (1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8);
    assert_eq!(e(&twelve)[..2], [tag::TUPLE, 12]);
}

#[test]
fn oversized_values_are_refused_not_hashed() {
    let space = KeySpace::new("big", 1).unwrap();
    let big = vec![0u8; 70 * 1024];
    let err = space.key(&big).unwrap_err();
    assert_eq!(err, KeyError::TooLarge { limit: 64 * 1024 });
    assert!(err.to_string().contains("65536 bytes"), "{err}");
    // Exactly at the limit is fine; one byte over is not.
    let at = 64 * 1024 - 5;
    assert!(space.key(&vec![0u8; at]).is_ok());
    assert_eq!(space.key(&vec![0u8; at + 1]).unwrap_err(), KeyError::TooLarge { limit: 64 * 1024 });
    // Inside sets and maps (encoded into side buffers) too.
    let set: HashSet<Vec<u8>> = (0..100u8).map(|i| vec![i; 1000]).collect();
    assert_eq!(space.key(&set).unwrap_err(), KeyError::TooLarge { limit: 64 * 1024 });
    let map: HashMap<u8, Vec<u8>> = (0..100u8).map(|i| (i, vec![i; 1000])).collect();
    assert_eq!(space.key(&map).unwrap_err(), KeyError::TooLarge { limit: 64 * 1024 });
    // A huge zero-sized sequence costs nothing and is refused quickly.
    let units = vec![(); 1 << 40];
    assert_eq!(space.key(&units).unwrap_err(), KeyError::LengthOverflow);
    let units = vec![(); 1 << 20];
    assert_eq!(space.key(&units).unwrap_err(), KeyError::TooLarge { limit: 64 * 1024 });
    // A limit of zero refuses everything, including `()`.
    assert!(encode_with_limit(&(), 0).is_err());
    assert_eq!(encode_with_limit(&(), 1).unwrap(), [tag::UNIT]);
    // The limit can be raised.
    assert!(space.with_max_encoded_len(1 << 20).key(&big).is_ok());
}

#[test]
fn namespace_errors_name_the_problem() {
    let cases: [(&str, &str); 6] = [
        ("", "empty"),
        (&"a".repeat(65), "longer than 64"),
        ("Loan", "lowercase"),
        ("loan calc", "lowercase"),
        ("loan:calc", "lowercase"),
        ("loan/calc", "lowercase"),
    ];
    for (ns, words) in cases {
        let err = KeySpace::new(ns, 1).unwrap_err();
        let KeyError::InvalidNamespace { namespace, reason } = &err else { panic!("{err:?}") };
        assert_eq!(namespace, ns);
        assert!(reason.contains(words), "{ns:?}: {reason}");
        assert!(err.to_string().contains("invalid key namespace"), "{err}");
    }
}

#[test]
fn key_text_layout_and_length() {
    let space = KeySpace::new(&"n".repeat(64), u32::MAX).unwrap();
    let key = space.key(&"x").unwrap();
    let text = key.as_str();
    assert!(text.len() <= 250, "Memcached's limit");
    assert_eq!(text.len(), 64 + ":v4294967295:".len() + 32);
    assert!(text.bytes().all(|b| b.is_ascii_graphic()));
    let digest = &text[key.prefix().len()..];
    assert!(digest.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{digest}");
    assert_eq!(key.to_string(), text);
    assert_eq!(format!("{key:?}"), format!("CacheKey({text})"));
    // The namespace and version are in the text, not in the digest: the same value in two
    // spaces shares its digest (so one cache may hold several versions side by side).
    let other = KeySpace::new("other", 2).unwrap().key(&"x").unwrap();
    assert_eq!(other.digest(), key.digest());
    assert_ne!(other.as_str(), key.as_str());
}

#[test]
fn secrets() {
    let space = KeySpace::new("s", 1).unwrap();
    let a = KeySecret::from_hex(&"01".repeat(32)).unwrap();
    let b = KeySecret::from_hex(&"02".repeat(32)).unwrap();
    let ka = space.with_secret(&a).key(&1u8).unwrap();
    let kb = space.with_secret(&b).key(&1u8).unwrap();
    assert_ne!(ka, kb);
    assert_eq!(ka, space.with_secret(&KeySecret::from_hex(&"01".repeat(32)).unwrap()).key(&1u8).unwrap());
    assert_eq!(space.key(&1u8).unwrap(), space.with_secret(&KeySecret::default_key()).key(&1u8).unwrap());
    for bad in ["", "0", "zz".repeat(16).as_str(), &"01".repeat(7)] {
        let err = KeySecret::from_hex(bad).map(|_| ()).unwrap_err();
        assert!(matches!(err, KeyError::InvalidSecret(_)), "{bad:?}");
        assert!(err.to_string().starts_with("invalid key secret"), "{err}");
    }
    assert!(format!("{:?}", space.with_secret(&a)).contains("namespace"));
    assert!(!format!("{:?}", space.with_secret(&a)).contains("01010101"));
}

/// A key made while the thread's locals are being torn down (from a `Drop` of another
/// thread-local) must not panic: the scratch buffer is gone by then.
#[test]
fn key_from_a_thread_local_destructor() {
    struct MakesKeyOnDrop(std::sync::mpsc::Sender<Result<String, KeyError>>);
    impl Drop for MakesKeyOnDrop {
        fn drop(&mut self) {
            let space = KeySpace::new("tls", 1).unwrap();
            let _ = self.0.send(space.key(&"late").map(|k| k.as_str().to_owned()));
        }
    }
    thread_local! {
        static GUARD: std::cell::RefCell<Option<MakesKeyOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Register the guard first and the key scratch buffer second: thread-local
        // destructors run in reverse order of registration, so the scratch buffer is already
        // gone when the guard's `drop` makes its key.
        GUARD.with(|g| *g.borrow_mut() = Some(MakesKeyOnDrop(tx)));
        KeySpace::new("tls", 1).unwrap().key(&"early").unwrap();
    })
    .join()
    .expect("thread must not panic");
    let late = rx.recv().unwrap().unwrap();
    assert_eq!(late, KeySpace::new("tls", 1).unwrap().key(&"late").unwrap().as_str());
}

/// A `StableKey` impl that itself makes a key (re-entrancy) gets a fresh buffer.
#[test]
fn reentrant_key() {
    struct Inner(u32);
    impl StableKey for Inner {
        fn encode(&self, enc: &mut larder_key::Encoder) {
            let nested = KeySpace::new("inner", 1).unwrap().key(&self.0).unwrap();
            enc.str(nested.as_str());
        }
    }
    let space = KeySpace::new("outer", 1).unwrap();
    let k = space.key(&(1u8, Inner(5))).unwrap();
    let expected_inner = KeySpace::new("inner", 1).unwrap().key(&5u32).unwrap();
    assert_eq!(k, space.key(&(1u8, expected_inner.as_str())).unwrap());
}

#[cfg(feature = "serde_json")]
#[test]
fn json_values() {
    use serde_json::json;
    let a = json!({"user_id": 7, "amount_won": 5000000});
    let b: serde_json::Value = serde_json::from_str(r#"{"amount_won":5000000,"user_id":7}"#).unwrap();
    assert_eq!(e(&a), e(&b));
    let mut expected = BTreeMap::new();
    expected.insert("amount_won", 5_000_000u64);
    expected.insert("user_id", 7u64);
    assert_eq!(e(&a), e(&expected));
    assert_eq!(e(&json!(null)), e(&()));
    assert_eq!(e(&json!(-3)), e(&-3i64));
    assert_eq!(e(&json!(1.5)), e(&1.5f64));
    assert_ne!(e(&json!(1)), e(&json!(1.0)));
    assert_ne!(e(&json!("1")), e(&json!(1)));
    assert_eq!(e(&json!([1, "a"])), e(&vec![json!(1), json!("a")]));
    assert_ne!(e(&json!([])), e(&json!({})));
}

#[cfg(feature = "uuid")]
#[test]
fn uuids() {
    let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    assert_eq!(e(&u), [&[tag::UUID][..], u.as_bytes()].concat());
    assert_ne!(e(&u), e(&u.as_bytes()[..]));
}

#[cfg(feature = "chrono")]
#[test]
fn chrono_types() {
    use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
    let utc = Utc.with_ymd_and_hms(2026, 11, 23, 1, 2, 3).unwrap();
    let seoul = FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, 23, 10, 2, 3).unwrap();
    assert_eq!(e(&utc), e(&seoul), "one instant, two zones");
    assert_ne!(e(&utc), e(&utc.naive_utc()), "naive date-times are not instants");
    let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    assert_eq!(e(&d), [tag::DATE, 0xea, 0x07, 0, 0, 11, 23]);
    #[cfg(feature = "time")]
    {
        let t = time::OffsetDateTime::from_unix_timestamp(utc.timestamp()).unwrap();
        assert_eq!(e(&t), e(&utc), "chrono and time agree on instants");
        let td = time::Date::from_calendar_date(2026, time::Month::November, 23).unwrap();
        assert_eq!(e(&td), e(&d));
        assert_eq!(
            e(&time::PrimitiveDateTime::new(td, time::Time::MIDNIGHT)),
            e(&d.and_hms_opt(0, 0, 0).unwrap())
        );
    }
}

#[cfg(feature = "rust_decimal")]
#[test]
fn decimals() {
    use rust_decimal::Decimal;
    use std::str::FromStr;
    let a = Decimal::from_str("1.50").unwrap();
    let b = Decimal::from_str("1.5").unwrap();
    assert_eq!(a, b);
    assert_eq!(e(&a), e(&b));
    assert_ne!(e(&a), e(&Decimal::from_str("-1.5").unwrap()));
    assert_eq!(e(&Decimal::from_str("-0.0").unwrap()), e(&Decimal::ZERO));
    assert_ne!(e(&Decimal::from_str("15").unwrap()), e(&b));
}

/// Many threads share one `KeySpace` (an `Arc` inside) and each uses its own scratch buffer:
/// every thread computes exactly the keys one thread computes alone.
#[test]
fn many_threads_agree() {
    let space =
        KeySpace::new("threads", 1).unwrap().with_secret(&KeySecret::from_hex(&"07".repeat(32)).unwrap());
    let values: Vec<(u64, String, Vec<u8>)> =
        (0..500u64).map(|i| (i, format!("user-{i}"), vec![i as u8; (i % 40) as usize])).collect();
    let expected: Vec<String> = values.iter().map(|v| space.key(v).unwrap().to_string()).collect();
    std::thread::scope(|s| {
        for t in 0..16 {
            let (space, values, expected) = (&space, &values, &expected);
            s.spawn(move || {
                for round in 0..4 {
                    // Each thread walks the values in its own order.
                    for k in 0..values.len() {
                        let i = (k * (2 * t + 1) + round * 7) % values.len();
                        assert_eq!(space.key(&values[i]).unwrap().as_str(), expected[i]);
                    }
                }
            });
        }
    });
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KeySpace>();
    assert_send_sync::<larder_key::CacheKey>();
}
