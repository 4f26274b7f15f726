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

/// The staging table (src/load/sql/staging.sql; `scripts/bench.py` runs the same file).
const STAGING: &str = include_str!("sql/staging.sql");
const STAGING_FIELDS: i16 = 22;

/// Staging → payments_scored (src/load/sql/upsert.sql).
const UPSERT: &str = include_str!("sql/upsert.sql");

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
    let sessions = usize::from(args.connections);
    let mut clients = (0..sessions)
        .map(|_| args.db.connect())
        .collect::<Result<Vec<_>>>()?;
    let mut txns = Vec::with_capacity(sessions);
    for client in &mut clients {
        let mut txn = client.transaction()?;
        txn.batch_execute(STAGING)
            .context("creating the staging table")?;
        txns.push(txn);
    }
    let mut records = 0u64;
    {
        let mut writers = Vec::with_capacity(sessions);
        for txn in &mut txns {
            let mut writer = txn
                .copy_in("COPY payments_staging FROM STDIN (FORMAT binary)")
                .context("starting COPY into the staging table")?;
            send(&mut writer, &CopyEncoder::header())?;
            writers.push(writer);
        }
        parallel::map_chunks(
            &mut input,
            || (),
            |_, chunk| {
                let mut encoders: Vec<CopyEncoder> =
                    (0..sessions).map(|_| CopyEncoder::new()).collect();
                for (no, line) in chunk.lines() {
                    let r: ScoredRecord = serde_json::from_str(line).map_err(|e| {
                        Failure::BadInput(format!("{} record {no}: {e}", scored.display()))
                    })?;
                    encode(&mut encoders[session_of(&r.tx.trans_num, sessions)], &r);
                }
                Ok((encoders, chunk.len() as u64))
            },
            |(encoders, n)| {
                records += n;
                for (writer, rows) in writers.iter_mut().zip(encoders) {
                    send(writer, &rows.buf)?;
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
    }
    let (inserted, updated) = if sessions == 1 {
        let mut txn = txns.pop().expect("one session");
        let counts = upsert(&mut txn, &dir.run_id, captured_at)?;
        record_audit(&mut txn, &dir, records, counts)?;
        txn.commit().context("committing the load")?;
        counts
    } else {
        let counts = thread::scope(|scope| {
            let handles: Vec<_> = txns
                .into_iter()
                .map(|mut txn| {
                    let run_id = &dir.run_id;
                    scope.spawn(move || -> Result<(i64, i64)> {
                        let counts = upsert(&mut txn, run_id, captured_at)?;
                        txn.commit().context("committing the load")?;
                        Ok(counts)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("load session thread panicked"))
                .collect::<Result<Vec<_>>>()
        })?;
        let counts = counts
            .iter()
            .fold((0, 0), |(i, u), (si, su)| (i + si, u + su));
        let mut txn = clients[0].transaction()?;
        record_audit(&mut txn, &dir, records, counts)?;
        txn.commit().context("committing the load's audit rows")?;
        counts
    };
    let unchanged = records as i64 - inserted - updated;
    tracing::info!(run_id = %dir.run_id, records, inserted, updated, unchanged, sessions, "loaded into payments_scored");
    Ok(LoadSummary {
        stage: "load",
        run_id: dir.run_id,
        records,
        inserted,
        updated,
        unchanged,
    })
}

fn send(writer: &mut postgres::CopyInWriter<'_>, bytes: &[u8]) -> Result<()> {
    writer
        .write_all(bytes)
        .context("streaming rows to PostgreSQL")
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
    let (tx, d, s) = (&r.tx, &r.derived, &r.score);
    enc.row(STAGING_FIELDS);
    enc.text(&tx.trans_num);
    enc.timestamptz_ms(tx.trans_time_ms);
    enc.text(&tx.cc_last4);
    enc.text(&tx.cc_hash);
    enc.text(&tx.merchant);
    enc.text(&tx.category);
    enc.int8(tx.amt_cents());
    enc.text(&tx.gender);
    enc.text(&tx.city);
    enc.text(&tx.state);
    enc.int8(tx.city_pop as i64);
    enc.float8(tx.merch_lat);
    enc.float8(tx.merch_long);
    enc.float8(d.age_years);
    enc.float8(d.distance_km);
    enc.opt_bool(tx.is_fraud);
    enc.float8(s.probability);
    enc.bool(s.predicted_fraud);
    enc.float8(s.threshold);
    enc.text(&s.model_version);
    enc.text(&s.scorer);
    enc.bool(s.needs_rescore);
}

/// One `pipeline_runs` row per stage of the run, from the stage files' headers.
fn record_audit(
    txn: &mut postgres::Transaction,
    dir: &RunDir,
    records: u64,
    (inserted, updated): (i64, i64),
) -> Result<()> {
    let unchanged = records as i64 - inserted - updated;
    let upsert =
        "INSERT INTO pipeline_runs (run_id, stage, records, rejected, file_created_at, details)
                  VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6::text::jsonb)
                  ON CONFLICT (run_id, stage) DO UPDATE
                  SET records = EXCLUDED.records, rejected = EXCLUDED.rejected,
                      file_created_at = EXCLUDED.file_created_at, details = EXCLUDED.details,
                      recorded_at = now()";
    for (stage, path) in [
        ("extract", dir.raw()),
        ("transform", dir.features()),
        ("score", dir.scored()),
    ] {
        if let Some(h) = read_header(&path)? {
            let details = serde_json::to_string(&h.counts)?;
            txn.execute(
                upsert,
                &[
                    &dir.run_id,
                    &stage,
                    &(h.records() as i64),
                    &(h.count("rejected") as i64),
                    &h.created_at,
                    &details,
                ],
            )
            .with_context(|| format!("recording the {stage} stage in pipeline_runs"))?;
        }
    }
    let details =
        serde_json::json!({ "inserted": inserted, "updated": updated, "unchanged": unchanged })
            .to_string();
    let now = chrono::Utc::now().to_rfc3339();
    txn.execute(
        upsert,
        &[
            &dir.run_id,
            &"load",
            &(records as i64),
            &0i64,
            &now,
            &details,
        ],
    )
    .context("recording the load stage in pipeline_runs")?;
    Ok(())
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
