//! The `fraudctl` command line: parses arguments, sets up logging, calls the library, prints the
//! stage's JSON summary on stdout and exits with a documented code (see `fraudctl::error::exit`).

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

use fraudctl::error::{exit, exit_code_of, Failure};
use fraudctl::pan::mask_digit_runs;
use fraudctl::{
    alert, backtest, explain, extract, live, load, migrate, report, rules, score, simulator,
    transform,
};

/// Fraud-detection data pipeline: payments API → features → fraud score → PostgreSQL → alerts.
///
/// Each stage reads the previous stage's file in a run directory and writes its own (JSON Lines,
/// written atomically); stdout carries the stage's JSON summary, logs go to stderr
/// (FRAUDCTL_LOG=debug for more). Every flag can also be set by the environment variable shown
/// in its help; secrets (the card-hash key, passwords) are read from the environment only.
#[derive(Debug, Parser)]
#[command(
    name = "fraudctl",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = exit::help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of `fraudctl run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Work directory of the run.
    #[arg(long, env = "FRAUDCTL_RUN_DIR", value_name = "DIR")]
    run_dir: std::path::PathBuf,

    /// Stop after load (no emails).
    #[arg(long)]
    no_alert: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the payments API (or read a CSV) into raw.jsonl; invalid records go to
    /// raw.rejected.jsonl with their reason. Reuses the run's raw file if it exists.
    Extract(extract::ExtractArgs),
    /// Compute the model's features (features.jsonl) as its feature spec defines them.
    Transform(transform::TransformArgs),
    /// Add fraud probability, predicted label, model version and scorer (scored.jsonl).
    Score(score::ScoreArgs),
    /// Upsert scored.jsonl into payments_scored, in one transaction.
    Load(load::LoadArgs),
    /// Email every predicted fraud not alerted yet, once (recorded in fraud_alerts).
    Alert(alert::AlertArgs),
    /// Apply the database migrations (idempotent, safe to run concurrently).
    Migrate(migrate::MigrateArgs),
    /// Print one business day's payments and frauds (default: yesterday).
    Report(report::ReportArgs),
    /// Show, add and remove the entries of the lists rules read (`lists.<name>` in
    /// docs/rules.md), each with who added it, when, why and until when; every change is kept
    /// (table list_changes). A card is added by its keyed hash, never its number.
    ///
    /// Examples:
    ///   fraudctl lists add --list blocked_cards --card-stdin --reason "reported stolen by phone"
    ///   fraudctl lists add --list blocked_cards --card-of 0174e1948b… --reason "confirmed"
    ///   fraudctl lists add --list trusted_merchants --value "fraud_Kilback LLC" \
    ///       --reason "our own shop" --expires-in-days 30
    ///   fraudctl lists show --list blocked_cards
    #[command(verbatim_doc_comment)]
    Lists(rules::lists::ListsArgs),
    /// What a candidate rule set and model would have decided over a stored period: each
    /// payment re-scored from the model inputs stored with it (its card history then), the
    /// rules evaluated as score does, against the labels, the analysts' verdicts and what the
    /// pipeline decided (docs/rules.md, "Backtests").
    ///
    /// Examples:
    ///   fraudctl backtest --from 2026-12-01 --to 2026-12-05 --rules rules/candidate.toml
    ///   fraudctl backtest --from 2026-12-01 --to 2026-12-05 --model-dir model/challenger --format json
    #[command(verbatim_doc_comment)]
    Backtest(backtest::BacktestArgs),
    /// Say why payments scored as they did: one JSON line a payment of a run's features.jsonl,
    /// or of a payment held in payments_scored (--trans-num without --run-dir).
    ///
    /// Each line is {"trans_num", "margin", "probability", "contributions": {feature: value,
    /// …, "bias": value}, "reasons": [...]}. The contributions are the local model's exact
    /// TreeSHAP values, as XGBoost's `predict(pred_contribs=True)` gives them: in margin
    /// (log-odds) space, one per feature of the model plus the bias, and they add up to the
    /// margin (the probability is its sigmoid). A positive value pushed the payment towards
    /// fraud. "reasons" are the three largest positive ones in words, the same that `score`
    /// writes for a predicted fraud (and alerts and the dashboard show).
    ///
    /// Examples:
    ///   fraudctl explain --trans-num 3cb54a48…      (the payment as stored, any day)
    ///   fraudctl explain --run-dir /runs/2026-11-24T10 --trans-num 3cb54a48…
    ///   fraudctl explain --run-dir DIR | jq -c 'select(.probability > 0.5) | .reasons[].text'
    ///
    /// Use the model directory that scored the run: its feature spec must be the one that
    /// computed features.jsonl, and its version the stored payment's model_version (else
    /// exit 4). A payment loaded before its model inputs were stored (migration V21) is
    /// explained from its run directory only.
    #[command(verbatim_doc_comment)]
    Explain(explain::ExplainArgs),
    /// Run extract, transform, score, load and alert for one run directory (every other setting
    /// from the stages' environment variables).
    Run(RunArgs),
    /// The live path: poll the payments API without pause and take each micro-batch through
    /// transform, score, load and alert at once (a fraud emailed within about a second).
    ///
    /// Each payment is written durably into the journal of its minute, in the every-minute
    /// DAG's run directory of that interval (--runs-root/fraud_pipeline/<interval end>/), before
    /// it is processed; when the minute ends, the journal becomes the minute's raw.jsonl, which
    /// the DAG's run reuses (same rows, no email sent twice). One capturer at a time: a lease in
    /// PostgreSQL (a second `fraudctl live` waits; the DAG's extract polls the API itself only
    /// while nobody holds it). Settings: its own below, then the stages' (the same flags and
    /// FRAUDCTL_* variables). Prints a JSON line per micro-batch, and one when it stops.
    ///
    /// Stops on SIGTERM, SIGINT or --for, after the micro-batch under way: exit 0.
    ///
    /// Example:
    ///   FRAUDCTL_RUNS_ROOT=/srv/runs fraudctl live --batch-ms 500
    #[command(verbatim_doc_comment)]
    Live(Box<live::LiveArgs>),
    /// Serve a simulated payments API (CSV replay or synthetic), with injectable faults.
    ServePayments(simulator::ServeArgs),
}

fn main() {
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| exit_on_usage_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let json = json_logs();
    // The live path runs the stages a few times a second: their own lines would drown its
    // micro-batch summaries (FRAUDCTL_LOG shows them again, e.g. `info`).
    let quiet = matches!(cli.command, Command::Live(_));
    init_logging(
        json,
        if quiet {
            "warn,fraudctl::live=info"
        } else {
            "info,refinery_core=warn"
        },
    );
    let code = match refuse_secrets_in_argv(&matches).and_then(|()| dispatch(cli.command)) {
        Ok(()) => exit::OK,
        Err(err) => {
            let code = exit_code_of(&err);
            report_failure(&err, code, json);
            code
        }
    };
    std::process::exit(code);
}

/// Clap's errors: help and version exit 0, usage errors 2 (unknown flag, missing argument), an
/// invalid value 5 (a setting, whether given as a flag or its environment variable, which the
/// message then names).
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        e.exit();
    }
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split_whitespace().next().map(str::to_string),
        _ => None,
    };
    let var = flag.as_deref().and_then(env_of_flag);
    eprint!("{}", mask_digit_runs(&e.render().to_string()));
    if let (Some(flag), Some(var)) = (flag, var) {
        eprintln!("(the setting {flag}, also read from the environment variable {var})");
    }
    std::process::exit(exit::CONFIG);
}

/// The environment variable of a flag (`--max-age-hours`), in whichever subcommand has it.
fn env_of_flag(flag: &str) -> Option<String> {
    let long = flag.strip_prefix("--")?;
    let cli = Cli::command();
    let found = cli
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .find(|arg| arg.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    Some(found)
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Extract(args) => print(&extract::run(&args)?),
        Command::Transform(args) => print(&transform::run(&args)?),
        Command::Score(args) => print(&score::run(&args)?),
        Command::Load(args) => print(&load::run(&args)?),
        Command::Alert(args) => {
            let outcome = alert::run(&args)?;
            outcome.planned.iter().try_for_each(print)?;
            print(&outcome.summary)
        }
        Command::Migrate(args) => print(&migrate::run(&args)?),
        Command::Explain(args) => explain::run(
            &args,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        )
        .map(drop),
        Command::Report(args) => {
            let built = report::build(&args)?;
            report::write(&built, args.format, &mut std::io::stdout().lock())
        }
        Command::Backtest(args) => {
            backtest::run(&args)?.write(args.format, &mut std::io::stdout().lock())
        }
        Command::Lists(args) => {
            print!("{}", rules::lists::run(&args)?);
            Ok(())
        }
        Command::ServePayments(args) => simulator::serve(&args),
        Command::Run(args) => run_pipeline(&args),
        Command::Live(args) => print(&live::run(&args)?),
    }
}

/// Each stage is parsed as if invoked alone, so flags' environment variables and defaults apply
/// unchanged; a stage that fails or is skipped stops the run with its own exit code. The run
/// holds its directory's lock from the first stage to the last (the stages share it).
fn run_pipeline(args: &RunArgs) -> Result<()> {
    let stages: &[&str] = if args.no_alert {
        &["extract", "transform", "score", "load"]
    } else {
        &["extract", "transform", "score", "load", "alert"]
    };
    let parse = |stage: &str| {
        let argv = ["fraudctl", stage, "--run-dir"]
            .map(std::ffi::OsStr::new)
            .into_iter()
            .chain([args.run_dir.as_os_str()]);
        Cli::try_parse_from(argv)
    };
    let Command::Extract(extract) = parse("extract")?.command else {
        unreachable!("parsed as extract")
    };
    let _held = fraudctl::rundir::RunDir::create(&extract.run, "run")?;
    for stage in stages {
        tracing::info!(stage, "running");
        dispatch(parse(stage)?.command)?;
    }
    Ok(())
}

/// Prints a summary as one JSON line (Airflow's BashOperator pushes the last line to XCom).
fn print<T: Serialize>(summary: &T) -> Result<()> {
    println!("{}", serde_json::to_string(summary)?);
    Ok(())
}

/// A database URL with a password must come from the environment, where it does not show in
/// process listings or Airflow's rendered command.
fn refuse_secrets_in_argv(matches: &ArgMatches) -> Result<()> {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    let given_in_argv = m.ids().any(|id| id == "database_url")
        && m.value_source("database_url") == Some(ValueSource::CommandLine);
    if given_in_argv
        && m.get_one::<String>("database_url")
            .is_some_and(|url| fraudctl::redact::has_secret(url))
    {
        return Err(Failure::Config(format!(
            "--database-url carries a password: pass it in {} instead (secrets never go on the command line)",
            fraudctl::setting::var::<fraudctl::db::DbArgs>("database_url")
        ))
        .into());
    }
    Ok(())
}

/// Where log lines go: stderr, each line with its digit runs of card-number length masked (a
/// log line may quote an input value, whatever the code that logged it meant to show).
struct MaskedStderr;

impl std::io::Write for MaskedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let masked = mask_digit_runs(&String::from_utf8_lossy(line));
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How log lines are written: `FRAUDCTL_LOG_FORMAT`, `text` (the default) or `json`.
const LOG_FORMAT_VAR: &str = "FRAUDCTL_LOG_FORMAT";

/// Whether logs are JSON lines (one object a line: timestamp, level, message, then the
/// event's fields), for log shippers; else compact text.
fn json_logs() -> bool {
    match std::env::var(LOG_FORMAT_VAR).as_deref() {
        Ok("json") => true,
        Ok("text") | Ok("") | Err(_) => false,
        Ok(other) => {
            eprintln!(
                "fraudctl: error: {LOG_FORMAT_VAR}={:?} is not a log format: use text or json",
                mask_digit_runs(other)
            );
            std::process::exit(exit::CONFIG);
        }
    }
}

/// Log timestamps to the millisecond, `2026-12-06T04:10:32.123Z`: the nine digits after the
/// `T` never make a chain the card-number masking of [`MaskedStderr`] could take for one (the
/// default's microseconds gave twelve).
struct Millis;

impl tracing_subscriber::fmt::time::FormatTime for Millis {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// Logging to stderr, `FRAUDCTL_LOG` filtering it (else `default`).
fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRAUDCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| MaskedStderr)
        .with_timer(Millis)
        .with_target(false);
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .compact()
            .init();
    }
}

/// The failure that ends the run, on stderr: `fraudctl: error: …` and a `caused by:` line a
/// cause, or with JSON logs one event (its causes in `caused_by`, the exit code in
/// `exit_code`).
fn report_failure(err: &anyhow::Error, code: i32, json: bool) {
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    if json {
        let caused_by = (!causes.is_empty()).then(|| causes.join("; "));
        if code == exit::SKIPPED {
            tracing::info!(exit_code = code, "{err}");
        } else {
            tracing::error!(exit_code = code, caused_by, "{err}");
        }
        return;
    }
    // Messages may quote input (a value, a URL): masked like every log line.
    let say = |line: String| eprintln!("{}", mask_digit_runs(&line));
    if code == exit::SKIPPED {
        say(format!("fraudctl: {err}"));
    } else {
        say(format!("fraudctl: error: {err}"));
        for cause in causes {
            say(format!("  caused by: {cause}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_variable_is_in_the_configuration_table() {
        let table = include_str!("../docs/configuration.md");
        let mut missing = Vec::new();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                if let Some(var) = arg.get_env() {
                    let var = var.to_string_lossy();
                    if !table.contains(&format!("`{var}`")) {
                        let flag = arg.get_long().unwrap_or_default();
                        missing.push(format!("{var} ({} --{flag})", sub.get_name()));
                    }
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "docs/configuration.md's table lacks {missing:#?}"
        );
    }
}
