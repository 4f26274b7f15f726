//! The journal of a minute the live path captures: `raw.journal` (each kept payment's
//! `raw.jsonl` line) and `raw.rejected.journal` (each rejected row, with its reason), appended
//! to in the minute's run directory and made durable after every response of the API, before
//! anything is processed. When the minute closes they become its `raw.jsonl` and
//! `raw.rejected.jsonl` (whole stage files, renamed into place) and are removed. A journal left
//! by a process that died is read again by the next one (its last line, if cut, dropped: it was
//! never made durable, so never processed).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::extract::collector::{Sink, RAW_SCHEMA};
use crate::rundir::RunDir;
use crate::stagefile::{Header, Rejected, StageWriter, REJECTED_SCHEMA};

/// The journal's file of kept payments.
pub const RAW: &str = "raw.journal";
/// The journal's file of rejected rows.
pub const REJECTED: &str = "raw.rejected.journal";

/// One append-only file of JSON lines.
struct Lines {
    path: PathBuf,
    file: File,
    lines: u64,
}

impl Lines {
    /// Opens `path` for appending (created, mode 0600); returns it and the complete lines it
    /// holds already, a cut last line removed from the file.
    fn open(path: PathBuf) -> Result<(Lines, String)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(file = %path.display(), bytes = text.len() - whole, "dropping the cut last line of a journal (never made durable, never processed)");
            file.set_len(whole as u64)
                .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
                .with_context(|| format!("cannot cut {}", path.display()))?;
            text.truncate(whole);
        }
        let lines = text.lines().count() as u64;
        Ok((Lines { path, file, lines }, text))
    }

    fn append(&mut self, bytes: &[u8], lines: u64) -> Result<()> {
        self.file
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.lines += lines;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("cannot make {} durable", self.path.display()))
    }
}

/// A minute's journal: a [`Sink`] of the live path's collector. What was kept since the last
/// [`Journal::take_pending`] waits there for the micro-batch that processes it.
pub struct Journal {
    raw: Lines,
    rejected: Lines,
    pending: Vec<u8>,
    pending_records: u64,
}

impl Journal {
    /// The journal of the minute directory `dir`, and the `raw.jsonl` lines it holds already
    /// (a process that died left them; they are pending again: processing is idempotent).
    pub fn open(dir: &Path) -> Result<(Journal, String)> {
        let (raw, kept) = Lines::open(dir.join(RAW))?;
        let (rejected, _) = Lines::open(dir.join(REJECTED))?;
        let journal = Journal {
            pending_records: raw.lines,
            pending: kept.clone().into_bytes(),
            raw,
            rejected,
        };
        Ok((journal, kept))
    }

    /// Makes what was written durable: after it, a crash loses none of it.
    pub fn sync(&self) -> Result<()> {
        self.raw.sync()?;
        self.rejected.sync()
    }

    /// How many payments wait for their micro-batch.
    pub fn pending(&self) -> u64 {
        self.pending_records
    }

    /// The lines kept since the last call, and how many.
    pub fn take_pending(&mut self) -> (Vec<u8>, u64) {
        let records = std::mem::take(&mut self.pending_records);
        (std::mem::take(&mut self.pending), records)
    }

    /// Turns the journal into the minute's `raw.jsonl` and `raw.rejected.jsonl` (whole stage
    /// files, their headers saying the live path captured them, with `counts`), then removes
    /// it. Returns the raw file's header.
    pub fn close(
        self,
        dir: &RunDir,
        source: &str,
        counts: BTreeMap<String, u64>,
    ) -> Result<Header> {
        self.sync()?;
        let meta = serde_json::json!({ "source": source, "captured_by": "live" });
        let header = |schema: &str| Header::new(schema, &dir.run_id, "live", meta.clone());
        let copy = |lines: &Lines, writer: &mut StageWriter| -> Result<()> {
            let text = fs::read(&lines.path)
                .with_context(|| format!("cannot read {}", lines.path.display()))?;
            writer.write_lines(&text, lines.lines)
        };
        let mut rejected = StageWriter::create(&dir.raw_rejected(), header(REJECTED_SCHEMA))?;
        copy(&self.rejected, &mut rejected)?;
        rejected.finish(counts.clone())?;
        let mut raw = StageWriter::create(&dir.raw(), header(RAW_SCHEMA))?;
        copy(&self.raw, &mut raw)?;
        let mut counts = counts;
        counts.insert("rejected".into(), self.rejected.lines);
        let written = raw.finish(counts)?;
        remove(&dir.path);
        Ok(written)
    }
}

/// Removes a minute's journal (its raw file is whole: the journal is no longer needed).
pub fn remove(dir: &Path) {
    for name in [RAW, REJECTED] {
        let _ = fs::remove_file(dir.join(name));
    }
}

impl Sink for Journal {
    fn keep(&mut self, lines: &[u8], records: u64) -> Result<()> {
        self.raw.append(lines, records)?;
        self.pending.extend_from_slice(lines);
        self.pending_records += records;
        Ok(())
    }

    fn reject(&mut self, rejected: &Rejected) -> Result<()> {
        let mut line = serde_json::to_vec(rejected)?;
        line.push(b'\n');
        self.rejected.append(&line, 1)
    }

    fn kept(&self) -> u64 {
        self.raw.lines
    }

    fn rejected(&self) -> u64 {
        self.rejected.lines
    }
}
