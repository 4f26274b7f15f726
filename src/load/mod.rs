//! `fraudctl load`: `scored.jsonl` → `payments_scored`, in one transaction. A batch of new
//! payments (none of its first thousand trans_nums loaded yet; a batch of at most a thousand is
//! not looked up, its COPY is tried at once) goes straight into the table by binary COPY;
//! should one of its payments be there after all (the COPY fails on the primary
//! key), the transaction rolls back to before the COPY and the batch is upserted: binary COPY
//! into a temporary staging table, then one `INSERT … ON CONFLICT (trans_num) DO UPDATE`. Both
//! write the same rows (the COPY writes what the upsert would insert; a test holds them equal).
//! A killed load leaves the table as it was; re-running it converges to the same rows. The
//! run's stage counts go to `pipeline_runs` in the same transaction.
//!
//! With `--connections N` (N > 1) the rows are split by trans_num over N sessions, each with its
//! own staging table and transaction, which upsert side by side and commit on their own: the
//! database's work, one core a session, runs on N cores. Each session is all or nothing, the load
//! as a whole is not (a killed load may leave some sessions committed; re-running converges), and
//! the audit rows follow in a last transaction.

mod copy;
mod rows;

use std::path::Path;
use std::thread;

use anyhow::{Context, Result};
use clap::Args;
use postgres::types::Type;
use serde::Serialize;

use crate::audit;
use crate::db::DbArgs;
use crate::error::Failure;
use crate::rundir::{log_started, require_input, RunArgs, RunDir};
use crate::score::{ScoredRecord, SCORED_SCHEMA};
use crate::stagefile::{read_header, StageReader};
use rows::Target;

/// Options of `fraudctl load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub db: DbArgs,

    /// Database sessions that load side by side, rows split by trans_num. 1 (the default) loads
    /// in one transaction: all or nothing. N > 1 loads big batches (backfills, re-scoring)
    /// faster when the server has N free cores (BENCHMARKS.md measures it), but each session
    /// commits on its own: a load killed midway may
    /// leave part of the rows loaded (re-running converges).
    #[arg(
        long,
        env = "FRAUDCTL_LOAD_CONNECTIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=16),
        value_name = "N"
    )]
    pub connections: u16,

    /// Whether the run's stage counts go to `pipeline_runs` (always from the command line;
    /// `fraudctl live` records its micro-batches there by minute instead).
    #[arg(skip = true)]
    pub audit: bool,
}

#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub records: u64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// Payments whose trans_num is loaded already with another time, card, amount, merchant's
    /// place or category: refused, the loaded row kept (a trans_num is one payment; its first
    /// capture is the one the card history counts). Named in the log.
    pub conflicts: u64,
    /// How the rows went in: `copy` (straight into the table: a batch of new payments) or
    /// `upsert` (through the staging table).
    pub method: Method,
}

/// How a batch's rows went into `payments_scored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Copy,
    Upsert,
}

/// The staging table (src/load/sql/staging.sql; `scripts/bench.py` runs the same file): its
/// columns are [`rows::FIELDS`]'s, in their order (a unit test holds them equal).
const STAGING: &str = include_str!("sql/staging.sql");

/// Staging → payments_scored (src/load/sql/upsert.sql).
const UPSERT: &str = include_str!("sql/upsert.sql");

/// The staged payments that conflict with loaded ones (src/load/sql/conflicts.sql).
const CONFLICTS: &str = include_str!("sql/conflicts.sql");

/// How many of a batch's first trans_nums are looked up to tell a batch of new payments.
const PROBED_KEYS: usize = 1000;

pub fn run(args: &LoadArgs) -> Result<LoadSummary> {
    load(args).map_err(explain)
}

fn load(args: &LoadArgs) -> Result<LoadSummary> {
    let dir = RunDir::open(&args.run, "load")?;
    let scored = dir.scored();
    require_input(&scored, "score")?;
    let header_records = StageReader::<ScoredRecord>::open(&scored, SCORED_SCHEMA)?
        .header()
        .records();
    let captured_at = dir.captured_at()?;
    log_started("load", header_records);
    let mut clients = (0..args.connections)
        .map(|_| args.db.connect())
        .collect::<Result<Vec<_>>>()?;
    let mut sessions = clients
        .iter_mut()
        .map(|client| {
            client
                .transaction()
                .context("starting the load's transaction")
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = Batch {
        records: header_records,
        path: &scored,
        run_id: &dir.run_id,
        captured_at,
    };
    let (records, counts, method) = write(&mut sessions, &batch)?;
    // One session: the audit rows in its transaction, all or nothing. Several: each session
    // commits its share, then the audit rows follow in a last transaction.
    let one = sessions.len() == 1;
    if one && args.audit {
        record_audit(&mut sessions[0], &dir, records, &counts)?;
    }
    for txn in sessions {
        txn.commit().context("committing the load")?;
    }
    if !one && args.audit {
        let mut txn = clients[0].transaction()?;
        record_audit(&mut txn, &dir, records, &counts)?;
        txn.commit().context("committing the load's audit rows")?;
    }
    let Counts {
        inserted,
        updated,
        conflicts,
    } = counts;
    let unchanged = records as i64 - inserted - updated - conflicts.len() as i64;
    tracing::info!(run_id = %dir.run_id, records, inserted, updated, unchanged, ?method, sessions = clients.len(), "loaded into payments_scored");
    if !conflicts.is_empty() {
        tracing::warn!(conflicts = conflicts.len(), first = %conflicts.iter().take(10).cloned().collect::<Vec<_>>().join(","), "payments loaded already with another time, card, amount or place were refused; the rows loaded first are kept");
    }
    Ok(LoadSummary {
        stage: "load",
        run_id: dir.run_id,
        records,
        inserted,
        updated,
        unchanged,
        conflicts: conflicts.len() as u64,
        method,
    })
}

/// What a load did to payments_scored: rows inserted and updated, and the trans_nums refused as
/// conflicts.
#[derive(Default)]
struct Counts {
    inserted: i64,
    updated: i64,
    conflicts: Vec<String>,
}

/// The scored file of a run, and what the run writes on each of its rows.
struct Batch<'a> {
    /// Records, as the file's header counts them.
    records: u64,
    path: &'a Path,
    run_id: &'a str,
    captured_at: chrono::DateTime<chrono::Utc>,
}

/// Writes the batch in the sessions, none committed: by COPY straight into the table when its
/// first trans_nums are new, by upsert otherwise or when the COPY meets a payment already
/// loaded. Returns the records, what the load did and the method.
fn write(
    sessions: &mut [postgres::Transaction<'_>],
    batch: &Batch,
) -> Result<(u64, Counts, Method)> {
    // A batch no longer than the probe goes to COPY at once: a failed COPY of it costs no more
    // than the probe.
    if batch.records <= PROBED_KEYS as u64 || first_keys_are_new(&mut sessions[0], batch.path)? {
        in_each(
            sessions,
            "SAVEPOINT before_copy",
            "setting the savepoint before COPY",
        )?;
        let target = Target::new_rows(batch.run_id);
        match rows::stream(batch.path, sessions, &target, batch.captured_at) {
            Ok(records) => {
                let counts = Counts {
                    inserted: records as i64,
                    ..Counts::default()
                };
                return Ok((records, counts, Method::Copy));
            }
            Err(e) if is_loaded_already(&e) => {
                tracing::info!(
                    run_id = batch.run_id,
                    "a payment of the batch is loaded already: upserting the batch instead"
                );
                in_each(
                    sessions,
                    "ROLLBACK TO SAVEPOINT before_copy",
                    "rolling back the COPY",
                )?;
            }
            Err(e) => return Err(e),
        }
    }
    in_each(sessions, STAGING, "creating the staging table")?;
    let records = rows::stream(batch.path, sessions, &Target::staging(), batch.captured_at)?;
    let counts = upsert_all(sessions, batch.run_id)?;
    Ok((records, counts, Method::Upsert))
}

/// Runs `sql` in every session; `what` names it in an error.
fn in_each(sessions: &mut [postgres::Transaction<'_>], sql: &str, what: &str) -> Result<()> {
    for txn in sessions.iter_mut() {
        txn.batch_execute(sql).with_context(|| what.to_string())?;
    }
    Ok(())
}

/// Whether none of the first [`PROBED_KEYS`] trans_nums of the file is in payments_scored: a
/// batch of new payments (a run loaded for the first time), or one whose COPY would fail at its
/// first rows (a run loaded again, a backfill re-scoring).
fn first_keys_are_new(txn: &mut postgres::Transaction<'_>, path: &Path) -> Result<bool> {
    let mut input = StageReader::<ScoredRecord>::open(path, SCORED_SCHEMA)?;
    let mut keys = Vec::with_capacity(PROBED_KEYS);
    while keys.len() < PROBED_KEYS {
        let Some(r) = input.next_record()? else { break };
        keys.push(r.tx.trans_num);
    }
    let row = txn
        .query_typed_one(
            "SELECT NOT EXISTS (SELECT FROM payments_scored WHERE trans_num = ANY($1))",
            &[(&keys, Type::TEXT_ARRAY)],
        )
        .context("looking up the batch's first trans_nums in payments_scored")?;
    Ok(row.get(0))
}

/// Whether the COPY failed on payments_scored's primary key: a payment loaded already (or
/// twice in the file, which the upsert then explains).
fn is_loaded_already(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<postgres::Error>())
        .filter_map(|e| e.as_db_error())
        .any(|e| {
            e.code() == &postgres::error::SqlState::UNIQUE_VIOLATION
                && e.constraint() == Some("payments_scored_pkey")
        })
}

/// Each session's staging rows → payments_scored, the sessions side by side (a thread each),
/// none committed yet.
fn upsert_all(sessions: &mut [postgres::Transaction<'_>], run_id: &str) -> Result<Counts> {
    let counts = thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|txn| scope.spawn(move || upsert(txn, run_id)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load session thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(counts.into_iter().fold(Counts::default(), |mut all, c| {
        all.inserted += c.inserted;
        all.updated += c.updated;
        all.conflicts.extend(c.conflicts);
        all
    }))
}

/// Staging → payments_scored, the conflicts named first.
fn upsert(txn: &mut postgres::Transaction<'_>, run_id: &str) -> Result<Counts> {
    let conflicts = txn
        .query(CONFLICTS, &[])
        .context("looking for payments loaded already with other facts")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let row = txn
        .query_typed_one(UPSERT, &[(&run_id, Type::TEXT)])
        .context("upserting into payments_scored")?;
    Ok(Counts {
        inserted: row.get(0),
        updated: row.get(1),
        conflicts,
    })
}

/// One `pipeline_runs` row per stage of the run, from the stage files' headers, and the load's.
fn record_audit(
    txn: &mut postgres::Transaction,
    dir: &RunDir,
    records: u64,
    counts: &Counts,
) -> Result<()> {
    let mut headers = Vec::with_capacity(3);
    for (stage, path) in [
        ("extract", dir.raw()),
        ("transform", dir.features()),
        ("score", dir.scored()),
    ] {
        if let Some(h) = read_header(&path)? {
            headers.push((stage, h));
        }
    }
    let mut rows = Vec::with_capacity(4);
    for (stage, h) in &headers {
        rows.push(audit::StageRow {
            run_id: &dir.run_id,
            stage,
            records: h.records() as i64,
            rejected: h.count("rejected") as i64,
            file_created_at: Some(&h.created_at),
            details: serde_json::to_value(&h.counts)?,
        });
    }
    let (inserted, updated) = (counts.inserted, counts.updated);
    let unchanged = records as i64 - inserted - updated - counts.conflicts.len() as i64;
    let now = chrono::Utc::now().to_rfc3339();
    rows.push(audit::StageRow {
        run_id: &dir.run_id,
        stage: "load",
        records: records as i64,
        rejected: 0,
        file_created_at: Some(&now),
        details: serde_json::json!({
            "inserted": inserted, "updated": updated, "unchanged": unchanged,
            "conflicts": counts.conflicts.len(),
        }),
    });
    audit::record(txn, &rows, audit::Again::Replace)
}

/// A duplicate trans_num inside one scored file makes PostgreSQL refuse the upsert; say so.
fn explain(err: anyhow::Error) -> anyhow::Error {
    let duplicate = err
        .chain()
        .filter_map(|c| c.downcast_ref::<postgres::Error>())
        .any(|e| e.code() == Some(&postgres::error::SqlState::CARDINALITY_VIOLATION));
    if duplicate {
        return err.context(Failure::BadInput(
            "scored.jsonl holds the same trans_num twice; re-run `fraudctl extract --refetch` (extract de-duplicates)".into(),
        ));
    }
    err
}
