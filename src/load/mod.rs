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

const STAGING: &str = "CREATE TEMPORARY TABLE payments_staging (
    trans_num text, trans_time timestamptz, cc_last4 text, cc_hash text, merchant text,
    category text, amt_cents int8, gender text, city text, state text, city_pop int8,
    merch_lat float8, merch_long float8, age_years float8, distance_km float8,
    is_fraud_label bool, fraud_probability float8, predicted_fraud bool, threshold float8,
    model_version text, scorer text, needs_rescore bool
) ON COMMIT DROP";
const STAGING_FIELDS: i16 = 22;

/// Columns compared to decide whether an existing row changes (run_id and times excluded, so
/// re-running a run leaves its rows untouched).
const DATA_COLUMNS: &str =
    "trans_time, cc_last4, cc_hash, merchant, category, amt, gender, city, state, city_pop,
    merch_lat, merch_long, age_years, distance_km, is_fraud_label, fraud_probability,
    predicted_fraud, threshold, model_version, scorer, needs_rescore";

fn upsert_sql() -> String {
    let excluded: Vec<String> = DATA_COLUMNS
        .split(',')
        .map(|c| format!("EXCLUDED.{}", c.trim()))
        .collect();
    let current: Vec<String> = DATA_COLUMNS
        .split(',')
        .map(|c| format!("p.{}", c.trim()))
        .collect();
    format!(
        "WITH upserted AS (
            INSERT INTO payments_scored AS p (trans_num, {DATA_COLUMNS}, run_id)
            SELECT trans_num, trans_time, cc_last4, cc_hash, merchant, category,
                   (amt_cents::numeric / 100)::numeric(14, 2), gender, city, state, city_pop,
                   merch_lat, merch_long, age_years, distance_km, is_fraud_label,
                   fraud_probability, predicted_fraud, threshold, model_version, scorer,
                   needs_rescore, $1
            FROM payments_staging
            ON CONFLICT (trans_num) DO UPDATE
               SET ({DATA_COLUMNS}, run_id, updated_at) = ({}, EXCLUDED.run_id, now())
             WHERE ({}) IS DISTINCT FROM ({})
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted",
        excluded.join(", "),
        current.join(", "),
        excluded.join(", ")
    )
}

pub fn run(args: &LoadArgs) -> Result<LoadSummary> {
    load(args).map_err(explain)
}

fn load(args: &LoadArgs) -> Result<LoadSummary> {
    let dir = RunDir::open(&args.run)?;
    require_input(&dir.scored(), "score")?;
    let mut input = StageReader::<ScoredRecord>::open(&dir.scored(), SCORED_SCHEMA)?;
    let mut client = args.db.connect()?;
    let mut txn = client.transaction()?;
    txn.batch_execute(STAGING)
        .context("creating the staging table")?;
    let mut records = 0u64;
    {
        let mut writer = txn
            .copy_in("COPY payments_staging FROM STDIN (FORMAT binary)")
            .context("starting COPY into the staging table")?;
        let mut enc = CopyEncoder::new();
        while let Some(r) = input.next_record()? {
            encode(&mut enc, &r);
            records += 1;
            if enc.buf.len() >= 1 << 20 {
                writer
                    .write_all(&enc.buf)
                    .context("streaming rows to PostgreSQL")?;
                enc.buf.clear();
            }
        }
        enc.finish();
        writer
            .write_all(&enc.buf)
            .context("streaming rows to PostgreSQL")?;
        writer
            .finish()
            .context("finishing COPY into the staging table")?;
    }
    let row = txn
        .query_one(&upsert_sql(), &[&dir.run_id])
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
