//! `fraudctl load`: `scored.jsonl` → `payments_scored`, in one transaction: binary COPY into a
//! temporary staging table, then one `INSERT … ON CONFLICT (trans_num) DO UPDATE`. A killed
//! load leaves the table as it was; re-running it converges to the same rows. The run's stage
//! counts go to `pipeline_runs` in the same transaction.
//!
//! With `--connections N` (N > 1) the rows are split by trans_num over N sessions, each with its
//! own staging table and transaction, which upsert side by side and commit on their own: the
//! database's work, one core a session, runs on N cores. Each session is all or nothing, the load
//! as a whole is not (a killed load may leave some sessions committed; re-running converges), and
//! the audit rows follow in a last transaction.

mod copy;

use std::io::Write;
use std::thread;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::audit;
use crate::db::DbArgs;
use crate::error::Failure;
use crate::parallel;
use crate::rundir::{log_started, require_input, RunArgs, RunDir};
use crate::score::{ScoredRecord, SCORED_SCHEMA};
use crate::stagefile::{read_header, StageReader};
use copy::CopyEncoder;

/// Options of `fraudctl load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub db: DbArgs,

    /// Database sessions that load side by side, rows split by trans_num. 1 (the default) loads
    /// in one transaction: all or nothing. N > 1 loads big batches (backfills, re-scoring)
    /// faster when the server has N free cores (a million rows: 1.3 to 1.5 times with 2
    /// sessions on 2 cores), but each session commits on its own: a load killed midway may
    /// leave part of the rows loaded (re-running converges).
    #[arg(
        long,
        env = "FRAUDCTL_LOAD_CONNECTIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=16),
        value_name = "N"
    )]
    pub connections: u16,
}

#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub records: u64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
}

/// The staging table (src/load/sql/staging.sql; `scripts/bench.py` runs the same file): its
/// columns are [`FIELDS`]'s, in their order (a unit test holds them equal).
const STAGING: &str = include_str!("sql/staging.sql");

/// Staging → payments_scored (src/load/sql/upsert.sql).
const UPSERT: &str = include_str!("sql/upsert.sql");

/// What the binary COPY sends of a scored record: each staging column and how it is encoded.
type Field = (&'static str, fn(&mut CopyEncoder, &ScoredRecord));

const FIELDS: [Field; 23] = [
    ("trans_num", |e, r| e.text(&r.tx.trans_num)),
    ("trans_time", |e, r| e.timestamptz_ms(r.tx.trans_time_ms)),
    ("cc_last4", |e, r| e.text(&r.tx.cc_last4)),
    ("cc_hash", |e, r| e.text(&r.tx.cc_hash)),
    ("merchant", |e, r| e.text(&r.tx.merchant)),
    ("category", |e, r| e.text(&r.tx.category)),
    ("amt_cents", |e, r| e.int8(r.tx.amt_cents())),
    ("gender", |e, r| e.text(&r.tx.gender)),
    ("city", |e, r| e.text(&r.tx.city)),
    ("state", |e, r| e.text(&r.tx.state)),
    ("city_pop", |e, r| e.int8(r.tx.city_pop as i64)),
    ("merch_lat", |e, r| e.float8(r.tx.merch_lat)),
    ("merch_long", |e, r| e.float8(r.tx.merch_long)),
    ("age_years", |e, r| e.float8(r.derived.age_years)),
    ("distance_km", |e, r| e.float8(r.derived.distance_km)),
    ("is_fraud_label", |e, r| e.opt_bool(r.tx.is_fraud)),
    ("fraud_probability", |e, r| e.float8(r.score.probability)),
    ("predicted_fraud", |e, r| e.bool(r.score.predicted_fraud)),
    ("threshold", |e, r| e.float8(r.score.threshold)),
    ("model_version", |e, r| e.text(&r.score.model_version)),
    ("scorer", |e, r| e.text(&r.score.scorer)),
    ("needs_rescore", |e, r| e.bool(r.score.needs_rescore)),
    // NULL for all but the predicted frauds.
    ("reasons", |e, r| {
        e.opt_jsonb(r.score.reasons.as_deref().map(|raw| raw.get()))
    }),
];

pub fn run(args: &LoadArgs) -> Result<LoadSummary> {
    load(args).map_err(explain)
}

fn load(args: &LoadArgs) -> Result<LoadSummary> {
    let dir = RunDir::open(&args.run)?;
    let scored = dir.scored();
    require_input(&scored, "score")?;
    let mut input = StageReader::<ScoredRecord>::open(&scored, SCORED_SCHEMA)?;
    let captured_at = dir.captured_at()?;
    log_started("load", input.header().records());
    let mut clients = (0..args.connections)
        .map(|_| args.db.connect())
        .collect::<Result<Vec<_>>>()?;
    let mut sessions = clients
        .iter_mut()
        .map(|client| {
            let mut txn = client.transaction()?;
            txn.batch_execute(STAGING)
                .context("creating the staging table")?;
            Ok(txn)
        })
        .collect::<Result<Vec<_>>>()?;
    let records = stream_rows(&mut input, &scored, &mut sessions)?;
    let (inserted, updated) = upsert_all(&mut sessions, &dir.run_id, captured_at)?;
    // One session: the audit rows in its transaction, all or nothing. Several: each session
    // commits its share, then the audit rows follow in a last transaction.
    let one = sessions.len() == 1;
    if one {
        record_audit(&mut sessions[0], &dir, records, (inserted, updated))?;
    }
    for txn in sessions {
        txn.commit().context("committing the load")?;
    }
    if !one {
        let mut txn = clients[0].transaction()?;
        record_audit(&mut txn, &dir, records, (inserted, updated))?;
        txn.commit().context("committing the load's audit rows")?;
    }
    let unchanged = records as i64 - inserted - updated;
    tracing::info!(run_id = %dir.run_id, records, inserted, updated, unchanged, sessions = clients.len(), "loaded into payments_scored");
    Ok(LoadSummary {
        stage: "load",
        run_id: dir.run_id,
        records,
        inserted,
        updated,
        unchanged,
    })
}

/// Streams every record of `scored.jsonl` into the staging table of the session its trans_num
/// belongs to (binary COPY, encoded on every core); returns how many records.
fn stream_rows(
    input: &mut StageReader<ScoredRecord>,
    scored: &std::path::Path,
    sessions: &mut [postgres::Transaction<'_>],
) -> Result<u64> {
    let columns = FIELDS.map(|(name, _)| name).join(", ");
    let copy = format!("COPY payments_staging ({columns}) FROM STDIN (FORMAT binary)");
    let mut writers = Vec::with_capacity(sessions.len());
    for txn in sessions.iter_mut() {
        let mut writer = txn
            .copy_in(copy.as_str())
            .context("starting COPY into the staging table")?;
        send(&mut writer, &CopyEncoder::header())?;
        writers.push(writer);
    }
    let n = writers.len();
    let mut records = 0u64;
    parallel::map_chunks(
        "load",
        input,
        || (),
        |_, chunk| {
            let mut encoders: Vec<CopyEncoder> = (0..n).map(|_| CopyEncoder::new()).collect();
            for (no, line) in chunk.lines() {
                let r: ScoredRecord = serde_json::from_str(line).map_err(|e| {
                    Failure::BadInput(format!("{} record {no}: {e}", scored.display()))
                })?;
                encode(&mut encoders[session_of(&r.tx.trans_num, n)], &r);
            }
            Ok((encoders, chunk.len() as u64))
        },
        |(encoders, rows)| {
            records += rows;
            for (writer, encoded) in writers.iter_mut().zip(encoders) {
                send(writer, &encoded.buf)?;
            }
            Ok(())
        },
    )?;
    for mut writer in writers {
        send(&mut writer, &CopyEncoder::trailer())?;
        writer
            .finish()
            .context("finishing COPY into the staging table")?;
    }
    Ok(records)
}

fn send(writer: &mut postgres::CopyInWriter<'_>, bytes: &[u8]) -> Result<()> {
    writer
        .write_all(bytes)
        .context("streaming rows to PostgreSQL")
}

/// Each session's staging rows → payments_scored, the sessions side by side (a thread each),
/// none committed yet; returns the counts of inserted and of updated rows.
fn upsert_all(
    sessions: &mut [postgres::Transaction<'_>],
    run_id: &str,
    captured_at: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, i64)> {
    let counts = thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|txn| scope.spawn(move || upsert(txn, run_id, captured_at)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load session thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(counts
        .iter()
        .fold((0, 0), |(i, u), (si, su)| (i + si, u + su)))
}

/// Staging → payments_scored; returns the counts of inserted and of updated rows.
fn upsert(
    txn: &mut postgres::Transaction<'_>,
    run_id: &str,
    captured_at: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, i64)> {
    let row = txn
        .query_one(UPSERT, &[&run_id, &captured_at])
        .context("upserting into payments_scored")?;
    Ok((row.get(0), row.get(1)))
}

/// The session a record is loaded by: a hash of its trans_num, so that the same trans_num
/// always goes to the same session (a duplicate inside the file is still refused).
fn session_of(trans_num: &str, sessions: usize) -> usize {
    if sessions == 1 {
        return 0;
    }
    // FNV-1a: stable across runs and platforms, and fast on 32-character ids.
    let hash = trans_num.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % sessions as u64) as usize
}

fn encode(enc: &mut CopyEncoder, r: &ScoredRecord) {
    enc.row(FIELDS.len() as i16);
    for (_, field) in FIELDS {
        field(enc, r);
    }
}

/// One `pipeline_runs` row per stage of the run, from the stage files' headers, and the load's.
fn record_audit(
    txn: &mut postgres::Transaction,
    dir: &RunDir,
    records: u64,
    (inserted, updated): (i64, i64),
) -> Result<()> {
    for (stage, path) in [
        ("extract", dir.raw()),
        ("transform", dir.features()),
        ("score", dir.scored()),
    ] {
        if let Some(h) = read_header(&path)? {
            let row = audit::StageRow {
                run_id: &dir.run_id,
                stage,
                records: h.records() as i64,
                rejected: h.count("rejected") as i64,
                file_created_at: Some(&h.created_at),
                details: serde_json::to_value(&h.counts)?,
            };
            audit::record(txn, &row, audit::Again::Replace)?;
        }
    }
    let unchanged = records as i64 - inserted - updated;
    let now = chrono::Utc::now().to_rfc3339();
    let row = audit::StageRow {
        run_id: &dir.run_id,
        stage: "load",
        records: records as i64,
        rejected: 0,
        file_created_at: Some(&now),
        details: serde_json::json!({ "inserted": inserted, "updated": updated, "unchanged": unchanged }),
    };
    audit::record(txn, &row, audit::Again::Replace)
}

/// A duplicate trans_num inside one scored file makes PostgreSQL refuse the upsert; say so.
fn explain(err: anyhow::Error) -> anyhow::Error {
    let duplicate = err
        .chain()
        .filter_map(|c| c.downcast_ref::<postgres::Error>())
        .any(|e| e.code() == Some(&postgres::error::SqlState::CARDINALITY_VIOLATION));
    if duplicate {
        return err.context(Failure::BadInput(
            "scored.jsonl holds the same trans_num twice; re-run `fraudctl extract --refetch` (extract de-duplicates)".into(),
        ));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::{FIELDS, STAGING};

    /// The staging table's columns are the encoder's fields, in their order.
    #[test]
    fn the_staging_table_has_the_encoders_columns() {
        let table = "payments_staging (";
        let start = STAGING.find(table).expect("the CREATE TABLE") + table.len();
        let body = &STAGING[start..STAGING.rfind(')').unwrap()];
        let columns: Vec<&str> = body
            .split(',')
            .map(|c| c.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(columns, FIELDS.map(|(name, _)| name));
    }
}
