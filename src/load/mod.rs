//! `fraudctl load`: `scored.jsonl` → `payments_scored`, in one transaction: binary COPY into a
//! temporary staging table, then one `INSERT … ON CONFLICT (trans_num) DO UPDATE`. A killed
//! load leaves the table as it was; re-running it converges to the same rows. The run's stage
//! counts go to `pipeline_runs` in the same transaction.

mod copy;

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::db::DbArgs;
use crate::error::Failure;
use crate::parallel;
use crate::rundir::{require_input, RunArgs, RunDir};
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
    let mut client = args.db.connect()?;
    let mut txn = client.transaction()?;
    txn.batch_execute(STAGING)
        .context("creating the staging table")?;
    let mut records = 0u64;
    {
        let mut writer = txn
            .copy_in("COPY payments_staging FROM STDIN (FORMAT binary)")
            .context("starting COPY into the staging table")?;
        let mut stream = |bytes: &[u8]| {
            writer
                .write_all(bytes)
                .context("streaming rows to PostgreSQL")
        };
        stream(&CopyEncoder::header())?;
        parallel::map_chunks(
            &mut input,
            || (),
            |_, chunk| {
                let mut enc = CopyEncoder::new();
                for (no, line) in chunk.lines() {
                    let r: ScoredRecord = serde_json::from_str(line).map_err(|e| {
                        Failure::BadInput(format!("{} record {no}: {e}", scored.display()))
                    })?;
                    encode(&mut enc, &r);
                }
                Ok((enc.buf, chunk.len() as u64))
            },
            |(rows, n)| {
                records += n;
                stream(&rows)
            },
        )?;
        stream(&CopyEncoder::trailer())?;
        writer
            .finish()
            .context("finishing COPY into the staging table")?;
    }
    let row = txn
        .query_one(UPSERT, &[&dir.run_id])
        .context("upserting into payments_scored")?;
    let (inserted, updated): (i64, i64) = (row.get(0), row.get(1));
    let unchanged = records as i64 - inserted - updated;
    record_audit(&mut txn, &dir, records, inserted, updated, unchanged)?;
    txn.commit().context("committing the load")?;
    tracing::info!(run_id = %dir.run_id, records, inserted, updated, unchanged, "loaded into payments_scored");
    Ok(LoadSummary {
        stage: "load",
        run_id: dir.run_id,
        records,
        inserted,
        updated,
        unchanged,
    })
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
    inserted: i64,
    updated: i64,
    unchanged: i64,
) -> Result<()> {
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
