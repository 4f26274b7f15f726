//! The stage-file contract (docs/stage-files.md): JSON Lines, a header line naming schema,
//! version, run, stage, time and record counts, then one record per line. Written atomically
//! (temporary file, then rename) with owner-only permissions; read with schema, version and
//! record-count checks.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Failure;

/// The only stage-file version this build reads and writes.
pub const VERSION: u32 = 1;

/// Room left in the header line for counts that grow while records stream.
const HEADER_SLACK: usize = 512;

/// Every this many bytes written, the file's data is made durable in the background
/// ([`Syncer`]), so that the fsync at the end has little left to wait for.
const WRITEBACK_BYTES: usize = 16 << 20;

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

/// Streams records into a temporary file of its own beside `PATH` ([`temporary_name`]), then
/// [`StageWriter::finish`] rewrites the header with the final counts and renames the file into
/// place, once it holds exactly what was written. Dropped unfinished, it removes the temporary
/// file, so a failed stage never leaves a file the next stage would read as complete.
pub struct StageWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    header: Header,
    width: usize,
    records: u64,
    line: Vec<u8>,
    /// Bytes written since the last sync was asked for.
    unsynced: usize,
    /// Bytes written in all, the header included.
    written: u64,
    /// Started once WRITEBACK_BYTES are written (a small file never starts one).
    syncer: Option<Syncer>,
}

impl StageWriter {
    pub fn create(path: &Path, header: Header) -> Result<Self> {
        let tmp = temporary_name(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let width = serde_json::to_vec(&header)?.len() + HEADER_SLACK;
        out.write_all(&padded(&header, width)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(StageWriter {
            out: Some(out),
            tmp,
            path: path.to_path_buf(),
            header,
            width,
            records: 0,
            line: Vec::with_capacity(1024),
            unsynced: 0,
            written: width as u64 + 1,
            syncer: None,
        })
    }

    /// Counts `bytes` just written and, every WRITEBACK_BYTES, asks for a sync in the background.
    fn wrote(&mut self, bytes: usize) {
        self.written += bytes as u64;
        self.unsynced += bytes;
        if self.unsynced >= WRITEBACK_BYTES {
            self.unsynced = 0;
            if let (None, Some(out)) = (&self.syncer, &self.out) {
                // Without one, the fsync in `finish` does all of it.
                self.syncer = Syncer::start(out.get_ref()).ok();
            }
            if let Some(syncer) = &self.syncer {
                syncer.request();
            }
        }
    }

    pub fn write<R: Serialize + ?Sized>(&mut self, record: &R) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(&self.line)
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        self.records += 1;
        self.wrote(self.line.len());
        Ok(())
    }

    /// Writes `records` records already serialised as JSON lines (each ending in a newline).
    pub fn write_lines(&mut self, lines: &[u8], records: u64) -> Result<()> {
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(lines)
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        self.records += records;
        self.wrote(lines.len());
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Sets the final counts (`records` is set from what was written), makes the file durable
    /// and renames it into place.
    pub fn finish(mut self, counts: BTreeMap<String, u64>) -> Result<Header> {
        let mut out = self.out.take().expect("writer finished twice");
        self.header.counts = counts;
        self.header.counts.insert("records".into(), self.records);
        let tmp = self.tmp.clone();
        let io = |e: std::io::Error| {
            anyhow::Error::new(e).context(format!("cannot write {}", tmp.display()))
        };
        out.flush().map_err(io)?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&padded(&self.header, self.width)?)
            .map_err(io)?;
        if let Some(syncer) = self.syncer.take() {
            syncer.finish().map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        let on_disk = file.metadata().map_err(io)?.len();
        if on_disk != self.written {
            anyhow::bail!(
                "{} holds {on_disk} bytes where {} were written: something else wrote to it; not renamed into place",
                tmp.display(),
                self.written
            );
        }
        fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.tmp.display(),
                self.path.display()
            )
        })?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(self.header.clone())
    }
}

impl Drop for StageWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            fs::remove_file(&self.tmp).ok();
        }
    }
}

/// A temporary name of this writer's own beside `path`: `raw.jsonl.<pid>-<n>.tmp`.
fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Makes a file's data durable while it is written: `fdatasync` on a thread of its own, each
/// time one is asked for. The disk's own write cache is flushed along the way (starting the
/// kernel's writeback alone left it all to the last fsync: 0.5 s of a million-record extract
/// on this machine's virtual disk). Linux reports a failed writeback once, to whichever sync
/// comes first: the thread's error is kept and returned by [`Syncer::finish`].
struct Syncer {
    wake: SyncSender<()>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Syncer {
    fn start(file: &File) -> std::io::Result<Syncer> {
        let file = file.try_clone()?;
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("stage-file-sync".into())
            .spawn(move || woken.iter().try_for_each(|()| file.sync_data()))?;
        Ok(Syncer { wake, thread })
    }

    /// Asks for a sync; one asked for and not started yet covers this one too.
    fn request(&self) {
        let _ = self.wake.try_send(());
    }

    /// Waits for the sync under way; the first error of any.
    fn finish(self) -> std::io::Result<()> {
        drop(self.wake);
        self.thread.join().expect("a sync thread does not panic")
    }
}

fn padded(header: &Header, width: usize) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(header)?;
    anyhow::ensure!(
        line.len() <= width,
        "stage-file header grew past its reserved width"
    );
    line.resize(width, b' ');
    line.push(b'\n');
    Ok(line)
}

/// Reads a stage file, refusing an unexpected schema, an unknown version, and a record count
/// that differs from the header's (a truncated or tampered file).
pub struct StageReader<T> {
    header: Header,
    path: PathBuf,
    input: BufReader<File>,
    /// The file's length when opened.
    len: u64,
    line: String,
    /// The start of a line [`StageReader::next_lines`] read but did not hand out yet.
    partial: Vec<u8>,
    seen: u64,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> StageReader<T> {
    pub fn open(path: &Path, schema: &str) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        input
            .read_line(&mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header: Header = serde_json::from_str(line.trim_end()).map_err(|e| {
            Failure::BadInput(format!(
                "{} has no valid stage-file header: {e}",
                path.display()
            ))
        })?;
        if header.schema != schema {
            return Err(Failure::BadInput(format!(
                "{} holds schema {:?}, expected {schema:?}",
                path.display(),
                header.schema
            ))
            .into());
        }
        if header.version != VERSION {
            return Err(Failure::BadInput(format!(
                "{} is {schema} version {}, this fraudctl reads version {VERSION} only: re-run the stage that wrote it with this fraudctl",
                path.display(),
                header.version
            ))
            .into());
        }
        Ok(StageReader {
            header,
            path: path.to_path_buf(),
            input,
            len,
            line,
            partial: Vec::new(),
            seen: 0,
            _record: PhantomData,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<T>> {
        match self.next_line()? {
            None => Ok(None),
            Some(line) => {
                let record = serde_json::from_str(line).map_err(|e| {
                    Failure::BadInput(format!("{} record {}: {e}", self.path.display(), self.seen))
                })?;
                Ok(Some(record))
            }
        }
    }

    /// The next record line, unparsed (for stages that pass records through).
    pub fn next_line(&mut self) -> Result<Option<&str>> {
        self.line.clear();
        let n = self
            .input
            .read_line(&mut self.line)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if n == 0 {
            self.check_count()?;
            return Ok(None);
        }
        self.seen += 1;
        match self.line.strip_suffix('\n') {
            Some(line) => Ok(Some(line)),
            None => Err(self.cut_record()),
        }
    }

    /// Reads about `size` bytes of whole record lines into `text` (replacing its content),
    /// each ending with a newline; returns how many lines, 0 at the end of the file. A last
    /// line without its newline is a cut file (refused). One read into the caller's buffer instead of a copy a line: what the
    /// parallel stages use (src/parallel.rs). Not to be mixed with `next_line`.
    pub fn next_lines(&mut self, text: &mut String, size: usize) -> Result<usize> {
        let mut block = std::mem::take(text).into_bytes();
        block.clear();
        block.append(&mut self.partial);
        // What the buffered reader holds (the header was read through it) comes first; then
        // the file is read directly into the block, without passing through that buffer.
        let buffered = self.input.buffer().len();
        block.extend_from_slice(self.input.buffer());
        self.input.consume(buffered);
        // Up to `size` bytes more, and on until a newline if a line is longer than that.
        let mut at_end = false;
        let mut has_newline = false;
        loop {
            // No more room than the rest of the file needs (a small file's block is not a
            // megabyte of zeroes), and at least a page, to see its end.
            let read = self.input.get_mut().stream_position();
            let left = self.len.saturating_sub(read.unwrap_or(0)) as usize;
            let want = size.saturating_sub(block.len()).max(64 << 10);
            let (before, want) = (block.len(), want.min(left.max(4095) + 1));
            block.resize(before + want, 0);
            let got = read_up_to(self.input.get_mut(), &mut block[before..])
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            block.truncate(before + got);
            if got == 0 {
                at_end = true;
                break;
            }
            has_newline |= block[before..].contains(&b'\n');
            if block.len() >= size && has_newline {
                break;
            }
        }
        let cut = match block.iter().rposition(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None => 0,
        };
        self.partial = block.split_off(cut);
        if at_end && !self.partial.is_empty() {
            self.seen += 1 + block.iter().filter(|b| **b == b'\n').count() as u64;
            return Err(self.cut_record());
        }
        let lines = block.iter().filter(|b| **b == b'\n').count();
        *text = String::from_utf8(block).map_err(|e| {
            Failure::BadInput(format!(
                "{} record {}: not UTF-8 text: {e}",
                self.path.display(),
                self.seen
                    + 1
                    + e.as_bytes()[..e.utf8_error().valid_up_to()]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count() as u64
            ))
        })?;
        self.seen += lines as u64;
        if lines == 0 {
            self.check_count()?;
        }
        Ok(lines)
    }

    /// At the end of the file: refuses it when it holds fewer or more records than announced.
    fn check_count(&self) -> Result<()> {
        let (seen, announced) = (self.seen, self.header.records());
        let why = match seen.cmp(&announced) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Less => "the file is truncated",
            std::cmp::Ordering::Greater => "lines were added after the stage wrote it",
        };
        Err(Failure::BadInput(format!(
            "{} ends after {seen} records but its header announces {announced}: {why}",
            self.path.display(),
        ))
        .into())
    }

    /// The error for a last record without its newline (record number `self.seen`): a file
    /// cut in the middle of a line, whatever its header says.
    fn cut_record(&self) -> anyhow::Error {
        Failure::BadInput(format!(
            "{} record {} ends without its newline: the file is truncated",
            self.path.display(),
            self.seen
        ))
        .into()
    }
}

/// Fills `buf` from `file` as far as the file goes; returns how many bytes were read (fewer than
/// `buf.len()` only at the end of the file).
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
        let mut r = StageReader::<u32>::open(path, "s").unwrap();
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
            let mut r = StageReader::<String>::open(&path, "s").unwrap();
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
        let mut r = StageReader::<String>::open(&small, "s").unwrap();
        let mut text = String::new();
        assert_eq!(r.next_lines(&mut text, 1 << 20).unwrap(), 1);
        assert!(
            text.capacity() <= 8192,
            "{} bytes for one record",
            text.capacity()
        );
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

    /// A file past WRITEBACK_BYTES is synced in the background as it grows: finished, it holds
    /// every record; dropped unfinished, it leaves nothing behind.
    #[test]
    fn a_big_file_synced_while_written_is_whole_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let rounds = 2 * WRITEBACK_BYTES / lines.len() + 1;
        for finished in [true, false] {
            let path = dir.path().join(format!("{finished}.jsonl"));
            let mut w =
                StageWriter::create(&path, Header::new("s", "r", "t", serde_json::Value::Null))
                    .unwrap();
            for _ in 0..rounds {
                w.write_lines(&lines, 100_000).unwrap();
            }
            assert!(
                w.syncer.is_some(),
                "a sync thread once WRITEBACK_BYTES are written"
            );
            if !finished {
                drop(w);
                assert_eq!(
                    fs::read_dir(dir.path()).unwrap().count(),
                    1,
                    "only the finished file"
                );
                continue;
            }
            assert_eq!(
                w.finish(BTreeMap::new()).unwrap().records(),
                rounds as u64 * 100_000
            );
            let mut r = StageReader::<u64>::open(&path, "s").unwrap();
            let mut n = 0u64;
            while let Some(v) = r.next_record().unwrap() {
                assert_eq!(v, n % 100_000);
                n += 1;
            }
            assert_eq!(n, rounds as u64 * 100_000);
        }
    }
}

/// Schema of the rejected files.
pub const REJECTED_SCHEMA: &str = "fraudctl.rejected";

/// A record a stage could not use, with the reason. Card numbers are already protected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejected {
    pub reason: String,
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}
