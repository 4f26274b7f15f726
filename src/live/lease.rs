//! The live path's lease in PostgreSQL (migrations/V17): one capturer at a time. The holder
//! keeps a session-level advisory lock on a session of its own (PostgreSQL releases it when the
//! session ends: a killed process loses it at once) and writes a heartbeat every second in
//! `live_lease`. A second `fraudctl live` waits for the lock; `extract` reads the heartbeat to
//! know whether the live path captures its minute ([`fresh`]).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::Client;

use crate::db::DbArgs;

/// The advisory lock's key ("fraudliv").
const LOCK: i64 = 0x6672_6175_646c_6976;

/// How often the holder writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Whether the live path captures now: a holder whose last heartbeat is at most `stale_after`
/// old. A database without the table (an older schema) or unreachable: none.
pub fn fresh(client: &mut Client, stale_after: Duration) -> Result<bool> {
    let secs = stale_after.as_secs_f64();
    let row = client
        .query_one(
            "SELECT live_lease_fresh(make_interval(secs => $1))",
            &[&secs],
        )
        .context("reading the live path's lease (live_lease)")?;
    Ok(row.get(0))
}

/// The minute the lease's holder captures (the end of its interval), as its heartbeat last
/// said; none before its first minute or without a lease.
pub fn minute(client: &mut Client) -> Result<Option<DateTime<Utc>>> {
    let row = client
        .query_opt("SELECT minute FROM live_lease", &[])
        .context("reading the live path's lease (live_lease)")?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|id| super::Minute::end_of_run_id(&id)))
}

/// The lease, held: its session, who holds it, when it last wrote its heartbeat.
pub struct Lease {
    db: DbArgs,
    client: Option<Client>,
    holder: String,
    beat: Instant,
}

impl Lease {
    /// Takes the lease, waiting while another process holds it (`until` says when to give up:
    /// `None` then). Says who holds it once, when it has to wait.
    pub fn acquire(db: &DbArgs, holder: String, until: impl Fn() -> bool) -> Result<Option<Lease>> {
        let mut said = false;
        loop {
            if until() {
                return Ok(None);
            }
            let mut client = db.connect()?;
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])?
                .get(0);
            if got {
                let mut lease = Lease {
                    db: db.clone(),
                    client: Some(client),
                    holder,
                    beat: Instant::now(),
                };
                lease.write(", acquired_at = now(), released_at = NULL", None)?;
                tracing::info!(holder = %lease.holder, "live path lease acquired: this process captures");
                return Ok(Some(lease));
            }
            if !said {
                let other: Option<String> = client
                    .query_opt("SELECT holder FROM live_lease", &[])?
                    .map(|r| r.get(0));
                tracing::info!(holder = ?other, "another fraudctl live holds the lease; waiting for it");
                said = true;
            }
            drop(client);
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Writes the heartbeat if one is due, with the minute being captured. A lost session is
    /// opened again and the lock taken again; `Ok(false)` if another process took it meanwhile
    /// (this one must stop capturing). A database that cannot be reached is logged and retried
    /// at the next beat: capture goes on into the journal.
    pub fn beat(&mut self, minute: &str) -> Result<bool> {
        if self.beat.elapsed() < HEARTBEAT {
            return Ok(true);
        }
        self.beat = Instant::now();
        if self.client.is_none() {
            match self.db.connect() {
                Ok(mut client) => {
                    let got: bool = client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])?
                        .get(0);
                    if !got {
                        return Ok(false);
                    }
                    tracing::info!("live path lease taken again after the database came back");
                    self.client = Some(client);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot reach PostgreSQL for the live path's heartbeat; capturing on into the journal");
                    return Ok(true);
                }
            }
        }
        if let Err(e) = self.write("", Some(minute)) {
            tracing::warn!(error = %format!("{e:#}"), "the live path's heartbeat failed; the lease's session is opened again at the next beat");
            self.client = None;
        }
        Ok(true)
    }

    /// Lets the lease go: the heartbeat row says so at once (extract polls the API itself from
    /// then on), the lock ends with the session.
    pub fn release(mut self) {
        if let Err(e) = self.write(", released_at = now()", None) {
            tracing::warn!(error = %format!("{e:#}"), "could not record the lease's release");
        }
    }

    /// Writes the heartbeat in the lease's row, and `more` (`, column = value`…), creating the
    /// row if needed.
    fn write(&mut self, more: &str, minute: Option<&str>) -> Result<()> {
        let client = self.client.as_mut().context("no session")?;
        client
            .execute(
                &format!(
                    "INSERT INTO live_lease (holder, acquired_at, heartbeat_at, minute)
                     VALUES ($1, now(), now(), $2)
                     ON CONFLICT (singleton) DO UPDATE
                     SET holder = EXCLUDED.holder, heartbeat_at = now(),
                         minute = coalesce(EXCLUDED.minute, live_lease.minute){more}"
                ),
                &[&self.holder, &minute],
            )
            .context("writing the live path's lease (live_lease)")?;
        Ok(())
    }
}
