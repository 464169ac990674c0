//! `larder rewrap`: re-encrypts a database column in place, in batches, each batch one
//! transaction that also records how far the job got, so a run killed at any point (even
//! `kill -9`) resumes where the last committed batch ended: no row lost, skipped or encrypted
//! twice. Which values need work and what they become is `larder_envelope::rewrap`'s decision
//! (idempotent: current values are left alone, so a rerun changes nothing).
//!
//! Each row is updated with a compare-and-set (`WHERE id = ? AND col = ?`): a row changed by
//! the application meanwhile is left alone and counted as `conflicts`.
//!
//! Progress table (created when missing): `larder_rewrap_progress(job TEXT PRIMARY KEY,
//! last_id BIGINT NOT NULL)`; the job's row is deleted when the job completes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use larder::envelope::rewrap::{RewrapMode, Rewrapped, Rewrapper};
use larder::envelope::{EncryptionContext, Envelope};

use crate::cli::{RewrapArgs, RewrapModeArg};
use crate::config::Keyrings;
use crate::util::{self, Usage};

/// One row: its integer key and the stored value (NULL is never touched).
type Row = (i64, Option<String>);

trait Column {
    fn count(&mut self) -> anyhow::Result<u64>;
    fn checkpoint(&mut self, job: &str) -> anyhow::Result<Option<i64>>;
    fn batch(&mut self, after: Option<i64>, limit: u32) -> anyhow::Result<Vec<Row>>;
    /// In one transaction: compare-and-set every update, record `last_id`. Returns the rows
    /// changed.
    fn apply(&mut self, job: &str, updates: &[(i64, String, String)], last_id: i64) -> anyhow::Result<u64>;
    fn finish(&mut self, job: &str) -> anyhow::Result<()>;
    fn sample(&mut self, n: u32) -> anyhow::Result<Vec<Row>>;
}

fn ident(s: &str) -> anyhow::Result<&str> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(s)
    } else {
        Err(Usage::err(format!("{s:?} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)")))
    }
}

struct Sql {
    table: String,
    key: String,
    column: String,
}

struct Sqlite {
    conn: rusqlite::Connection,
    sql: Sql,
}

impl Column for Sqlite {
    fn count(&mut self) -> anyhow::Result<u64> {
        let n: i64 =
            self.conn.query_row(&format!("SELECT count(*) FROM {}", self.sql.table), [], |r| r.get(0))?;
        Ok(n as u64)
    }
    fn checkpoint(&mut self, job: &str) -> anyhow::Result<Option<i64>> {
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS larder_rewrap_progress (job TEXT PRIMARY KEY, last_id INTEGER NOT NULL)",
            [],
        )?;
        let mut st = self.conn.prepare("SELECT last_id FROM larder_rewrap_progress WHERE job = ?1")?;
        let mut rows = st.query([job])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }
    fn batch(&mut self, after: Option<i64>, limit: u32) -> anyhow::Result<Vec<Row>> {
        let Sql { table, key, column } = &self.sql;
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {key}, {column} FROM {table} WHERE {key} > ?1 ORDER BY {key} LIMIT ?2"
        ))?;
        let rows = st
            .query_map(rusqlite::params![after.unwrap_or(i64::MIN), limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
    fn apply(&mut self, job: &str, updates: &[(i64, String, String)], last_id: i64) -> anyhow::Result<u64> {
        let Sql { table, key, column } = &self.sql;
        let tx = self.conn.transaction()?;
        let mut changed = 0;
        {
            let mut st = tx.prepare_cached(&format!(
                "UPDATE {table} SET {column} = ?1 WHERE {key} = ?2 AND {column} = ?3"
            ))?;
            for (id, old, new) in updates {
                changed += st.execute(rusqlite::params![new, id, old])? as u64;
            }
            tx.execute(
                "INSERT INTO larder_rewrap_progress (job, last_id) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_id = excluded.last_id",
                rusqlite::params![job, last_id],
            )?;
        }
        tx.commit()?;
        Ok(changed)
    }
    fn finish(&mut self, job: &str) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM larder_rewrap_progress WHERE job = ?1", [job])?;
        Ok(())
    }
    fn sample(&mut self, n: u32) -> anyhow::Result<Vec<Row>> {
        let total = self.count()?.max(1);
        let Sql { table, key, column } = &self.sql;
        let step = (total / u64::from(n.max(1))).max(1) as i64;
        let mut st = self.conn.prepare(&format!(
            "SELECT {key}, {column} FROM (SELECT {key}, {column}, row_number() OVER (ORDER BY {key}) AS rn FROM {table}) \
             WHERE (rn - 1) % ?1 = 0 LIMIT ?2"
        ))?;
        let rows = st.query_map(rusqlite::params![step, n], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

struct Postgres {
    client: postgres::Client,
    sql: Sql,
}

impl Column for Postgres {
    fn count(&mut self) -> anyhow::Result<u64> {
        let n: i64 = self.client.query_one(&format!("SELECT count(*) FROM {}", self.sql.table), &[])?.get(0);
        Ok(n as u64)
    }
    fn checkpoint(&mut self, job: &str) -> anyhow::Result<Option<i64>> {
        self.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS larder_rewrap_progress (job text PRIMARY KEY, last_id bigint NOT NULL)",
        )?;
        Ok(self
            .client
            .query_opt("SELECT last_id FROM larder_rewrap_progress WHERE job = $1", &[&job])?
            .map(|r| r.get(0)))
    }
    fn batch(&mut self, after: Option<i64>, limit: u32) -> anyhow::Result<Vec<Row>> {
        let Sql { table, key, column } = &self.sql;
        let rows = self.client.query(
            &format!(
                "SELECT {key}::bigint, {column}::text FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2"
            ),
            &[&after.unwrap_or(i64::MIN), &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
    fn apply(&mut self, job: &str, updates: &[(i64, String, String)], last_id: i64) -> anyhow::Result<u64> {
        let Sql { table, key, column } = &self.sql;
        let mut tx = self.client.transaction()?;
        let st =
            tx.prepare(&format!("UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3"))?;
        let mut changed = 0;
        for (id, old, new) in updates {
            changed += tx.execute(&st, &[new, id, old])?;
        }
        tx.execute(
            "INSERT INTO larder_rewrap_progress (job, last_id) VALUES ($1, $2)
             ON CONFLICT (job) DO UPDATE SET last_id = excluded.last_id",
            &[&job, &last_id],
        )?;
        tx.commit()?;
        Ok(changed)
    }
    fn finish(&mut self, job: &str) -> anyhow::Result<()> {
        self.client.execute("DELETE FROM larder_rewrap_progress WHERE job = $1", &[&job])?;
        Ok(())
    }
    fn sample(&mut self, n: u32) -> anyhow::Result<Vec<Row>> {
        let Sql { table, key, column } = &self.sql;
        let rows = self.client.query(
            &format!("SELECT {key}::bigint, {column}::text FROM {table} ORDER BY random() LIMIT $1"),
            &[&i64::from(n)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

fn open_db(url: &str, sql: Sql) -> anyhow::Result<Box<dyn Column>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let conn =
            rusqlite::Connection::open(path).with_context(|| format!("cannot open SQLite file {path}"))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        return Ok(Box::new(Sqlite { conn, sql }));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let client =
            postgres::Client::connect(url, postgres::NoTls).context("cannot connect to PostgreSQL")?;
        return Ok(Box::new(Postgres { client, sql }));
    }
    Err(Usage::err(format!("--db {url:?}: expected sqlite:PATH or postgresql://…")))
}

#[derive(Default, serde::Serialize)]
struct Summary {
    rows: u64,
    scanned: u64,
    rewritten: u64,
    already_current: u64,
    nulls: u64,
    failed: u64,
    conflicts: u64,
    batches: u64,
    resumed_after_id: Option<i64>,
    seconds: f64,
    rows_per_second: f64,
    keyring_generate_calls: u64,
    keyring_decrypt_calls: u64,
    verify_sampled: u64,
    verify_ok: u64,
}

pub fn run(keyring: Keyrings, args: RewrapArgs) -> anyhow::Result<ExitCode> {
    let sql = Sql {
        table: ident(&args.table)?.to_owned(),
        key: ident(&args.key)?.to_owned(),
        column: ident(&args.column)?.to_owned(),
    };
    if args.batch == 0 {
        return Err(Usage::err("--batch must be at least 1"));
    }
    let job = args.job.clone().unwrap_or_else(|| format!("{}.{}", sql.table, sql.column));
    let context: EncryptionContext = util::parse_context(&args.context)?.into_iter().collect();
    let rt = crate::crypt::runtime()?;
    let envelope = rt.block_on(envelope_for(keyring, &args))?;
    let mode = match args.mode {
        RewrapModeArg::Encrypt => RewrapMode::Encrypt,
        RewrapModeArg::Rotate => RewrapMode::Rotate,
    };
    let rewrapper = Rewrapper::new(envelope.clone(), mode);
    let mut db = open_db(&args.db, sql)?;

    let mut s = Summary { rows: db.count()?, ..Summary::default() };
    let mut after = db.checkpoint(&job)?;
    s.resumed_after_id = after;
    let bar = util::progress(Some(s.rows), "rewrap");
    let started = Instant::now();
    loop {
        let rows = db.batch(after, args.batch)?;
        let Some(&(last_id, _)) = rows.last() else { break };
        let mut updates = Vec::new();
        for (id, value) in &rows {
            s.scanned += 1;
            let Some(value) = value else {
                s.nulls += 1;
                continue;
            };
            match rt.block_on(rewrapper.rewrap(value, &context)) {
                Ok(Rewrapped::Current) => s.already_current += 1,
                Ok(Rewrapped::Changed(new)) => updates.push((*id, value.clone(), new)),
                Err(e) => {
                    s.failed += 1;
                    bar.suspend(|| eprintln!("larder: row {id}: {e}; left as it is"));
                }
            }
        }
        let changed = db.apply(&job, &updates, last_id)?;
        s.rewritten += changed;
        s.conflicts += updates.len() as u64 - changed;
        s.batches += 1;
        after = Some(last_id);
        bar.inc(rows.len() as u64);
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            // Pace by rows: the run takes at least scanned / rate seconds.
            let due = Duration::from_secs_f64(s.scanned as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    db.finish(&job)?;
    bar.finish_and_clear();
    s.seconds = started.elapsed().as_secs_f64();
    s.rows_per_second = s.scanned as f64 / s.seconds.max(1e-9);
    if let Some(n) = args.verify.filter(|n| *n > 0) {
        for (id, value) in db.sample(n)? {
            let Some(value) = value else { continue };
            s.verify_sampled += 1;
            let current = rewrapper.is_current(&value);
            match rt.block_on(envelope.decrypt_text(&value, &context)) {
                Ok(_) if current => s.verify_ok += 1,
                Ok(_) => eprintln!("larder: verify: row {id} decrypts but is not current"),
                Err(e) => eprintln!("larder: verify: row {id}: {e}"),
            }
        }
    }
    let stats = envelope.stats();
    s.keyring_generate_calls = stats.generate_calls;
    s.keyring_decrypt_calls = stats.decrypt_calls;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "rewrap {job}: {} rows scanned, {} rewritten, {} already current, {} failed, {} conflicts, {} NULL ({:.1} s, {:.0} rows/s; keyring calls: {} generate, {} decrypt)",
            s.scanned, s.rewritten, s.already_current, s.failed, s.conflicts, s.nulls, s.seconds, s.rows_per_second,
            s.keyring_generate_calls, s.keyring_decrypt_calls
        );
        if s.verify_sampled > 0 {
            println!("verify: {} of {} sampled rows decrypt and are current", s.verify_ok, s.verify_sampled);
        }
    }
    if s.failed > 0 || s.verify_ok < s.verify_sampled {
        bail!("{} rows failed and {} sampled rows did not verify", s.failed, s.verify_sampled - s.verify_ok);
    }
    Ok(ExitCode::SUCCESS)
}

/// The writing envelope: the configuration file's keyrings (`--config`), or the local keyring
/// (or `--to-kms`, with the local keyring kept for decrypting); format v2 with `--v2`.
async fn envelope_for(keyring: Keyrings, args: &RewrapArgs) -> anyhow::Result<Envelope> {
    let keyring = match keyring {
        Keyrings::Config(cfg) => {
            if args.to_kms.is_some() {
                return Err(Usage::err(
                    "--to-kms and --config both name keyrings: with a configuration file, list the KMS key first \
                     ([[keyring]] type = \"aws-kms\") and the local keyring after it with role = \"decrypt\"",
                ));
            }
            return cfg.envelope(args.v2).await;
        }
        Keyrings::File(k) => k,
    };
    let path = util::keyring_path(keyring)?;
    let local = crate::keys::load(&path)?;
    let builder = match &args.to_kms {
        Some(spec) => {
            let key_id = crate::crypt::parse_kms(spec)?;
            let kms = crate::crypt::aws_keyring(key_id, args.kms_endpoint.as_deref()).await?;
            Envelope::builder(kms).decrypt_with(local)
        }
        None => Envelope::builder(local),
    };
    Ok(if args.v2 { builder.format_v2() } else { builder }.build())
}
