//! Failures that callers must tell apart, and the process exit codes they map to.
//!
//! Everything else is an `anyhow::Error` with context naming the file, record, URL or setting;
//! `main` prints the whole chain and exits with [`exit::ERROR`].

use thiserror::Error;

/// Documented exit codes (docs/commands.md, "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Unexpected error; the message says what failed.
    pub const ERROR: i32 = 1;
    /// Bad command-line usage (unknown flag, missing argument).
    pub const USAGE: i32 = 2;
    /// An external service (payments API, PostgreSQL, SMTP server, SageMaker) is unreachable or
    /// kept failing after retries. Transient: retrying later is the fix.
    pub const UNAVAILABLE: i32 = 3;
    /// An input cannot be used: unknown stage-file schema or version, truncated stage file,
    /// invalid feature spec or model. Retrying will not help; fix the input.
    pub const BAD_INPUT: i32 = 4;
    /// A setting is missing or invalid (the message names the flag and its variable).
    pub const CONFIG: i32 = 5;
    /// Nothing to do for this run (for example a past interval with no captured raw data).
    /// Airflow's BashOperator marks the task "skipped" on this code.
    pub const SKIPPED: i32 = 99;

    /// Every exit code, in a few words: the one list `--help` prints, and the table of
    /// docs/commands.md and the DAG's (`dags/fraudctl_exit_codes.py`) are held to by the tests below.
    pub const CODES: [(i32, &str); 7] = [
        (OK, "success"),
        (ERROR, "error"),
        (USAGE, "usage"),
        (UNAVAILABLE, "service unavailable (retry later)"),
        (BAD_INPUT, "unusable input"),
        (CONFIG, "configuration"),
        (SKIPPED, "skipped"),
    ];

    /// The codes no retry can change (Airflow fails the task at once on them).
    pub const PERMANENT: [i32; 2] = [BAD_INPUT, CONFIG];

    /// "Exit codes: 0 success, 1 error, …" (`fraudctl --help`).
    pub fn help() -> String {
        let codes: Vec<String> = CODES.iter().map(|(c, m)| format!("{c} {m}")).collect();
        format!("Exit codes: {}.", codes.join(", "))
    }
}

/// A failure with its own exit code.
#[derive(Debug, Error)]
pub enum Failure {
    #[error("{0}")]
    Config(String),
    #[error("{service} unavailable at {target}: {detail}")]
    Unavailable {
        service: &'static str,
        target: String,
        detail: String,
    },
    #[error("{0}")]
    BadInput(String),
    #[error("skipped: {0}")]
    Skipped(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Config(_) => exit::CONFIG,
            Failure::Unavailable { .. } => exit::UNAVAILABLE,
            Failure::BadInput(_) => exit::BAD_INPUT,
            Failure::Skipped(_) => exit::SKIPPED,
        }
    }
}

/// The exit code for an error chain: the first [`Failure`] in it decides, else the first
/// PostgreSQL error that [`postgres_exit_code`] classes (also when the COPY stream carried it
/// inside an I/O error).
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit_code();
        }
        #[cfg(feature = "services")]
        {
            let pg = cause.downcast_ref::<postgres::Error>().or_else(|| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<postgres::Error>())
            });
            if let Some(code) = pg.and_then(postgres_exit_code) {
                return code;
            }
        }
    }
    exit::ERROR
}

/// What a PostgreSQL error means for the operator, by its SQLSTATE:
/// - no SQL error (the connection was lost), class 08 (connection) or 57P (the server shutting
///   down, crashed, starting up): unavailable, retry later;
/// - class 22 (a value the column cannot hold: a NUL character, an amount too large) and the
///   NOT NULL and CHECK violations: the input is unusable, retrying will not help;
/// - no privilege, a read-only database or session, a refused login, no such database:
///   configuration.
#[cfg(feature = "services")]
pub fn postgres_exit_code(err: &postgres::Error) -> Option<i32> {
    let Some(state) = err.code().map(|c| c.code()) else {
        return Some(exit::UNAVAILABLE);
    };
    match state {
        s if s.starts_with("08") || s.starts_with("57P") => Some(exit::UNAVAILABLE),
        s if s.starts_with("22") || s == "23502" || s == "23514" => Some(exit::BAD_INPUT),
        s if s.starts_with("28") || ["42501", "25006", "3D000"].contains(&s) => Some(exit::CONFIG),
        _ => None,
    }
}

/// Reads a required secret from the environment; secrets are never accepted as flags.
pub fn secret_from_env(var: &str, what: &str) -> Result<String, Failure> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(Failure::Config(format!(
            "{what} is not set: export {var} (secrets are read from the environment only, never from flags)"
        ))),
    }
}

/// The fewest bytes a secret key may have (the card-hash key, the verdict-link key).
pub const MIN_KEY_BYTES: usize = 32;

/// The fewest different bytes a secret key may hold: a key of a repeated character or two is
/// long, not secret.
const MIN_KEY_DISTINCT_BYTES: usize = 10;

/// Reads a secret key from the environment ([`secret_from_env`]): at least [`MIN_KEY_BYTES`]
/// bytes, and of some variety, which a random secret has (`openssl rand -hex 32`).
pub fn key_from_env(var: &str, what: &str) -> Result<String, Failure> {
    let key = secret_from_env(var, what)?;
    let distinct = key.bytes().collect::<std::collections::HashSet<u8>>().len();
    if key.len() < MIN_KEY_BYTES || distinct < MIN_KEY_DISTINCT_BYTES {
        return Err(Failure::Config(format!(
            "{var} must be at least {MIN_KEY_BYTES} bytes with at least {MIN_KEY_DISTINCT_BYTES} different ones (a random secret, e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(key)
}

/// An error and its sources, joined with ": " (for messages that cross a process boundary).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::exit;

    fn codes() -> Vec<i32> {
        exit::CODES.iter().map(|(c, _)| *c).collect()
    }

    /// The numbers that open the rows of `text`'s table under `heading`.
    fn table_codes(text: &str, heading: &str) -> Vec<i32> {
        let start = text.find(heading).expect("the heading") + heading.len();
        let section = &text[start..];
        let end = section.find("\n#").unwrap_or(section.len());
        section[..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn the_documented_table_lists_every_exit_code() {
        let doc = include_str!("../docs/commands.md");
        assert_eq!(table_codes(doc, "## Exit codes"), codes());
    }

    #[test]
    fn the_dags_table_lists_every_exit_code_and_the_permanent_ones() {
        let dag = include_str!("../dags/fraudctl_exit_codes.py");
        let start = dag.find("EXIT_CODES = {").expect("EXIT_CODES");
        let table = &dag[start..start + dag[start..].find("\n}").expect("its end")];
        let listed: Vec<i32> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().split(':').next()?.parse().ok())
            .collect();
        assert_eq!(listed, codes());
        let permanent = format!(
            "for code in ({}, {})}}",
            exit::PERMANENT[0],
            exit::PERMANENT[1]
        );
        assert!(
            dag.contains(&permanent),
            "PERMANENT_EXIT_CODES: {permanent}"
        );
        assert!(dag.contains(&format!("SKIPPED_EXIT_CODE = {}\n", exit::SKIPPED)));
    }
}
