//! What `load` sends over binary COPY, and where: a scored record's columns ([`FIELDS`], one
//! list for both destinations), the batch's own column (run id) when the rows go straight into
//! `payments_scored`, and the session each record goes to.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::copy::CopyEncoder;
use crate::error::Failure;
use crate::parallel;
use crate::score::{ScoredRecord, SCORED_SCHEMA};
use crate::stagefile::StageReader;

/// What the binary COPY sends of a scored record: each column and how it is encoded. The
/// staging table (src/load/sql/staging.sql) has these columns in this order (a unit test holds
/// them equal); `payments_scored` has them under the same names.
type Field = (&'static str, fn(&mut CopyEncoder, &ScoredRecord));

pub const FIELDS: [Field; 32] = [
    ("trans_num", |e, r| e.text(&r.tx.trans_num)),
    ("trans_time", |e, r| e.timestamptz_ms(r.tx.trans_time_ms)),
    ("cc_last4", |e, r| e.text(&r.tx.cc_last4)),
    ("cc_hash", |e, r| e.text(&r.tx.cc_hash)),
    ("merchant", |e, r| e.text(&r.tx.merchant)),
    ("category", |e, r| e.text(&r.tx.category)),
    ("amt", |e, r| e.numeric_cents(r.tx.amt_cents())),
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
    // The model's inputs as it scored them (absent from files scored before they were kept).
    ("features", |e, r| e.opt_float8_array(r.features.as_deref())),
    // What decided, when rules were in force (NULL without them).
    ("rule_set", |e, r| {
        e.opt_text(r.decision().map(|d| d.rule_set.as_str()))
    }),
    ("decision", |e, r| {
        e.opt_text(r.decision().map(|d| d.action.as_str()))
    }),
    ("decided_by_rule", |e, r| {
        e.opt_text(r.decision().and_then(|d| d.rule.as_deref()))
    }),
    ("rules_matched", |e, r| {
        e.opt_text_array(r.decision().map(|d| d.matched.as_slice()))
    }),
    // A challenger's score, when one ran in shadow (NULL without one).
    ("challenger_model_version", |e, r| {
        e.opt_text(r.challenger().map(|c| c.model_version.as_str()))
    }),
    ("challenger_probability", |e, r| {
        e.opt_float8(r.challenger().map(|c| c.probability))
    }),
    ("challenger_predicted_fraud", |e, r| {
        e.opt_bool(r.challenger().map(|c| c.predicted_fraud))
    }),
    // The payment's own, else its batch's (filled in by `stream`).
    ("captured_at", |e, r| {
        e.timestamptz_ms(r.tx.captured_at_ms.expect("filled in when read"))
    }),
];

/// Where the rows of a COPY go: the table and its columns, and what every row ends with.
pub struct Target {
    statement: String,
    columns: i16,
    /// The encoded values of the columns that are the same for every row of the batch.
    suffix: Vec<u8>,
}

impl Target {
    /// The session's staging table (the upsert reads it).
    pub fn staging() -> Self {
        Target::new("payments_staging", &[], Vec::new())
    }

    /// `payments_scored` itself, for a batch whose payments are all new: the run's id on
    /// every row, as the upsert would write it (loaded_at and updated_at take their defaults,
    /// as in the upsert's INSERT).
    pub fn new_rows(run_id: &str) -> Self {
        let mut suffix = CopyEncoder::new();
        suffix.text(run_id);
        Target::new("payments_scored", &["run_id"], suffix.buf)
    }

    fn new(table: &str, constant: &[&str], suffix: Vec<u8>) -> Self {
        let names: Vec<&str> = FIELDS
            .iter()
            .map(|(name, _)| *name)
            .chain(constant.iter().copied())
            .collect();
        Target {
            statement: format!(
                "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                names.join(", ")
            ),
            columns: names.len() as i16,
            suffix,
        }
    }

    fn encode(&self, enc: &mut CopyEncoder, r: &ScoredRecord) {
        enc.row(self.columns);
        for (_, field) in FIELDS {
            field(enc, r);
        }
        enc.buf.extend_from_slice(&self.suffix);
    }
}

/// Streams every record of `scored.jsonl` to `target` in the session its trans_num belongs to
/// (binary COPY, encoded on every core); returns how many records. A record without its own
/// capture time gets `captured_at` (its batch's). The COPY of each session is finished, even
/// when another's failed, so that every session can roll back to where it was.
pub fn stream(
    path: &Path,
    sessions: &mut [postgres::Transaction<'_>],
    target: &Target,
    captured_at: DateTime<Utc>,
) -> Result<u64> {
    let input = StageReader::<ScoredRecord>::open(path, SCORED_SCHEMA)?;
    let mut writers = Vec::with_capacity(sessions.len());
    for txn in sessions.iter_mut() {
        let mut writer = txn
            .copy_in(target.statement.as_str())
            .with_context(|| format!("starting `{}`", target.statement))?;
        send(&mut writer, &CopyEncoder::header())?;
        writers.push(writer);
    }
    let n = writers.len();
    let mut records = 0u64;
    let streamed = parallel::map_chunks(
        "load",
        input.blocks(),
        || (),
        |_, chunk| {
            let mut encoders: Vec<CopyEncoder> = (0..n).map(|_| CopyEncoder::new()).collect();
            for (no, line) in chunk.lines() {
                let mut r = serde_json::from_str::<ScoredRecord>(line)
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.check().map(|()| r))
                    .map_err(|e| {
                        Failure::BadInput(format!(
                            "{} record {no}: {e}: this record cannot be stored; nothing of the batch was loaded (fix the file, or re-run the stage that wrote it)",
                            path.display()
                        ))
                    })?;
                r.tx.captured_at_ms
                    .get_or_insert(captured_at.timestamp_millis());
                target.encode(&mut encoders[session_of(&r.tx.trans_num, n)], &r);
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
    );
    // Each writer finished, the first error kept: the stream's, else a session's.
    let mut result = streamed.map(|()| records);
    for mut writer in writers {
        let finished = send(&mut writer, &CopyEncoder::trailer()).and_then(|()| {
            writer
                .finish()
                .with_context(|| format!("finishing `{}`", target.statement))
        });
        if let (Ok(_), Err(e)) = (&result, finished) {
            result = Err(e);
        }
    }
    result
}

fn send(writer: &mut postgres::CopyInWriter<'_>, bytes: &[u8]) -> Result<()> {
    writer
        .write_all(bytes)
        .context("streaming rows to PostgreSQL")
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

#[cfg(test)]
mod tests {
    use super::FIELDS;

    /// The staging table's columns are the encoder's fields, in their order.
    #[test]
    fn the_staging_table_has_the_encoders_columns() {
        let staging = include_str!("sql/staging.sql");
        let table = "payments_staging (";
        let start = staging.find(table).expect("the CREATE TABLE") + table.len();
        let body = &staging[start..staging.rfind(')').unwrap()];
        let columns: Vec<&str> = body
            .split(',')
            .map(|c| c.split_whitespace().next().unwrap())
            .filter(|c| !c.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(columns, FIELDS.map(|(name, _)| name));
    }
}
