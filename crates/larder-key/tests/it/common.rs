//! Fixtures shared by the test modules.

use larder_key::StableKey;

/// The seed's example type: its encoding is pinned by `docs/key-vectors.json`, and
/// `tests/facade_user` derives the same struct through the facade to compare keys.
#[derive(StableKey)]
pub struct LoanQuote {
    pub user_id: u64,
    pub amount_won: u64,
    pub rate_bp: u32,
    pub term_months: u32,
}
