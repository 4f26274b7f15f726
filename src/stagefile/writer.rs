//! Writing a stage file: records streamed into a temporary file, made durable in the
//! background while they are written, then the header's final counts and a rename into place.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Header;

/// Room left in the header line for counts that grow while records stream.
const HEADER_SLACK: usize = 512;

/// Every this many bytes written, the file's data is made durable in the background
/// ([`Syncer`]), so that the fsync at the end has little left to wait for.
const WRITEBACK_BYTES: usize = 16 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stagefile::StageReader;

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
