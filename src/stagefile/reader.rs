//! Reading a stage file: its header checked when opened, then its records one by one
//! ([`StageReader`]) or in blocks of whole lines ([`BlockReader`], what the parallel stages
//! read), the record count checked at the end either way.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

use super::{Header, VERSION};
use crate::error::Failure;

/// Where a reader is in its file: what its messages name, and how many records it has read (the
/// count the header announced is checked at the end).
struct Position {
    path: PathBuf,
    header: Header,
    seen: u64,
}

impl Position {
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

/// Reads a stage file record by record, refusing an unexpected schema, an unknown version, and
/// a record count that differs from the header's (a truncated or tampered file). For blocks of
/// records, [`StageReader::blocks`] turns it into a [`BlockReader`] (there is no way back: a
/// block ends on a whole line, but the reader may hold the start of the next).
pub struct StageReader<T> {
    at: Position,
    input: BufReader<File>,
    /// The file's length when opened.
    len: u64,
    line: String,
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
            at: Position {
                path: path.to_path_buf(),
                header,
                seen: 0,
            },
            input,
            len,
            line,
            _record: PhantomData,
        })
    }

    pub fn header(&self) -> &Header {
        &self.at.header
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<T>> {
        match self.next_line()? {
            None => Ok(None),
            Some(line) => {
                let record = serde_json::from_str(line).map_err(|e| {
                    Failure::BadInput(format!(
                        "{} record {}: {e}",
                        self.at.path.display(),
                        self.at.seen
                    ))
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
            .with_context(|| format!("cannot read {}", self.at.path.display()))?;
        if n == 0 {
            self.at.check_count()?;
            return Ok(None);
        }
        self.at.seen += 1;
        match self.line.strip_suffix('\n') {
            Some(line) => Ok(Some(line)),
            None => Err(self.at.cut_record()),
        }
    }

    /// The rest of the file, read in blocks of whole lines.
    pub fn blocks(self) -> BlockReader {
        BlockReader {
            at: self.at,
            input: self.input,
            len: self.len,
            partial: Vec::new(),
        }
    }
}

/// Reads a stage file in blocks of whole record lines ([`BlockReader::next_lines`]), with the
/// checks of [`StageReader`], which makes it.
pub struct BlockReader {
    at: Position,
    input: BufReader<File>,
    /// The file's length when opened.
    len: u64,
    /// The start of a line read but not handed out yet.
    partial: Vec<u8>,
}

impl BlockReader {
    pub fn header(&self) -> &Header {
        &self.at.header
    }

    /// Reads about `size` bytes of whole record lines into `text` (replacing its content),
    /// each ending with a newline; returns how many lines, 0 at the end of the file. A last
    /// line without its newline is a cut file (refused). One read into the caller's buffer
    /// instead of a copy a line: what the parallel stages use (src/parallel.rs).
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
                .with_context(|| format!("cannot read {}", self.at.path.display()))?;
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
            self.at.seen += 1 + block.iter().filter(|b| **b == b'\n').count() as u64;
            return Err(self.at.cut_record());
        }
        let lines = block.iter().filter(|b| **b == b'\n').count();
        *text = String::from_utf8(block).map_err(|e| {
            Failure::BadInput(format!(
                "{} record {}: not UTF-8 text: {e}",
                self.at.path.display(),
                self.at.seen
                    + 1
                    + e.as_bytes()[..e.utf8_error().valid_up_to()]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count() as u64
            ))
        })?;
        self.at.seen += lines as u64;
        if lines == 0 {
            self.at.check_count()?;
        }
        Ok(lines)
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
