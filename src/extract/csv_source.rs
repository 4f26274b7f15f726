//! Reads a CSV in the data set's layout ([`crate::dataset`]) into the collector, so that a file
//! goes through the API's validation, on every core: a thread cuts the file into chunks of
//! whole records (a newline outside quotes ends one), the workers parse and validate them and
//! make their `raw.jsonl` lines ([`crate::parallel`]), and the collector keeps them in the
//! file's order, so the output is what one thread makes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::collector::{Checked, Checker};
use super::{Collector, SourceStats, StageFiles};
use crate::dataset;
use crate::pan::PanProtector;
use crate::parallel;
use crate::progress::Progress;

/// Bytes of whole records a chunk (at least; a record longer than this makes a longer chunk).
const CHUNK_BYTES: usize = 1 << 20;

/// Fewer bytes than any record of the data set holds (they hold some 270).
const RECORD_BYTES_AT_LEAST: u64 = 200;

/// What a worker made of a chunk: each record's outcome, the valid ones' lines one after the
/// other, and the chunk (a duplicate's row is read from it again).
struct Parsed {
    records: Vec<Record>,
    lines: Vec<u8>,
    text: Vec<u8>,
}

/// One record of a chunk.
enum Record {
    /// Checked; a valid one's line is `lines[line]`, its CSV text `text[csv]`.
    Checked {
        checked: Checked,
        line: std::ops::Range<usize>,
        csv: std::ops::Range<usize>,
    },
    /// Not a record of the layout: why, and its CSV text `text[csv]`.
    Unreadable {
        reason: String,
        csv: std::ops::Range<usize>,
    },
}

/// Rows are kept until `max_records` are: then the reading stops.
#[derive(Debug, thiserror::Error)]
#[error("enough records")]
struct Enough;

pub(crate) fn read(
    path: &Path,
    max_records: u64,
    collector: &mut Collector<StageFiles>,
) -> Result<SourceStats> {
    let (headers, start) = header(path)?;
    let mut file =
        File::open(path).with_context(|| format!("cannot open CSV {}", path.display()))?;
    file.seek(SeekFrom::Start(start))
        .with_context(|| format!("cannot read {}", path.display()))?;
    // The data set's records are some 270 bytes: room for the keys of every record.
    let size = file.metadata().map_or(0, |m| m.len());
    collector.expect((size / RECORD_BYTES_AT_LEAST).min(max_records));
    let mut cutter = Cutter::new(file);
    let next = || {
        cutter
            .next_chunk()
            .with_context(|| format!("cannot read {}", path.display()))
    };
    let pan = collector.pan().clone();
    let layout = dataset::Layout::new(&headers);
    let parse = |(record, checker): &mut (csv::StringRecord, Checker), text: Vec<u8>| {
        Ok(parse(&headers, &layout, checker, record, text))
    };
    let worker = || (csv::StringRecord::new(), Checker::new(pan.clone()));
    let mut line = 1u64;
    let mut progress = Progress::new("extract", None);
    let keep = |parsed: Parsed| -> Result<()> {
        progress.add(parsed.records.len() as u64);
        let mut kept = Kept::default();
        for record in parsed.records {
            if collector.records() + kept.records >= max_records {
                kept.write(collector, &parsed.lines)?;
                return Err(Enough.into());
            }
            line += 1;
            let origin = || format!("csv:{} line {line}", path.display());
            match record {
                Record::Checked { checked, line, csv } => {
                    let redacted =
                        |pan: &PanProtector| redact(&headers, &read_one(&parsed.text[csv]), pan);
                    if collector.take(checked, origin, redacted)? {
                        kept.add(line, collector, &parsed.lines)?;
                    }
                }
                Record::Unreadable { reason, csv } => {
                    let text = String::from_utf8_lossy(&parsed.text[csv]);
                    collector.unreadable(reason, &origin(), &text)?
                }
            }
        }
        kept.write(collector, &parsed.lines)
    };
    match parallel::map_ordered(next, worker, parse, keep) {
        Err(e) if !e.is::<Enough>() => Err(e),
        _ => Ok(SourceStats::default()),
    }
}

/// Lines of a chunk kept and not written yet: consecutive ones are written at once (a chunk's
/// lines are most of the output, and most are consecutive: one copy of them fewer).
#[derive(Default)]
struct Kept {
    lines: std::ops::Range<usize>,
    records: u64,
}

impl Kept {
    fn add(
        &mut self,
        line: std::ops::Range<usize>,
        to: &mut Collector<StageFiles>,
        lines: &[u8],
    ) -> Result<()> {
        if line.start != self.lines.end {
            self.write(to, lines)?;
            self.lines = line.start..line.start;
        }
        self.lines.end = line.end;
        self.records += 1;
        Ok(())
    }

    fn write(&mut self, to: &mut Collector<StageFiles>, lines: &[u8]) -> Result<()> {
        to.keep(
            &lines[self.lines.clone()],
            std::mem::take(&mut self.records),
        )?;
        self.lines.start = self.lines.end;
        Ok(())
    }
}

/// The CSV's header, checked to be the data set's layout, and where its records start.
fn header(path: &Path) -> Result<(csv::StringRecord, u64)> {
    let mut reader = csv::ReaderBuilder::new()
        .from_path(path)
        .with_context(|| format!("cannot open CSV {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    if !dataset::is_layout(&headers) {
        anyhow::bail!(crate::error::Failure::BadInput(format!(
            "{} is not in the data set's layout: no trans_date_trans_time column",
            path.display()
        )));
    }
    Ok((headers, reader.position().byte()))
}

/// A chunk's records, parsed and checked (on a worker: its checker, and its record reused).
fn parse(
    headers: &csv::StringRecord,
    layout: &dataset::Layout,
    checker: &mut Checker,
    record: &mut csv::StringRecord,
    text: Vec<u8>,
) -> Parsed {
    let mut parsed = Parsed {
        records: Vec::new(),
        lines: Vec::with_capacity(2 * text.len()), // a JSON line is some 1.6 times its CSV row
        text: Vec::new(),
    };
    let mut reader = records(&text);
    loop {
        let start = reader.position().byte() as usize;
        let read = reader.read_record(record);
        let csv = start..reader.position().byte() as usize;
        let unreadable = |reason| Record::Unreadable {
            reason,
            csv: csv.clone(),
        };
        match read {
            Ok(false) => break,
            Ok(true) if record.len() != headers.len() => parsed.records.push(unreadable(format!(
                "unreadable CSV row: {} fields where the header has {}",
                record.len(),
                headers.len()
            ))),
            Ok(true) => {
                let first = parsed.lines.len();
                let redacted = |pan: &PanProtector| redact(headers, record, pan);
                let checked = checker.check(&layout.row(record), &mut parsed.lines, redacted);
                parsed.records.push(Record::Checked {
                    checked,
                    line: first..parsed.lines.len(),
                    csv,
                });
            }
            Err(e) => parsed
                .records
                .push(unreadable(format!("unreadable CSV row: {e}"))),
        }
    }
    drop(reader);
    parsed.text = text;
    parsed
}

/// A reader of a chunk's records: no header (the file's is read once), any number of fields
/// (checked against the header's).
fn records(text: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text)
}

/// A record as a rejection keeps it.
fn redact(headers: &csv::StringRecord, record: &csv::StringRecord, pan: &PanProtector) -> Value {
    crate::transaction::redacted_row(&dataset::row(headers, record), pan)
}

/// The record of a CSV text of one record.
fn read_one(text: &[u8]) -> csv::StringRecord {
    let mut record = csv::StringRecord::new();
    // It was read once already, from the same bytes.
    let _ = records(text).read_record(&mut record);
    record
}

/// Cuts a file into chunks of whole CSV records: a chunk ends after a newline outside quotes.
/// Quotes are read as the CSV reader reads them: a quote opens a quoted field only at the start
/// of a field (elsewhere, as in `Psy"chologist`, it is text), and inside one a doubled quote is
/// text, a single one closes it.
struct Cutter {
    file: File,
    /// Read but not yet in a chunk: the start of the next record onwards.
    rest: Vec<u8>,
    /// Whether `rest`'s scanned part ends inside quotes, and how much of it is scanned.
    in_quotes: bool,
    scanned: usize,
    eof: bool,
}

impl Cutter {
    fn new(file: File) -> Self {
        Cutter {
            file,
            rest: Vec::new(),
            in_quotes: false,
            scanned: 0,
            eof: false,
        }
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.rest.len() >= CHUNK_BYTES || self.eof {
                if let Some(end) = self.last_record_end() {
                    let tail = self.rest.split_off(end);
                    self.scanned -= end;
                    return Ok(Some(std::mem::replace(&mut self.rest, tail)));
                }
                if self.eof {
                    // No newline outside quotes left: the rest is the last record.
                    self.scanned = 0;
                    return Ok((!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest)));
                }
            }
            let had = self.rest.len();
            self.rest.resize(had + CHUNK_BYTES, 0);
            let got = self.file.read(&mut self.rest[had..])?;
            self.rest.truncate(had + got);
            self.eof = got == 0;
        }
    }

    /// Scans `rest` on from where it stopped; the end of its last complete record, if any.
    /// (Only quotes and newlines matter: memchr jumps from one to the next.) A quote inside a
    /// quoted field that ends what was read is decided once more is read.
    fn last_record_end(&mut self) -> Option<usize> {
        let mut end = None;
        let mut at = self.scanned;
        self.scanned = self.rest.len();
        while let Some(found) = memchr::memchr2(b'"', b'\n', &self.rest[at..]) {
            let i = at + found;
            at = i + 1;
            match (self.rest[i], self.in_quotes) {
                (b'\n', false) => end = Some(i + 1),
                (b'\n', true) => {}
                (_, false) => self.in_quotes = i == 0 || matches!(self.rest[i - 1], b',' | b'\n'),
                (_, true) => match self.rest.get(i + 1) {
                    Some(b'"') => at = i + 2,
                    Some(_) => self.in_quotes = false,
                    None if self.eof => self.in_quotes = false,
                    None => {
                        self.scanned = i;
                        break;
                    }
                },
            }
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks a Cutter makes of `text`.
    fn chunks(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let mut cutter = Cutter::new(File::open(&path).unwrap());
        let mut out = Vec::new();
        while let Some(chunk) = cutter.next_chunk().unwrap() {
            out.push(String::from_utf8(chunk).unwrap());
        }
        out
    }

    #[test]
    fn chunks_are_whole_records_whatever_the_quotes_hold() {
        // A quoted field with newlines and doubled quotes, CRLF endings, no final newline,
        // records longer than a chunk.
        let long = "x".repeat(CHUNK_BYTES + 10);
        let records = [
            "1,plain\n".to_string(),
            "2,\"a\nquoted \"\"field\"\"\nover lines\"\r\n".to_string(),
            format!("3,{long}\n"),
            format!("4,\"{long}\n{long}\"\n"),
            "5,Psy\"chologist, a quote inside an unquoted field\n".to_string(),
            "6,\"a quoted\nrecord after it\"\n".to_string(),
            "7,last without newline".to_string(),
        ];
        let text = records.concat();
        let got = chunks(&text);
        assert_eq!(got.concat(), text, "nothing lost or reordered");
        for chunk in &got {
            let starts_a_record = records.iter().any(|r| chunk.starts_with(r.as_str()));
            assert!(
                starts_a_record,
                "a chunk starts a record: {:?}",
                &chunk[..20]
            );
            let mut parsed = records_of(chunk);
            assert!(parsed.all(|r| r.is_ok()), "a chunk parses whole");
        }
        assert!(got.len() >= 2, "the long records make several chunks");
        assert!(chunks("").is_empty());
    }

    /// Where a record ends, as the CSV reader reads quotes: a quote inside an unquoted field is
    /// text, so the newline inside the quoted field that follows is not an end.
    #[test]
    fn a_quote_inside_an_unquoted_field_is_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "").unwrap();
        let mut cutter = Cutter::new(File::open(&path).unwrap());
        let text = "1,Psy\"chologist\n2,\"quoted\nover two lines\",x\n3,\"open";
        cutter.rest = text.as_bytes().to_vec();
        let end = cutter.last_record_end().unwrap();
        assert_eq!(
            &text[..end],
            "1,Psy\"chologist\n2,\"quoted\nover two lines\",x\n"
        );
        assert!(cutter.in_quotes, "the third record's quoted field goes on");
        let whole: Vec<_> = records_of(&text[..end]).map(|r| r.unwrap().len()).collect();
        assert_eq!(whole, [2, 3]);
    }

    fn records_of(chunk: &str) -> impl Iterator<Item = csv::Result<csv::StringRecord>> + '_ {
        records(chunk.as_bytes()).into_records()
    }
}
