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

    /// A session on fraud_db, whose schema must be this fraudctl's ([`check_schema`]).
    pub fn connect(&self) -> Result<Client> {
        let mut client = self.connect_unchecked()?;
        check_schema(&mut client)?;
        Ok(client)
    }

    /// A session whatever the schema's version (`migrate`).
    pub fn connect_unchecked(&self) -> Result<Client> {
        connect(&self.config()?, crate::redact::url(&self.database_url))
    }
}

/// Connects with `config`; `target` is how messages name the server (its secrets hidden). A
/// refused login or a database that does not exist is a configuration error (exit 5); anything
/// else, the server unavailable (exit 3).
pub fn connect(config: &postgres::Config, target: String) -> Result<Client> {
    config.connect(NoTls).map_err(|e| {
        let detail = crate::error::chain(&e);
        if crate::error::postgres_exit_code(&e) == Some(crate::error::exit::CONFIG) {
            let hint = match e.code() {
                Some(&postgres::error::SqlState::INVALID_CATALOG_NAME) => {
                    "create it with `fraudctl migrate --create-database`, or fix"
                }
                _ => "check",
            };
            return Failure::Config(format!(
                "PostgreSQL at {target} refused the connection: {detail}; {hint} {}",
                crate::setting::var::<DbArgs>("database_url")
            ))
            .into();
        }
        Failure::Unavailable {
            service: "PostgreSQL",
            target,
            detail,
        }
        .into()
    })
}

/// The newest migration this build knows.
fn latest_known() -> i64 {
    known_migrations()
        .iter()
        .map(|(v, _)| *v)
        .max()
        .unwrap_or(0)
}

/// The version of the migrations applied to the database (0 before any).
fn applied_version(client: &mut Client) -> Result<i64> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_one(
        "SELECT coalesce(max(version), 0)::int8 FROM refinery_schema_history",
        &[],
    )?;
    Ok(row.get(0))
}

/// Refuses a database whose schema is not the one this fraudctl was built for: older (run
/// `fraudctl migrate`) or newer (a newer fraudctl migrated it: upgrade this one). Exit 5.
pub fn check_schema(client: &mut Client) -> Result<()> {
    let (applied, known) = (applied_version(client)?, latest_known());
    let why = match applied.cmp(&known) {
        std::cmp::Ordering::Equal => return Ok(()),
        std::cmp::Ordering::Less => {
            format!("the database is at V{applied}, this fraudctl needs V{known}: run `fraudctl migrate`")
        }
        std::cmp::Ordering::Greater => format!(
            "the database is newer than this fraudctl (V{applied} > V{known}): upgrade fraudctl"
        ),
    };
    Err(Failure::Config(why).into())
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
    let applied = applied_version(client)?;
    if applied > latest_known() {
        client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
        return Err(Failure::Config(format!(
            "the database is newer than this fraudctl (V{applied} > V{}): upgrade fraudctl",
            latest_known()
        ))
        .into());
    }
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
