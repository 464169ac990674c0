//! A Rust service in the same fleet as the Django example (`examples/django-loan`): it
//! memoizes the same loan quote under the same key space, in the same Redis, with the
//! language-neutral CBOR codec, so a quote computed by either side is a hit for the other, and
//! an invalidation from either side reaches the other's local tier.
//!
//! The Python side is `@larder.memoize(namespace="loan_calc", version=1)` on
//! `loan_quote(user_id, amount, rate, term)`: four ints ≥ 0 key as a tuple of four `u64`, and
//! the quote is a CBOR map with the field names of [`Quote`].
//!
//! Configured from `LARDER_CACHE` (e.g. `local:1000,redis://127.0.0.1:6379/0`) and
//! `LARDER_KEY_SECRET` like every larder process. Reads commands from stdin, one per line, and
//! answers each with one JSON line:
//!
//! ```text
//! quote USER AMOUNT RATE TERM       {"quote": {...}, "computed": true|false}
//! get USER AMOUNT RATE TERM         {"quote": {...}|null}
//! invalidate USER AMOUNT RATE TERM  {"ok": true}
//! ```
//!
//! What it deliberately does not do: serve HTTP. The point is the shared cache, not a
//! second web stack.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use larder_cache::{Cache, KeySpace, ValueCodec};
use serde::{Deserialize, Serialize};

/// The quote, field for field what `loan_site/formula.py` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Quote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u64,
    term_months: u64,
    monthly_payment_won: i64,
    total_interest_won: i64,
}

/// The formula of `loan_site/formula.py`, with the same float operations in the same order
/// (and Python's round-half-to-even), so both languages compute identical quotes.
fn quote(user_id: u64, amount: u64, rate: u64, term: u64) -> Quote {
    let monthly_rate = rate as f64 / 10_000.0 / 12.0;
    let payment = if monthly_rate == 0.0 {
        amount as f64 / term as f64
    } else {
        amount as f64 * monthly_rate / (1.0 - (1.0 + monthly_rate).powf(-(term as f64)))
    };
    let payment_won = payment.round_ties_even() as i64;
    Quote {
        user_id,
        amount_won: amount,
        rate_bp: rate,
        term_months: term,
        monthly_payment_won: payment_won,
        total_interest_won: payment_won * term as i64 - amount as i64,
    }
}

fn parse_args(words: &[&str]) -> Result<(u64, u64, u64, u64), String> {
    let nums: Result<Vec<u64>, _> = words.iter().map(|w| w.parse::<u64>()).collect();
    match nums.map_err(|e| e.to_string())?.as_slice() {
        &[u, a, r, t] if t > 0 => Ok((u, a, r, t)),
        _ => Err("expected USER AMOUNT RATE TERM (integers, TERM > 0)".into()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::var("LARDER_CACHE").unwrap_or_else(|_| "local".into());
    let mut builder = larder_cache::config::parse(&spec)?.value_codec(ValueCodec::Cbor);
    if let Some(secret) = larder_cache::KeySecret::from_env()? {
        builder = builder.secret(&secret);
    }
    let cache: Cache = builder.build()?;
    let mut space = KeySpace::new("loan_calc", 1)?;
    if let Some(secret) = larder_cache::KeySecret::from_env()? {
        space = space.with_secret(&secret);
    }
    let ttl = Duration::from_secs(600);
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, rest)) = words.split_first() else { continue };
        let reply = match (cmd, parse_args(rest)) {
            (_, Err(e)) => serde_json::json!({ "error": e }),
            ("quote", Ok(k)) => {
                let mut computed = false;
                let q: Quote = cache.get_or_compute_blocking(&space, &k, ttl, || {
                    computed = true;
                    quote(k.0, k.1, k.2, k.3)
                });
                serde_json::json!({ "quote": q, "computed": computed })
            }
            ("get", Ok(k)) => {
                let q: Option<Quote> = cache.get_blocking(&space, &k);
                serde_json::json!({ "quote": q })
            }
            ("invalidate", Ok(k)) => {
                cache.invalidate_blocking(&space, &k);
                serde_json::json!({ "ok": true })
            }
            (other, Ok(_)) => serde_json::json!({ "error": format!("unknown command {other}") }),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
