//! `fraudctl migrate`: applies the versioned SQL files of `migrations/` (embedded in the binary)
//! and the business time zone setting. Safe to run any number of times, and concurrently.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::db::{self, DbArgs};
use crate::error::Failure;
use crate::setting;

/// Options of `fraudctl migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Business time zone (IANA name) that decides what "yesterday" means in the daily report
    /// [default: keep the current setting, UTC on a new database].
    #[arg(long, env = "FRAUDCTL_BUSINESS_TIME_ZONE", value_name = "ZONE")]
    pub business_time_zone: Option<String>,

    /// Create the database first if it does not exist (connecting to the "postgres" database of
    /// the same server).
    #[arg(long, env = "FRAUDCTL_CREATE_DATABASE")]
    pub create_database: bool,
}

#[derive(Debug, Serialize)]
pub struct MigrateSummary {
    pub command: &'static str,
    pub applied: Vec<String>,
    pub known: usize,
    pub business_time_zone: String,
}

pub fn run(args: &MigrateArgs) -> Result<MigrateSummary> {
    if args.create_database {
        create_database(&args.db)?;
    }
    let mut client = args.db.connect_unchecked()?;
    let applied = db::migrate(&mut client)?;
    for (version, name) in &applied {
        tracing::info!(version, name = %name, "applied migration");
    }
    if let Some(zone) = &args.business_time_zone {
        let known: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
                &[zone],
            )?
            .get(0);
        if !known {
            return Err(Failure::Config(format!(
                "{} {zone:?} is not a time zone PostgreSQL knows (use an IANA name such as America/New_York)",
                setting::name::<MigrateArgs>("business_time_zone")
            ))
            .into());
        }
        client.execute(
            "INSERT INTO fraudctl_settings (key, value) VALUES ('business_time_zone', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
             WHERE fraudctl_settings.value IS DISTINCT FROM EXCLUDED.value",
            &[zone],
        )?;
    }
    let zone: String = client.query_one("SELECT business_time_zone()", &[])?.get(0);
    Ok(MigrateSummary {
        command: "migrate",
        applied: applied.iter().map(|(v, n)| format!("V{v}__{n}")).collect(),
        known: db::known_migrations().len(),
        business_time_zone: zone,
    })
}

/// Creates the database of `target` unless it exists, connected to the "postgres" database of the
/// same server with the same settings (user, TLS mode, options: the URL's own, parsed).
fn create_database(target: &DbArgs) -> Result<()> {
    let mut config = target.config()?;
    let name = config
        .get_dbname()
        .ok_or_else(|| {
            Failure::Config(format!(
                "{} names no database",
                setting::name::<DbArgs>("database_url")
            ))
        })?
        .to_string();
    config.dbname("postgres");
    let shown = format!(
        "{} (its database postgres)",
        crate::redact::url(&target.database_url)
    );
    let mut admin = db::connect(&config, shown)?;
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )?
        .get(0);
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match admin.batch_execute(&sql) {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it meanwhile.
            Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
        }
    }
    Ok(())
}
