//! `#[derive(larder::StableKey)]` through the facade alone: this crate's tests see `larder`
//! but the derive must not need the user to depend on `larder-key` directly. (The facade
//! itself depends on `larder-key`, so the derive's path resolution is also checked by
//! larder-key's own tests; this test pins the facade's re-export and the resulting bytes.)

use larder::key::{encode, KeySpace};
use larder::StableKey;

#[derive(StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(StableKey)]
#[stable_key(crate = "::larder::key")]
enum Tier {
    Basic,
    Premium { level: u8 },
}

#[test]
fn derive_through_the_facade_encodes_like_larder_key() {
    let q = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    let space = KeySpace::new("loan_calc", 1).unwrap();
    let key = space.key(&q).unwrap();
    assert!(key.as_str().starts_with("loan_calc:v1:"));
    // The STRUCT header (tag and schema id of "LoanQuote" v1 with its four field names),
    // then the values, 7u64 first.
    let bytes = encode(&q).unwrap();
    let header = larder::key::schema::struct_header(
        "LoanQuote",
        1,
        &["user_id", "amount_won", "rate_bp", "term_months"],
    );
    assert_eq!(&bytes[..17], &header);
    assert_eq!(&bytes[17..26], &[0x05, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes.len(), 17 + 9 + 9 + 5 + 5);
    assert_ne!(encode(&Tier::Basic).unwrap(), encode(&Tier::Premium { level: 0 }).unwrap());
}
