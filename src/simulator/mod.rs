//! `fraudctl serve-payments`: an HTTP server that behaves like the payments API
//! (`GET /current-transactions`, one transaction per call, the same body format), replaying a CSV
//! in the data set's layout or generating synthetic transactions, with injectable faults.
//!
//! Other endpoints: `GET /health` (200 "ok") and `GET /stats` (JSON counters, for tests).

mod params;
mod synthetic;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use crate::dataset;
use crate::payments_api::encode;
use crate::transaction::{api_column, API_COLUMNS};

/// Columns of an API row the simulator changes.
const TRANS_NUM: usize = api_column("trans_num");
const CURRENT_TIME: usize = api_column("current_time");
const AMT: usize = api_column("amt");
const MERCHANT: usize = api_column("merchant");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeMode {
    /// Like the real API: a payment is stamped when it happens. A replayed CSV row happens when
    /// it is requested; synthetic payments happen on the wall clock, at the population's rate.
    Now,
    /// For load tests: synthetic payments as fast as they are asked for, each stamped within the
    /// last 24 hours at its simulated time of day (a replayed row: as `now`).
    LastDay,
    /// Keep the row's original time (trans_date_trans_time, or the synthetic clock).
    Original,
}

/// Options of `fraudctl serve-payments`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FRAUDCTL_SIM_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,

    /// Replay this CSV (the data set's layout, e.g. fraudTest.csv) in order, looping at the end
    /// (later loops suffix trans_num with "-L<n>" so every transaction served is unique).
    /// Without it, transactions are generated.
    #[arg(long, env = "FRAUDCTL_SIM_CSV", value_name = "PATH")]
    pub csv: Option<PathBuf>,

    /// Answer 503 once the CSV is exhausted instead of looping.
    #[arg(long, env = "FRAUDCTL_SIM_NO_LOOP")]
    pub no_loop: bool,

    /// What current_time carries, and when synthetic payments are served.
    ///
    /// `now`, like the real API, stamps a payment with when it happens: a replayed CSV row when
    /// it is requested; a synthetic payment at its moment on the wall clock, the generator's
    /// clock being the wall clock. A synthetic payment is served by the first request after it
    /// happened (a request with nothing new gets a document without rows), so the stream's rate
    /// is the population's (see --cards), its hours the real ones and a card's history real
    /// hours. The population starts a day old: the stream is at its steady rate from the first
    /// request; a card's payments of the day before the start are never served.
    ///
    /// `last-day`, for load tests and benchmarks: synthetic payments as fast as they are
    /// requested, on the generator's own clock, each stamped at the latest moment up to the
    /// request with its simulated time of day (within the last 24 hours: a card's history is
    /// that of its simulated day, a card whose day straddles the time of day has its later
    /// payments stamped the day before, as late arrivals). Replayed rows: as `now`.
    ///
    /// `original` keeps the row's own time: trans_date_trans_time, or the generator's clock
    /// (from 2020-06-21 00:00 UTC, as fast as requested; same seed and options, same stream,
    /// times included).
    #[arg(long, env = "FRAUDCTL_SIM_TIME_MODE", value_enum, default_value_t = TimeMode::Now)]
    pub time_mode: TimeMode,

    /// Seed of the generator and of the fault injection (same seed, same sequence).
    #[arg(long, env = "FRAUDCTL_SIM_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Share of generated transactions that are frauds (0 to 1). They come in bursts, about
    /// ten on each compromised card.
    #[arg(long, env = "FRAUDCTL_SIM_FRAUD_RATE", default_value_t = 0.02, value_parser = share)]
    pub fraud_rate: f64,

    /// Synthetic payments: cards whose day begins in each simulated day (1 to 200000; default
    /// 50000 in `--time-mode now`, 300 otherwise), about as many as are active at a time.
    ///
    /// Each card lives one simulated day, without history before it: a day of legitimate
    /// spending (3.5 payments on average) or a compromised card's burst of frauds. A simulated
    /// day holds about 3.5 × CARDS payments. In `now` mode that is a wall-clock day: 50,000
    /// cards make 175,000 payments a day, 2 a second on average (1 before noon UTC, nearly 3
    /// after, as the data set's hours). On the generator's own clock
    /// (`last-day`, `original`), which advances with the payments served, the default 300 make
    /// a simulated day of about 1,050 payments, so cards recur within a few hundred payments.
    #[arg(long, env = "FRAUDCTL_SIM_CARDS",
          value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub cards: Option<u32>,

    /// Transactions per response (the real API sends one; 1 to 10000).
    #[arg(long, env = "FRAUDCTL_SIM_ROWS_PER_RESPONSE", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub rows_per_response: u16,

    /// Fault: share of requests answered 500 (no transaction consumed; 0 to 1).
    #[arg(long, env = "FRAUDCTL_SIM_ERROR_RATE", default_value_t = 0.0, value_parser = share)]
    pub error_rate: f64,

    /// Fault: share of responses with a malformed body (truncated, not JSON, a wrong type, a
    /// missing column); the transaction is consumed (0 to 1).
    #[arg(long, env = "FRAUDCTL_SIM_MALFORMED_RATE", default_value_t = 0.0, value_parser = share)]
    pub malformed_rate: f64,

    /// Fault: share of responses delayed by --slow-ms (0 to 1).
    #[arg(long, env = "FRAUDCTL_SIM_SLOW_RATE", default_value_t = 0.0, value_parser = share)]
    pub slow_rate: f64,

    /// Delay of a slow response, in milliseconds (at most 600000).
    #[arg(long, env = "FRAUDCTL_SIM_SLOW_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub slow_ms: u64,

    /// Fault: share of responses that repeat the previous transaction (same trans_num; 0 to 1).
    #[arg(long, env = "FRAUDCTL_SIM_DUPLICATE_RATE", default_value_t = 0.0, value_parser = share)]
    pub duplicate_rate: f64,

    /// Worker threads answering requests (1 to 64).
    #[arg(long, env = "FRAUDCTL_SIM_THREADS", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    pub threads: u8,
}

/// A share (a probability): a number from 0 to 1. NaN, infinities and values outside are refused
/// when the setting is read, not when a request draws with it.
fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is not a share between 0 and 1"))
    }
}

/// Counters served on `/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub requests: u64,
    /// Transactions sent in well-formed responses.
    pub served: u64,
    /// Transactions sent garbled (each is one rejected record for the client).
    pub malformed: u64,
    pub duplicates: u64,
    /// Well-formed responses without a transaction (`--time-mode now`: nothing new happened).
    pub empty: u64,
    pub errors: u64,
    pub slow: u64,
}

enum Source {
    Csv {
        rows: Vec<Vec<Value>>,
        next: usize,
        loops: u64,
        no_loop: bool,
    },
    Synthetic(synthetic::Generator),
}

struct State {
    source: Source,
    rng: SmallRng,
    last: Option<Vec<Value>>,
    stats: Stats,
    served_index: u64,
}

enum Reply {
    Body(String),
    Error(u16, String),
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let source = match &args.csv {
        Some(path) => Source::Csv {
            rows: load_csv(path)?,
            next: 0,
            loops: 0,
            no_loop: args.no_loop,
        },
        None => Source::Synthetic(generator(args)?),
    };
    let state = Arc::new(Mutex::new(State {
        source,
        rng: SmallRng::seed_from_u64(args.seed ^ 0x5eed),
        last: None,
        stats: Stats::default(),
        served_index: 0,
    }));
    let server = Arc::new(
        tiny_http::Server::http(&args.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?,
    );
    tracing::info!(listen = %args.listen, source = %args.csv.as_ref().map_or("synthetic".into(), |p| p.display().to_string()), "payments simulator serving GET /current-transactions");
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (server, state, args) = (server.clone(), state.clone(), args.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let (status, body, content_type) = route(&request, &state, &args);
                    let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                        .expect("static header");
                    let response = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header);
                    if let Err(e) = request.respond(response) {
                        tracing::debug!(error = %e, "client went away");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().ok();
    }
    Ok(())
}

/// The synthetic stream of `args`: on the wall clock in `--time-mode now`, else on its own.
fn generator(args: &ServeArgs) -> Result<synthetic::Generator> {
    let (seed, rate) = (args.seed, args.fraud_rate);
    match args.time_mode {
        TimeMode::Now => {
            let cards = args.cards.unwrap_or(50_000);
            let now = Utc::now().timestamp_millis();
            synthetic::Generator::on_wall_clock(seed, rate, cards, now)
        }
        TimeMode::LastDay | TimeMode::Original => {
            synthetic::Generator::new(seed, rate, args.cards.unwrap_or(300))
        }
    }
}

fn route(
    request: &tiny_http::Request,
    state: &Mutex<State>,
    args: &ServeArgs,
) -> (u16, String, &'static str) {
    let path = request.url().split('?').next().unwrap_or("");
    match (request.method(), path) {
        (tiny_http::Method::Get, "/current-transactions") => {
            let (reply, delay) = next_reply(state, args);
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            match reply {
                Reply::Body(b) => (200, b, "application/json"),
                Reply::Error(code, msg) => (code, msg, "text/plain"),
            }
        }
        (tiny_http::Method::Get, "/health") => (200, "ok".into(), "text/plain"),
        (tiny_http::Method::Get, "/stats") => {
            let stats = lock(state).stats.clone();
            (
                200,
                serde_json::to_string(&stats).expect("stats serialise"),
                "application/json",
            )
        }
        _ => (
            404,
            "not found: try GET /current-transactions".into(),
            "text/plain",
        ),
    }
}

/// The simulator's state. A request that panicked while holding it must not turn every later
/// request into a 500: the state is still consistent (counters and a cursor), so take it back.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn next_reply(state: &Mutex<State>, args: &ServeArgs) -> (Reply, Option<Duration>) {
    let mut s = lock(state);
    s.stats.requests += 1;
    if s.rng.gen_bool(args.error_rate) {
        s.stats.errors += 1;
        return (
            Reply::Error(500, "injected fault: internal server error".into()),
            None,
        );
    }
    let delay = s
        .rng
        .gen_bool(args.slow_rate)
        .then(|| Duration::from_millis(args.slow_ms));
    s.stats.slow += u64::from(delay.is_some());
    let mut rows = Vec::with_capacity(usize::from(args.rows_per_response));
    let mut duplicates = 0;
    for _ in 0..args.rows_per_response {
        let repeat = s.rng.gen_bool(args.duplicate_rate);
        let row = match (&s.last, repeat) {
            (Some(last), true) => {
                duplicates += 1;
                last.clone()
            }
            _ => match next_row(&mut s, args.time_mode) {
                Next::Row(row) => row,
                Next::Exhausted if rows.is_empty() => {
                    return (
                        Reply::Error(503, "the CSV is exhausted (--no-loop)".into()),
                        delay,
                    )
                }
                Next::Exhausted | Next::NotYet => break,
            },
        };
        s.last = Some(row.clone());
        rows.push(row);
    }
    let first_index = s.served_index;
    s.served_index += rows.len() as u64;
    let index: Vec<u64> = (first_index..s.served_index).collect();
    let n = rows.len() as u64;
    s.stats.duplicates += duplicates;
    s.stats.empty += u64::from(n == 0);
    if n > 0 && s.rng.gen_bool(args.malformed_rate) {
        s.stats.malformed += n;
        let kind = s.rng.gen_range(0..4);
        return (Reply::Body(malformed(kind, &index, rows)), delay);
    }
    s.stats.served += n;
    (Reply::Body(encode(&API_COLUMNS, &index, &rows)), delay)
}

/// What the source has for a request.
enum Next {
    Row(Vec<Value>),
    /// Synthetic payments on the wall clock: none has happened since the last one served.
    NotYet,
    /// The CSV is at its end (--no-loop).
    Exhausted,
}

fn next_row(s: &mut State, mode: TimeMode) -> Next {
    let now_ms = Utc::now().timestamp_millis();
    match &mut s.source {
        Source::Synthetic(g) => match mode {
            TimeMode::Now => g.next_due(now_ms).map_or(Next::NotYet, Next::Row),
            TimeMode::LastDay => {
                let mut row = g.next();
                if let Some(simulated) = row[CURRENT_TIME].as_i64() {
                    row[CURRENT_TIME] = synthetic::within_last_day(simulated, now_ms).into();
                }
                Next::Row(row)
            }
            TimeMode::Original => Next::Row(g.next()),
        },
        Source::Csv {
            rows,
            next,
            loops,
            no_loop,
        } => {
            if *next == rows.len() {
                if *no_loop || rows.is_empty() {
                    return Next::Exhausted;
                }
                *next = 0;
                *loops += 1;
            }
            let mut row = rows[*next].clone();
            *next += 1;
            if *loops > 0 {
                let tn = &mut row[TRANS_NUM];
                *tn = Value::String(format!("{}-L{loops}", tn.as_str().unwrap_or_default()));
            }
            if mode != TimeMode::Original {
                row[CURRENT_TIME] = now_ms.into();
            }
            Next::Row(row)
        }
    }
}

/// A garbled body of one of four kinds; the rows' card numbers are in it, as the real API would
/// send them.
fn malformed(kind: u32, index: &[u64], mut rows: Vec<Vec<Value>>) -> String {
    match kind {
        0 => {
            let body = encode(&API_COLUMNS, index, &rows);
            body[..body.len() / 2].to_string()
        }
        1 => "<html><body>502 Bad Gateway</body></html>".to_string(),
        2 => {
            for row in &mut rows {
                row[AMT] = Value::String("sixty".into());
            }
            encode(&API_COLUMNS, index, &rows)
        }
        _ => {
            let columns: Vec<&str> = API_COLUMNS
                .iter()
                .copied()
                .filter(|c| *c != API_COLUMNS[MERCHANT])
                .collect();
            for row in &mut rows {
                row.remove(MERCHANT);
            }
            encode(&columns, index, &rows)
        }
    }
}

/// Loads a CSV in the data set's layout as API rows (API_COLUMNS order, `current_time` the
/// row's own time; `--time-mode now` and `last-day` replace it when the row is served).
fn load_csv(path: &std::path::Path) -> Result<Vec<Vec<Value>>> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot open CSV {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read {}", path.display()))?
        .clone();
    let needed = API_COLUMNS[..CURRENT_TIME]
        .iter()
        .chain([&dataset::TIME_COLUMN]);
    if let Some(missing) = needed
        .into_iter()
        .find(|c| !headers.iter().any(|h| h == **c))
    {
        anyhow::bail!(
            "{} has no column {missing}: not the data set's layout",
            path.display()
        );
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = || format!("{} line {}", path.display(), i + 2);
        let record = record.with_context(line)?;
        let mut row = dataset::row(&headers, &record);
        if !row["current_time"].is_i64() {
            anyhow::bail!("{}: bad {}", line(), dataset::TIME_COLUMN);
        }
        rows.push(
            API_COLUMNS
                .iter()
                .map(|c| row.remove(*c).unwrap_or(Value::Null))
                .collect(),
        );
    }
    tracing::info!(rows = rows.len(), file = %path.display(), "loaded CSV for replay");
    Ok(rows)
}
