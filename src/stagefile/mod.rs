//! The stage-file contract (docs/stage-files.md): JSON Lines, a header line naming schema,
//! version, run, stage, time and record counts, then one record per line. Written atomically
//! (temporary file, then rename) with owner-only permissions; read with schema, version and
//! record-count checks. `writer.rs` writes one, `reader.rs` reads one, record by record or in
//! blocks; `rejected.rs` is the record a stage could not use.

mod reader;
mod rejected;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use reader::{BlockReader, StageReader};
pub use rejected::{Rejected, REJECTED_SCHEMA};
pub use writer::StageWriter;

use crate::error::Failure;

/// The only stage-file version this build reads and writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub schema: String,
    pub version: u32,
    pub run_id: String,
    pub stage: String,
    pub created_at: String,
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

impl Header {
    pub fn new(schema: &str, run_id: &str, stage: &str, meta: serde_json::Value) -> Self {
        Header {
            schema: schema.to_string(),
            version: VERSION,
            run_id: run_id.to_string(),
            stage: stage.to_string(),
            created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            counts: BTreeMap::new(),
            meta,
        }
    }

    /// The number of records the file holds.
    pub fn records(&self) -> u64 {
        self.counts.get("records").copied().unwrap_or(0)
    }

    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.created_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Reads only the header of a stage file, if the file exists.
pub fn read_header(path: &Path) -> Result<Option<Header>> {
    if !path.exists() {
        return Ok(None);
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = serde_json::from_str(line.trim_end())
        .map_err(|e| Failure::BadInput(format!("{} has no valid header: {e}", path.display())))?;
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    #[test]
    fn round_trip_and_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut w = StageWriter::create(&path, Header::new("s", "r", "t", serde_json::Value::Null))
            .unwrap();
        for i in 0..3u32 {
            w.write(&i).unwrap();
        }
        assert!(!path.exists(), "file appears only when finished");
        let header = w.finish(BTreeMap::new()).unwrap();
        assert_eq!(header.records(), 3);
        let mut r = StageReader::<u32>::open(&path, "s").unwrap();
        let mut got = vec![];
        while let Some(v) = r.next_record().unwrap() {
            got.push(v);
        }
        assert_eq!(got, vec![0, 1, 2]);

        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() - 2]).unwrap();
        let mut r = StageReader::<u32>::open(&path, "s").unwrap();
        let err = std::iter::from_fn(|| r.next_record().transpose()).find_map(Result::err);
        assert!(err.unwrap().to_string().contains("truncated"));
    }

    /// Reads every record of `path` with both readers; the first error of each.
    fn read_both(path: &Path) -> (Option<String>, Option<String>) {
        let mut r = StageReader::<u32>::open(path, "s").unwrap();
        let by_line = std::iter::from_fn(|| r.next_record().transpose())
            .find_map(Result::err)
            .map(|e| e.to_string());
        let mut r = StageReader::<u32>::open(path, "s").unwrap().blocks();
        let mut text = String::new();
        let by_block = loop {
            match r.next_lines(&mut text, 1 << 20) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        (by_line, by_block)
    }

    /// A finished stage file of schema "s" at `path` holding `records`.
    fn written<T: Serialize>(path: &Path, records: &[T]) {
        let header = Header::new("s", "r", "t", serde_json::Value::Null);
        let mut w = StageWriter::create(path, header).unwrap();
        records.iter().for_each(|r| w.write(r).unwrap());
        w.finish(BTreeMap::new()).unwrap();
    }

    #[test]
    fn a_cut_last_line_and_an_extra_line_are_refused_by_both_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        written(&path, &[10u32, 20, 345]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(read_both(&path), (None, None));

        // "345" cut to "34": still a number, still three lines, but no final newline.
        fs::write(&path, &text[..text.len() - 2]).unwrap();
        for err in <[_; 2]>::from(read_both(&path)) {
            let err = err.expect("a cut file is refused");
            assert!(err.contains("record 3 ends without its newline"), "{err}");
        }

        fs::write(&path, format!("{text}7\n")).unwrap();
        for err in <[_; 2]>::from(read_both(&path)) {
            let err = err.expect("an extra line is refused");
            assert!(
                err.contains("4 records but its header announces 3: lines were added"),
                "{err}"
            );
        }
    }

    #[test]
    fn blocks_hold_every_line_once_whatever_their_size_and_a_small_file_no_megabyte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let records: Vec<String> = (0..20_000u32)
            .map(|i| "x".repeat(i as usize % 300))
            .collect();
        written(&path, &records);
        let text = fs::read_to_string(&path).unwrap();
        let body = text.split_once('\n').unwrap().1;
        for size in [1, 100, 5_000, 70_000, 1 << 20, 1 << 24] {
            let mut r = StageReader::<String>::open(&path, "s").unwrap().blocks();
            let (mut text, mut all, mut lines) = (String::new(), String::new(), 0);
            while let n @ 1.. = r.next_lines(&mut text, size).unwrap() {
                lines += n;
                all.push_str(&text);
            }
            assert_eq!(
                (lines, all == body),
                (records.len(), true),
                "blocks of {size}"
            );
        }

        let small = dir.path().join("small.jsonl");
        written(&small, &["one record"]);
        let mut r = StageReader::<String>::open(&small, "s").unwrap().blocks();
        let mut text = String::new();
        assert_eq!(r.next_lines(&mut text, 1 << 20).unwrap(), 1);
        assert!(
            text.capacity() <= 8192,
            "{} bytes for one record",
            text.capacity()
        );
    }

    /// Records read one by one, then the rest in blocks: every record once, in order, and the
    /// count still checked at the end.
    #[test]
    fn a_reader_goes_on_in_blocks_where_its_records_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let records: Vec<u32> = (0..5_000).collect();
        written(&path, &records);
        let mut r = StageReader::<u32>::open(&path, "s").unwrap();
        let mut got: Vec<u32> = (0..3).map(|_| r.next_record().unwrap().unwrap()).collect();
        let mut blocks = r.blocks();
        let mut text = String::new();
        while blocks.next_lines(&mut text, 1_000).unwrap() > 0 {
            got.extend(text.lines().map(|l| l.parse::<u32>().unwrap()));
        }
        assert_eq!(got, records);

        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{text}5000\n")).unwrap();
        let mut r = StageReader::<u32>::open(&path, "s").unwrap();
        r.next_record().unwrap();
        let mut blocks = r.blocks();
        let err = loop {
            match blocks.next_lines(&mut String::new(), 1 << 20) {
                Ok(0) => panic!("an extra line went unnoticed"),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("ends after 5001 records"), "{err}");
    }

    #[test]
    fn unknown_version_and_schema_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let w = StageWriter::create(&path, Header::new("s", "r", "t", serde_json::Value::Null))
            .unwrap();
        w.finish(BTreeMap::new()).unwrap();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"version\":1", "\"version\":7");
        fs::write(&path, text).unwrap();
        let err = StageReader::<u32>::open(&path, "s")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("version 7"), "{err}");
        let err = StageReader::<u32>::open(&path, "other")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("expected \"other\""), "{err}");
    }

    #[test]
    fn dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut w = StageWriter::create(&path, Header::new("s", "r", "t", serde_json::Value::Null))
            .unwrap();
        w.write(&1u32).unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
