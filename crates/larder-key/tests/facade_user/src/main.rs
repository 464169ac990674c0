//! Derives `StableKey` through `larder` alone and prints two keys.
use larder::StableKey;

#[derive(StableKey)]
struct LoanQuote {
    user_id: u64,
    amount_won: u64,
    rate_bp: u32,
    term_months: u32,
}

#[derive(larder::StableKey)]
enum Tier {
    Basic,
    Premium { level: u8 },
}

fn main() {
    let space = larder::KeySpace::new("loan_calc", 1).expect("valid namespace");
    let q = LoanQuote { user_id: 7, amount_won: 5_000_000, rate_bp: 450, term_months: 36 };
    println!("{}", space.key(&q).expect("small value"));
    println!("{}", space.key(&(Tier::Basic, Tier::Premium { level: 2 })).expect("small value"));
}
