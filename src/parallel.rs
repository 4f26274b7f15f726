//! Ordered parallel processing of a stage file's records.
//!
//! A reader thread cuts the input into chunks of lines, worker threads turn each chunk into a
//! result, and the calling thread receives the results in input order. Channels are bounded,
//! so at most a few chunks per worker are in memory whatever the file's size: the stages keep
//! streaming while using every core.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, Result};

use crate::progress::Progress;
use crate::stagefile::BlockReader;

/// Bytes of whole lines per chunk: large enough to amortise the hand-offs, small enough to
/// bound memory.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks in flight per worker.
const QUEUE_PER_WORKER: usize = 2;

/// Files of at most this many records are mapped on the calling thread: starting the reader
/// and the workers (and asking the kernel how many cores there are) would cost more than the
/// work of every minute's batch of a few hundred payments.
const ON_THIS_THREAD_RECORDS: u64 = 500;

/// A run of consecutive record lines, as read: the workers, not the reader, cut it into lines.
#[derive(Default)]
pub struct Chunk {
    /// Number of the chunk's first record in the file (1 = the first record after the header).
    pub first_record: u64,
    text: String,
    lines: usize,
}

impl Chunk {
    /// The chunk's lines (without their newline), each with its record number.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &str)> {
        (self.first_record..).zip(self.text.split_terminator('\n'))
    }

    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// The number of workers: one per core the process may use.
pub fn workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Maps every chunk of `input` with `map` on [`workers`] threads (on this one for a small file)
/// and hands the results to `sink` in input order, showing `stage`'s progress ([`Progress`]).
/// The first error (reading, mapping or sinking) stops the work and is returned; `map` gets a
/// per-worker state made by `init` (scratch buffers).
pub fn map_chunks<R, S, I, M, K>(
    stage: &'static str,
    mut input: BlockReader,
    init: I,
    map: M,
    mut sink: K,
) -> Result<()>
where
    R: Send,
    I: Fn() -> S + Sync,
    M: Fn(&mut S, &Chunk) -> Result<R> + Sync,
    K: FnMut(R) -> Result<()>,
{
    let records = input.header().records();
    let mut progress = Progress::new(stage, Some(records));
    let mut next_record = 1u64;
    let next = move || -> Result<Option<Chunk>> {
        let mut chunk = Chunk {
            first_record: next_record,
            ..Chunk::default()
        };
        chunk.lines = input.next_lines(&mut chunk.text, CHUNK_BYTES)?;
        next_record += chunk.len() as u64;
        Ok((!chunk.is_empty()).then_some(chunk))
    };
    if records <= ON_THIS_THREAD_RECORDS {
        let (mut next, mut state) = (next, init());
        while let Some(chunk) = next()? {
            progress.add(chunk.len() as u64);
            sink(map(&mut state, &chunk)?)?;
        }
        return Ok(());
    }
    let map = |state: &mut S, chunk: Chunk| Ok((chunk.len() as u64, map(state, &chunk)?));
    map_ordered(next, init, map, |(records, result)| {
        progress.add(records);
        sink(result)
    })
}

/// The same for any source of work: `next` (on a thread of its own) makes the units of work
/// until it returns `None`, `map` turns each into a result on the workers, `sink` gets the
/// results in the order `next` made them.
pub fn map_ordered<C, R, S, N, I, M, K>(mut next: N, init: I, map: M, mut sink: K) -> Result<()>
where
    C: Send,
    R: Send,
    N: FnMut() -> Result<Option<C>> + Send,
    I: Fn() -> S + Sync,
    M: Fn(&mut S, C) -> Result<R> + Sync,
    K: FnMut(R) -> Result<()>,
{
    let workers = workers();
    let (chunk_tx, chunk_rx) = sync_channel::<(u64, C)>(workers * QUEUE_PER_WORKER);
    let (done_tx, done_rx) = sync_channel::<(u64, Result<R>)>(workers * QUEUE_PER_WORKER);
    // Only the workers hold the chunk queue's receiving end: when they stop, the reader's next
    // send fails and it stops too.
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<()> {
            let mut seq = 0u64;
            while let Some(chunk) = next()? {
                if chunk_tx.send((seq, chunk)).is_err() {
                    return Ok(()); // the workers stopped: the consumer has an error to report
                }
                seq += 1;
            }
            Ok(())
        });
        for _ in 0..workers {
            let (chunk_rx, done_tx, init, map) = (chunk_rx.clone(), done_tx.clone(), &init, &map);
            scope.spawn(move || {
                let mut state = init();
                loop {
                    let job = chunk_rx.lock().expect("chunk queue poisoned").recv();
                    let Ok((seq, chunk)) = job else { return };
                    if done_tx.send((seq, map(&mut state, chunk))).is_err() {
                        return;
                    }
                }
            });
        }
        drop((chunk_rx, done_tx));
        let consumed = consume_in_order(done_rx, &mut sink);
        // Dropping the receiver (inside consume_in_order) has stopped the workers; the reader
        // stops at its next send. Its error, if any, comes first: a bad file explains the rest.
        let read = reader
            .join()
            .map_err(|_| anyhow!("the reader thread panicked"))?;
        read.and(consumed)
    })
}

fn consume_in_order<R>(
    done: Receiver<(u64, Result<R>)>,
    sink: &mut impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0u64;
    for (seq, result) in done.iter() {
        pending.insert(seq, result);
        while let Some(result) = pending.remove(&next) {
            sink(result?)?;
            next += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stagefile::StageReader;
    use crate::stagefile::{Header, StageWriter};

    /// A stage file of the records 0..n, each a number right-aligned in `width` characters
    /// (JSON allows the spaces): `width` sets how many records a chunk holds.
    fn file_of(n: u32, width: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let mut w = StageWriter::create(&path, Header::new("n", "r", "t", serde_json::Value::Null))
            .unwrap();
        for i in 0..n {
            w.write_lines(format!("{i:>width$}\n").as_bytes(), 1)
                .unwrap();
        }
        w.finish(Default::default()).unwrap();
        (dir, path)
    }

    #[test]
    fn results_arrive_in_input_order_with_record_numbers() {
        // Lines of 1000 bytes: a chunk is about a thousand of them.
        let (_dir, path) = file_of(10_000, 999);
        let input = StageReader::<u32>::open(&path, "n").unwrap();
        let mut seen = Vec::new();
        map_chunks(
            "test",
            input.blocks(),
            || (),
            |_, chunk| {
                Ok(chunk
                    .lines()
                    .map(|(no, line)| (no, line.trim().parse::<u64>().unwrap()))
                    .collect::<Vec<_>>())
            },
            |rows| {
                seen.extend(rows);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 10_000);
        assert!(seen.iter().all(|(no, v)| *no == v + 1));
    }

    #[test]
    fn a_small_file_is_mapped_on_the_calling_thread_a_large_one_on_workers() {
        for (n, on_this_thread) in [(ON_THIS_THREAD_RECORDS as u32, true), (5_000, false)] {
            let (_dir, path) = file_of(n, 999);
            let input = StageReader::<u32>::open(&path, "n").unwrap();
            let (mut records, mut threads) = (0, std::collections::HashSet::new());
            map_chunks(
                "test",
                input.blocks(),
                || (),
                |_, chunk| Ok((chunk.len(), thread::current().id())),
                |(len, thread)| {
                    records += len;
                    threads.insert(thread);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(records, n as usize);
            let here = threads == [thread::current().id()].into();
            assert_eq!(here, on_this_thread, "{n} records mapped on {threads:?}");
        }
    }

    #[test]
    fn an_error_in_a_chunk_stops_the_work_and_is_returned() {
        // Lines of 1000 bytes: record 5001 is in the file's fifth chunk or so.
        let (_dir, path) = file_of(20_000, 999);
        let input = StageReader::<u32>::open(&path, "n").unwrap();
        let mut sunk = Vec::new();
        let err = map_chunks(
            "test",
            input.blocks(),
            || (),
            |_, chunk| match chunk.lines().find(|(_, l)| l.trim() == "5000") {
                Some((no, _)) => Err(anyhow!("bad record {no}")),
                None => Ok((chunk.first_record, chunk.len() as u64)),
            },
            |range| {
                sunk.push(range);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "bad record 5001");
        // The chunks before the bad one, in order, and nothing from it or after it.
        assert!(sunk.len() > 1, "{sunk:?}");
        let mut next = 1;
        for (first, len) in &sunk {
            assert_eq!(*first, next, "chunks consumed in order: {sunk:?}");
            next += len;
        }
        assert!(next <= 5001, "nothing from the bad chunk on: {sunk:?}");
    }

    #[test]
    fn a_truncated_file_is_reported() {
        let (_dir, path) = file_of(5_000, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let last_line = text[..text.len() - 1].rfind('\n').unwrap() + 1;
        std::fs::write(&path, &text[..last_line]).unwrap();
        let input = StageReader::<u32>::open(&path, "n").unwrap();
        let err = map_chunks(
            "test",
            input.blocks(),
            || (),
            |_, c| Ok(c.len()),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
