//! The run audit, `pipeline_runs`: one row per (run, stage), written by `load` (from the stage
//! files' headers, and its own counts) and `alert`. The dashboard's freshness figure reads it.

use anyhow::{Context, Result};

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

/// Records `rows` in `pipeline_runs`: one statement, prepared once (a load records four).
pub fn record(
    client: &mut impl postgres::GenericClient,
    rows: &[StageRow],
    again: Again,
) -> Result<()> {
    let statement = client
        .prepare(
            "INSERT INTO pipeline_runs (run_id, stage, records, rejected, file_created_at, details)
             VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6::text::jsonb)
             ON CONFLICT (run_id, stage) DO UPDATE
             SET records = CASE WHEN $7 THEN pipeline_runs.records ELSE 0 END + EXCLUDED.records,
                 rejected = EXCLUDED.rejected, file_created_at = EXCLUDED.file_created_at,
                 details = EXCLUDED.details, recorded_at = now()",
        )
        .context("preparing the pipeline_runs statement")?;
    for row in rows {
        client
            .execute(
                &statement,
                &[
                    &row.run_id,
                    &row.stage,
                    &row.records,
                    &row.rejected,
                    &row.file_created_at,
                    &row.details.to_string(),
                    &(again == Again::Add),
                ],
            )
            .with_context(|| format!("recording the {} stage in pipeline_runs", row.stage))?;
    }
    Ok(())
}
