//! PostgreSQL connection and migrations (refinery, embedded from `migrations/`).

use anyhow::Result;
use clap::Args;
use postgres::{Client, NoTls};

use crate::error::Failure;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How to reach `fraud_db`.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL URL of fraud_db. Put a password only in the environment variable, never on the
    /// command line (fraudctl refuses a URL with a password given as a flag).
    #[arg(
        long,
        env = "FRAUDCTL_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:55432/fraud_db",
        hide_env_values = true
    )]
    pub database_url: String,
}

impl DbArgs {
    /// The parsed URL (a URL or a libpq `key=value` string).
    pub fn config(&self) -> Result<postgres::Config> {
        self.database_url.parse().map_err(|e| {
            Failure::Config(format!(
                "{} {} is not a PostgreSQL URL: {e}",
                crate::setting::name::<DbArgs>("database_url"),
                crate::redact::url(&self.database_url)
            ))
            .into()
        })
    }

    pub fn connect(&self) -> Result<Client> {
        connect(&self.config()?, crate::redact::url(&self.database_url))
    }
}

/// Connects with `config`; `target` is how messages name the server (its secrets hidden).
pub fn connect(config: &postgres::Config, target: String) -> Result<Client> {
    config.connect(NoTls).map_err(|e| {
        Failure::Unavailable {
            service: "PostgreSQL",
            target,
            detail: crate::error::chain(&e),
        }
        .into()
    })
}

/// Migrations this build applies, as (version, name).
pub fn known_migrations() -> Vec<(i64, String)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_string()))
        .collect()
}

/// Applies pending migrations. Safe to run concurrently: a session-level advisory lock makes a
/// second process wait, then find nothing left to apply.
pub fn migrate(client: &mut Client) -> Result<Vec<(i64, String)>> {
    const LOCK: i64 = 0x6672_6175_6463_746c; // "fraudctl"
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(client);
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
    let report = report.map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_string()))
        .collect())
}
