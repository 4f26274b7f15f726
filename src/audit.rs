//! The run audit, `pipeline_runs`: one row per (run, stage), written by `load` (from the stage
//! files' headers, and its own counts) and `alert`. The dashboard's freshness figure reads it.

use anyhow::{Context, Result};
use postgres::types::Type;

/// What a stage of a run did.
pub struct StageRow<'a> {
    pub run_id: &'a str,
    pub stage: &'a str,
    pub records: i64,
    pub rejected: i64,
    /// When the stage wrote its file (RFC 3339), for the stages that write one.
    pub file_created_at: Option<&'a str>,
    pub details: serde_json::Value,
}

/// What a second row for the same run and stage does to the first.
#[derive(Clone, Copy, PartialEq)]
pub enum Again {
    /// Replaces it (a re-run of a stage that redoes the whole run: its counts are the run's).
    Replace,
    /// Adds its records (a re-run of `alert` sends what the earlier runs did not).
    Add,
}

/// Records `rows` in `pipeline_runs`, in one statement (one round trip to the server, which a
/// one-record load pays a dozen of).
pub fn record(
    client: &mut impl postgres::GenericClient,
    rows: &[StageRow],
    again: Again,
) -> Result<()> {
    let column = |f: fn(&StageRow) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    let run_ids: Vec<&str> = rows.iter().map(|r| r.run_id).collect();
    let stages: Vec<&str> = rows.iter().map(|r| r.stage).collect();
    let created: Vec<Option<&str>> = rows.iter().map(|r| r.file_created_at).collect();
    let details: Vec<String> = rows.iter().map(|r| r.details.to_string()).collect();
    client
        .execute_typed(
            "INSERT INTO pipeline_runs (run_id, stage, records, rejected, file_created_at, details)
             SELECT run_id, stage, records, rejected, file_created_at::timestamptz, details::jsonb
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[])
                  AS r (run_id, stage, records, rejected, file_created_at, details)
             ON CONFLICT (run_id, stage) DO UPDATE
             SET records = CASE WHEN $7 THEN pipeline_runs.records ELSE 0 END + EXCLUDED.records,
                 rejected = EXCLUDED.rejected, file_created_at = EXCLUDED.file_created_at,
                 details = EXCLUDED.details, recorded_at = now()",
            &[
                (&run_ids, Type::TEXT_ARRAY),
                (&stages, Type::TEXT_ARRAY),
                (&column(|r| r.records), Type::INT8_ARRAY),
                (&column(|r| r.rejected), Type::INT8_ARRAY),
                (&created, Type::TEXT_ARRAY),
                (&details, Type::TEXT_ARRAY),
                (&(again == Again::Add), Type::BOOL),
            ],
        )
        .with_context(|| format!("recording the stages {stages:?} in pipeline_runs"))?;
    Ok(())
}
