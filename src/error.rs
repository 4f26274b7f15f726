//! Failures that callers must tell apart, and the process exit codes they map to.
//!
//! Everything else is an `anyhow::Error` with context naming the file, record, URL or setting;
//! `main` prints the whole chain and exits with [`exit::ERROR`].

use thiserror::Error;

/// Documented exit codes (see the README's "Exit codes").
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

/// The exit code for an error chain: the first [`Failure`] in it decides; a PostgreSQL error that
/// is not an SQL error (connection lost) or that says the server is going away or cannot take
/// connections (SQLSTATE classes 08 and 57P: shut down by an operator, crashed, starting up)
/// counts as unavailable.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit_code();
        }
        #[cfg(feature = "services")]
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            let state = pg.code().map(|c| c.code());
            if state.map_or(true, |c| c.starts_with("08") || c.starts_with("57P")) {
                return exit::UNAVAILABLE;
            }
        }
    }
    exit::ERROR
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
