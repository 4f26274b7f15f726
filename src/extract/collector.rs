//! What `extract` and `fraudctl live` do with each row a source reads (the API's, a CSV's):
//! validate it ([`Checker`], on any thread), de-duplicate it by trans_num, and route it to a
//! [`Sink`]: the raw file or the rejected file of a run ([`StageFiles`]), or the live path's
//! journal of its minute.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::pan::{masked_excerpt, PanProtector};
use crate::rundir::RunDir;
use crate::stagefile::{Header, Rejected, StageWriter, REJECTED_SCHEMA};
use crate::transaction::{redacted_row, validate_into, Row, Transaction};

use super::SourceStats;

/// The schema of `raw.jsonl` (docs/stage-files.md), which the collector writes.
pub const RAW_SCHEMA: &str = "fraudctl.raw";

/// Where a collector's rows go: the kept ones as `raw.jsonl` lines, the rejected ones with
/// their reason.
pub(crate) trait Sink {
    /// Keeps `records` rows' lines (each ending with its newline), in their order.
    fn keep(&mut self, lines: &[u8], records: u64) -> Result<()>;
    fn reject(&mut self, rejected: &Rejected) -> Result<()>;
    /// Rows kept so far.
    fn kept(&self) -> u64;
    /// Rows rejected so far.
    fn rejected(&self) -> u64;
}

/// A run's `raw.jsonl` and `raw.rejected.jsonl`, written as the rows come ([`StageWriter`]).
pub(crate) struct StageFiles {
    raw: StageWriter,
    rejected: StageWriter,
}

impl StageFiles {
    /// The run's files, their headers naming `source`.
    pub fn create(dir: &RunDir, source: &str) -> Result<Self> {
        let meta = serde_json::json!({ "source": source });
        let header = |schema: &str| Header::new(schema, &dir.run_id, "extract", meta.clone());
        Ok(StageFiles {
            raw: StageWriter::create(&dir.raw(), header(RAW_SCHEMA))?,
            rejected: StageWriter::create(&dir.raw_rejected(), header(REJECTED_SCHEMA))?,
        })
    }

    /// Finishes both files, the rejected one first (the raw file's presence marks the
    /// extraction as complete); returns the raw and rejected records.
    pub fn finish(self, duplicates: u64, stats: &SourceStats) -> Result<(u64, u64)> {
        let rejected = self.rejected.records();
        let counts = |extra: &[(&str, u64)]| -> BTreeMap<String, u64> {
            extra.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let shared = [
            ("duplicates", duplicates),
            ("requests", stats.requests),
            ("source_errors", stats.source_errors),
        ];
        self.rejected.finish(counts(&shared))?;
        let header = self.raw.finish(counts(
            &[shared.as_slice(), &[("rejected", rejected)]].concat(),
        ))?;
        if rejected > 0 {
            tracing::warn!(
                rejected,
                records = header.records(),
                "some records were rejected; see raw.rejected.jsonl"
            );
        }
        Ok((header.records(), rejected))
    }
}

impl Sink for StageFiles {
    fn keep(&mut self, lines: &[u8], records: u64) -> Result<()> {
        self.raw.write_lines(lines, records)
    }
    fn reject(&mut self, rejected: &Rejected) -> Result<()> {
        self.rejected.write(rejected)
    }
    fn kept(&self) -> u64 {
        self.raw.records()
    }
    fn rejected(&self) -> u64 {
        self.rejected.records()
    }
}

/// Validates, de-duplicates and routes records to a [`Sink`].
pub(crate) struct Collector<S> {
    out: S,
    seen: HashSet<u128>,
    duplicates: u64,
    /// Checks the rows of [`Collector::row`].
    checker: Checker,
    /// A row's line, reused ([`Collector::row`]).
    line: Vec<u8>,
}

impl<S: Sink> Collector<S> {
    pub fn new(out: S, pan: PanProtector) -> Self {
        Collector {
            out,
            seen: HashSet::new(),
            duplicates: 0,
            checker: Checker::new(pan),
            line: Vec::new(),
        }
    }

    pub fn records(&self) -> u64 {
        self.out.kept()
    }

    pub fn rejected(&self) -> u64 {
        self.out.rejected()
    }

    /// Where the rows went.
    pub fn out(&mut self) -> &mut S {
        &mut self.out
    }

    /// The sink and the duplicates met, once every row is collected.
    pub fn into_parts(self) -> (S, u64) {
        (self.out, self.duplicates)
    }

    /// Makes room for the keys of about `records` rows, so that de-duplicating a big file
    /// never re-hashes the keys seen so far.
    pub fn expect(&mut self, records: u64) {
        self.seen
            .reserve(usize::try_from(records).unwrap_or(usize::MAX));
    }

    /// The rows that follow were captured at `ms` (epoch ms): when the response that carries
    /// them arrived.
    pub fn captured_at(&mut self, ms: i64) {
        self.checker.captured_at_ms = Some(ms);
    }

    /// The card-number protector rows are checked with ([`Checker`]).
    pub fn pan(&self) -> &PanProtector {
        &self.checker.pan
    }

    /// Remembers the trans_nums of `raw.jsonl` lines the sink holds already (a journal opened
    /// again), so that a row of the same payment is a duplicate.
    pub fn remember(&mut self, lines: &str) {
        for line in lines.lines() {
            if let Ok(tx) = serde_json::from_str::<Transaction>(line) {
                self.seen.insert(trans_num_key(&tx.trans_num));
            }
        }
    }

    /// `raw.jsonl` lines collected already (a journal of the same minute read again): kept
    /// when their trans_num was not seen, each checked as a reader checks it.
    pub fn import(&mut self, lines: &str) -> Result<()> {
        for line in lines.lines() {
            let tx: Transaction = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("a line of a journal is not a transaction: {e}"))?;
            if self.seen.insert(trans_num_key(&tx.trans_num)) {
                self.out.keep(format!("{line}\n").as_bytes(), 1)?;
            } else {
                self.duplicates += 1;
            }
        }
        Ok(())
    }
    /// One decoded row from `origin` (a URL and request number, or a file and line).
    pub fn row(&mut self, row: &Map<String, Value>, origin: &str) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let redacted = |pan: &PanProtector| redacted_row(row, pan);
        let checked = self.checker.check(row, &mut line, redacted);
        let taken = self.take(checked, || origin.to_string(), redacted);
        let kept = match taken {
            Ok(true) => self.keep(&line, 1),
            other => other.map(|_| ()),
        };
        self.line = line;
        kept
    }

    /// A row checked by a [`Checker`] (on any thread), in input order: whether its line is to
    /// be kept ([`Collector::keep`]: a valid row whose trans_num was not seen before in this
    /// run), else it is rejected. `origin` and `redacted` make where the row came from and the
    /// row as a rejection keeps it.
    pub fn take(
        &mut self,
        checked: Checked,
        origin: impl FnOnce() -> String,
        redacted: impl FnOnce(&PanProtector) -> Value,
    ) -> Result<bool> {
        match checked {
            Checked::Valid { key } if self.seen.insert(key) => return Ok(true),
            Checked::Valid { .. } => {
                self.duplicates += 1;
                let kept = redacted(&self.checker.pan);
                // As the kept row has it: its digit runs masked, as the reason's are anyway.
                let trans_num = kept["trans_num"].as_str().unwrap_or_default();
                let reason =
                    format!("duplicate trans_num {trans_num} (already extracted in this run)");
                self.reject(reason, &origin(), Some(kept), None)
            }
            Checked::Invalid { reason, redacted } => {
                self.reject(reason, &origin(), Some(redacted), None)
            }
        }
        .map(|()| false)
    }

    /// Writes the lines of `records` rows [`Collector::take`] kept, in their order.
    pub fn keep(&mut self, lines: &[u8], records: u64) -> Result<()> {
        self.out.keep(lines, records)
    }

    /// A row or body that could not be decoded at all; its first 4096 characters are kept,
    /// digit runs masked.
    pub fn unreadable(&mut self, reason: String, origin: &str, text: &str) -> Result<()> {
        self.reject(reason, origin, None, Some(masked_excerpt(text, 4096)))
    }

    fn reject(
        &mut self,
        reason: String,
        origin: &str,
        record: Option<Value>,
        body: Option<String>,
    ) -> Result<()> {
        let reason = masked_excerpt(&reason, 1000);
        tracing::debug!(origin, reason = %reason, "record rejected");
        self.out.reject(&Rejected {
            reason,
            origin: origin.to_string(),
            record,
            body,
        })
    }
}

/// A row validated (its `raw.jsonl` line written by [`Checker::check`]), or why it is rejected and
/// the row as a rejection keeps it (card number masked). Made on any thread;
/// [`Collector::take`] keeps them in order.
pub(crate) enum Checked {
    Valid { key: u128 },
    Invalid { reason: String, redacted: Value },
}

/// Validates rows into `raw.jsonl` lines, on one thread: the card-number protector, and the
/// transaction each row is validated into (its memory reused from row to row).
pub(crate) struct Checker {
    pan: PanProtector,
    tx: Transaction,
    /// When the rows being checked were captured (the API's response arrived), epoch ms; none
    /// for a file.
    pub captured_at_ms: Option<i64>,
}

impl Checker {
    pub fn new(pan: PanProtector) -> Self {
        Checker {
            pan,
            tx: Transaction::default(),
            captured_at_ms: None,
        }
    }

    /// Validates `row`; a valid one's line (with its newline) is appended to `line`. `redacted`
    /// makes the row as a rejection keeps it ([`redact`]).
    pub fn check(
        &mut self,
        row: &impl Row,
        line: &mut Vec<u8>,
        redacted: impl FnOnce(&PanProtector) -> Value,
    ) -> Checked {
        match validate_into(row, &self.pan, &mut self.tx) {
            Ok(()) => {
                self.tx.captured_at_ms = self.captured_at_ms;
                self.tx.write_line(line);
                Checked::Valid {
                    key: trans_num_key(&self.tx.trans_num),
                }
            }
            Err(reason) => Checked::Invalid {
                reason,
                redacted: redacted(&self.pan),
            },
        }
    }
}

/// A compact key for de-duplication: the 128 bits of a lower-case hex trans_num (the data set's
/// form), else the first 128 bits of its SHA-256. Bounded memory for a million records. Exact
/// bytes, as the database's key compares them: "189A…" and "189a…" are two transactions.
pub(crate) fn trans_num_key(trans_num: &str) -> u128 {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if trans_num.len() == 32 && trans_num.bytes().all(|b| lower_hex(&b)) {
        if let Ok(v) = u128::from_str_radix(trans_num, 16) {
            return v;
        }
    }
    let digest = Sha256::digest(trans_num.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes")) | 1 << 127
}

#[cfg(test)]
mod tests {
    use super::trans_num_key;

    #[test]
    fn trans_num_keys_tell_case_apart_as_the_database_does() {
        let lower = "189a2c4b6d8e0f1a2b3c4d5e6f708192";
        let upper = "189A2C4B6D8E0F1A2B3C4D5E6F708192";
        assert_ne!(trans_num_key(lower), trans_num_key(upper));
        assert_eq!(trans_num_key(lower), trans_num_key(lower));
        assert_ne!(trans_num_key("abc"), trans_num_key("ABC"));
    }
}
