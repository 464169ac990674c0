//! A Rust service's side of the cross-language cache test (`tests/python/test_values_interop.py`):
//! reads or writes the memoized value of `quote(LoanQuote { .. })` in a shared store, with the
//! CBOR codec, exactly as `#[memoize(namespace = "loan_calc", version = 1)]` keys it.
//!
//! ```text
//! cargo run -p larder-cache --features cbor --example cbor_peer -- URL get USER AMOUNT RATE TERM
//! cargo run -p larder-cache --features cbor --example cbor_peer -- URL set USER AMOUNT RATE TERM MONTHLY CURRENCY
//! ```
//! `get` prints the value as JSON (`{"monthly_won":..,"currency":".."}`) or `miss`.

use std::time::Duration;

use larder_cache::{KeySpace, StableKey, ValueCodec};
use serde::{Deserialize, Serialize};

#[derive(StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Quote {
    monthly_won: u64,
    currency: String,
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 6 {
        eprintln!("usage: cbor_peer URL get|set USER AMOUNT RATE TERM [MONTHLY CURRENCY]");
        std::process::exit(2);
    }
    let n = |i: usize| -> u64 { a[i].parse().unwrap_or_else(|_| panic!("argument {i} must be a number")) };
    let q = LoanQuote { user_id: n(2), amount_won: n(3), rate_bp: n(4) as u32, term_months: n(5) as u32 };
    let cache = match larder_cache::config::parse(&a[0]).and_then(|b| b.value_codec(ValueCodec::Cbor).build())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cbor_peer: {e}");
            std::process::exit(1);
        }
    };
    let mut space = KeySpace::new("loan_calc", 1).expect("namespace");
    if let Ok(Some(s)) = larder_cache::KeySecret::from_env() {
        space = space.with_secret(&s);
    }
    match a[1].as_str() {
        "get" => match cache.get_blocking::<_, Quote>(&space, &q) {
            Some(v) => println!("{{\"monthly_won\":{},\"currency\":{:?}}}", v.monthly_won, v.currency),
            None => println!("miss"),
        },
        "set" if a.len() == 8 => {
            let v = Quote { monthly_won: n(6), currency: a[7].clone() };
            cache.set_blocking(&space, &q, v, Duration::from_secs(600));
            println!("ok");
        }
        _ => {
            eprintln!("usage: cbor_peer URL get|set USER AMOUNT RATE TERM [MONTHLY CURRENCY]");
            std::process::exit(2);
        }
    }
}
