//! The blind-index workload on a real PostgreSQL, shared by the CI test
//! (`tests/it/blind_index_pg.rs`, 20,000 rows) and the benchmark (`benches/blind_index_pg.rs`,
//! 1,000,000 rows): a `customers` table with an encrypted phone column (`lv1.` text) and a
//! blind-index column (`bigint`) with a btree index.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use larder_envelope::blind::{BlindIndexer, IndexSpec, Normalizer, PreparedIndex};
use larder_envelope::{BlockingEnvelope, EncryptionContext, Envelope, LocalKeyring};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

/// The customer the tests look for, stored under three spellings.
pub const TARGET: &str = "010-1234-5678";
pub const TARGET_SPELLINGS: [&str; 3] = ["010-1234-5678", "01012345678", "+82 10-1234-5678"];

pub struct Workload {
    pub client: Client,
    pub envelope: BlockingEnvelope,
    pub index: PreparedIndex,
    pub context: EncryptionContext,
    /// Row ids holding the target, in insertion order.
    pub target_ids: BTreeSet<i64>,
    /// Some phone numbers present in the table (for lookups in the benchmark).
    pub sample: Vec<String>,
    pub load_time: Duration,
    pub encrypt_time: Duration,
}

/// splitmix64: deterministic rows without depending on a RNG crate's API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A random mobile number in one of the spellings people type, never the target's.
fn phone(rng: &mut Rng) -> String {
    loop {
        let n = rng.next();
        let mid = (n % 10_000) as u32;
        let last = ((n >> 20) % 10_000) as u32;
        if mid == 1234 && last == 5678 {
            continue;
        }
        return match (n >> 40) % 3 {
            0 => format!("010-{mid:04}-{last:04}"),
            1 => format!("010{mid:04}{last:04}"),
            _ => format!("+82 10-{mid:04}-{last:04}"),
        };
    }
}

pub fn context() -> EncryptionContext {
    EncryptionContext::new().with("table", "customers").with("column", "phone")
}

pub fn spec(bits: u16) -> IndexSpec {
    IndexSpec::new("customers_phone", Normalizer::Phone, bits).expect("valid spec")
}

/// Creates and fills the table: `rows` random phone numbers plus the target under three
/// spellings (at rows spread over the table), then builds the btree index and analyzes.
pub fn load(conn_str: &str, rows: u64, bits: u16) -> Workload {
    let mut client = Client::connect(conn_str, NoTls).expect("connect to PostgreSQL");
    client
        .batch_execute(
            "DROP TABLE IF EXISTS customers;
             CREATE TABLE customers (id bigserial PRIMARY KEY, phone_enc text NOT NULL, phone_bidx bigint NOT NULL);",
        )
        .expect("create the table");
    let envelope = Envelope::builder(LocalKeyring::from_key_bytes("k1", [0x5A; 32]).expect("keyring"))
        .build()
        .blocking()
        .expect("blocking envelope");
    let indexer = BlindIndexer::from_key_bytes("i1", [0xA5; 32]);
    let ctx = context();
    let index = indexer.prepare(&spec(bits), &ctx).unwrap();
    let mut rng = Rng(2026);
    let target_at: Vec<u64> = (0..3).map(|k| (rows + 3) * (2 * k + 1) / 6).collect();
    let started = Instant::now();
    let mut encrypt_time = Duration::ZERO;
    let mut sample = Vec::new();
    let mut target_ids = BTreeSet::new();
    {
        let mut w = client.copy_in("COPY customers (phone_enc, phone_bidx) FROM STDIN").expect("COPY");
        let mut buf = Vec::with_capacity(1 << 20);
        for i in 0..rows + 3 {
            // bigserial ids start at 1 and COPY inserts in order: row i gets id i + 1.
            let value = match target_at.iter().position(|&t| t == i) {
                Some(k) => {
                    target_ids.insert(i as i64 + 1);
                    TARGET_SPELLINGS[k].to_owned()
                }
                None => phone(&mut rng),
            };
            if i % 1000 == 7 {
                sample.push(value.clone());
            }
            let t = Instant::now();
            let ct = envelope.encrypt_text(&value, &ctx).expect("encrypt");
            let bidx = index.compute(&[&value]).expect("index").to_i64().expect("bits <= 63");
            encrypt_time += t.elapsed();
            writeln!(buf, "{ct}\t{bidx}").expect("buffer");
            if buf.len() > (1 << 20) - 512 {
                w.write_all(&buf).expect("COPY data");
                buf.clear();
            }
        }
        w.write_all(&buf).expect("COPY data");
        w.finish().expect("COPY finish");
    }
    client
        .batch_execute("CREATE INDEX customers_phone_bidx ON customers (phone_bidx); ANALYZE customers;")
        .expect("index and analyze");
    Workload {
        client,
        envelope,
        index,
        context: ctx,
        target_ids,
        sample,
        load_time: started.elapsed(),
        encrypt_time,
    }
}

/// The result of one search.
#[derive(Debug)]
pub struct Found {
    /// Rows whose decrypted value is the number searched for.
    pub ids: BTreeSet<i64>,
    /// Rows the database returned (matches and false positives), or scanned.
    pub candidates: u64,
}

impl Workload {
    /// Through the blind index: one btree lookup, then decrypt the candidates and drop the
    /// false positives.
    pub fn find_by_index(&mut self, phone: &str) -> Found {
        let want = Normalizer::Phone.normalize(phone).expect("valid phone");
        let bidx = self.index.compute(&[phone]).expect("index").to_i64().expect("bits <= 63");
        let rows = self
            .client
            .query("SELECT id, phone_enc FROM customers WHERE phone_bidx = $1", &[&bidx])
            .expect("index query");
        let mut ids = BTreeSet::new();
        for row in &rows {
            let ct: &str = row.get(1);
            let plain = self.envelope.decrypt_text(ct, &self.context).expect("decrypt a candidate");
            if *Normalizer::Phone.normalize(&plain).expect("stored phone") == *want {
                ids.insert(row.get::<_, i64>(0));
            }
        }
        Found { ids, candidates: rows.len() as u64 }
    }

    /// Without the index: stream every row and decrypt it.
    pub fn find_by_scan(&mut self, phone: &str) -> Found {
        let want = Normalizer::Phone.normalize(phone).expect("valid phone");
        let mut it = self
            .client
            .query_raw("SELECT id, phone_enc FROM customers", std::iter::empty::<i64>())
            .expect("scan query");
        let (mut ids, mut candidates) = (BTreeSet::new(), 0u64);
        while let Some(row) = it.next().expect("scan row") {
            candidates += 1;
            let ct: &str = row.get(1);
            let plain = self.envelope.decrypt_text(ct, &self.context).expect("decrypt a row");
            if *Normalizer::Phone.normalize(&plain).expect("stored phone") == *want {
                ids.insert(row.get::<_, i64>(0));
            }
        }
        Found { ids, candidates }
    }

    /// The plan PostgreSQL picks for the index query.
    pub fn explain(&mut self, phone: &str) -> String {
        let bidx = self.index.compute(&[phone]).expect("index").to_i64().expect("bits <= 63");
        let rows = self
            .client
            .query("EXPLAIN SELECT id, phone_enc FROM customers WHERE phone_bidx = $1", &[&bidx])
            .expect("explain");
        rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
    }
}
