//! Blind index on a real PostgreSQL (started by the test in a temp dir): a table of 20,000
//! encrypted phone numbers with a 12-bit blind-index column and a btree index. The customer's
//! rows are found through the index (the planner uses it), false positives are removed by
//! decrypting, and the result equals a full decrypt scan. The 1,000,000-row timing is the
//! benchmark `benches/blind_index_pg.rs` (docs/benchmarks.md).

use crate::pg_phones;

use larder_testkit::postgres::PgServer;
use pg_phones::{TARGET, TARGET_SPELLINGS};

#[test]
fn finds_a_customer_through_the_blind_index_and_drops_false_positives() {
    let pg = PgServer::start();
    // 20,003 rows in 4,096 buckets: about 5 rows per index value, so false positives are
    // the rule, not the exception.
    let mut w = pg_phones::load(&pg.conn_str(), 20_000, 12);
    let count: i64 = w.client.query_one("SELECT count(*) FROM customers", &[]).unwrap().get(0);
    assert_eq!(count, 20_003);

    let plan = w.explain(TARGET);
    assert!(plan.contains("customers_phone_bidx"), "the query must use the btree index:\n{plan}");

    for spelling in TARGET_SPELLINGS {
        let by_index = w.find_by_index(spelling);
        assert_eq!(by_index.ids, w.target_ids, "searching for {spelling:?}");
        assert!(
            by_index.candidates > by_index.ids.len() as u64,
            "expected false positives in a 12-bit index of 20,003 rows, got {} candidates",
            by_index.candidates
        );
        assert!(by_index.candidates < 100, "{} candidates for one 12-bit value", by_index.candidates);
    }
    let scan = w.find_by_scan(TARGET);
    assert_eq!(scan.candidates, 20_003);
    assert_eq!(scan.ids, w.target_ids, "the full decrypt scan finds the same rows");

    // Numbers in the table are found too, and a number that is not there finds nothing
    // (its candidates are all false positives).
    for phone in w.sample.clone().iter().take(5) {
        let found = w.find_by_index(phone);
        assert!(!found.ids.is_empty(), "a stored number is found");
    }
    let absent = w.find_by_index("010-0000-0001");
    assert!(absent.ids.is_empty(), "010-0000-0001 is not in the table (seeded data)");
}
