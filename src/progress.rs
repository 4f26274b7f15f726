//! Progress of a long stage, for the person or the log waiting on it: on a terminal, a bar
//! (records, rate, time left when the total is known; `indicatif`); elsewhere (Airflow's task
//! logs), a log line every `FRAUDCTL_PROGRESS_INTERVAL_MS` (5 s; 0: none) with the same
//! figures. A batch done within the first second (a bar) or the first interval (log lines)
//! shows nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal, in milliseconds.
pub const INTERVAL_VAR: &str = "FRAUDCTL_PROGRESS_INTERVAL_MS";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a stage runs before its bar appears.
const BAR_AFTER: Duration = Duration::from_secs(1);

pub struct Progress {
    stage: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    /// When the next line is logged (`None`: never).
    next_log: Option<Instant>,
    interval: Duration,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of `stage` over `total` records (`None`: not known beforehand).
    pub fn new(stage: &'static str, total: Option<u64>) -> Self {
        let started = Instant::now();
        let interval = std::env::var(INTERVAL_VAR)
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(DEFAULT_INTERVAL, Duration::from_millis);
        Progress {
            stage,
            total,
            done: 0,
            started,
            next_log: (!interval.is_zero()).then(|| started + interval),
            interval,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// `records` more are done.
    pub fn add(&mut self, records: u64) {
        self.done += records;
        let now = Instant::now();
        if self.terminal {
            if self.bar.is_none() && now - self.started >= BAR_AFTER {
                self.bar = Some(self.make_bar());
            }
            if let Some(bar) = &self.bar {
                bar.set_position(self.done);
            }
        } else if self.next_log.is_some_and(|at| now >= at) {
            self.next_log = Some(now + self.interval);
            self.log(now);
        }
    }

    fn log(&self, now: Instant) {
        let seconds = (now - self.started).as_secs_f64();
        let rate = (self.done as f64 / seconds).round() as u64;
        let left = self
            .total
            .filter(|_| rate > 0)
            .map(|total| total.saturating_sub(self.done) / rate);
        tracing::info!(
            stage = self.stage,
            records = self.done,
            total = self.total,
            rate,
            seconds_left = left,
            "progress"
        );
    }

    fn make_bar(&self) -> ProgressBar {
        let (bar, template) = match self.total {
            Some(total) => (
                ProgressBar::new(total),
                "{prefix} [{bar:30}] {human_pos}/{human_len}, {rate}, {eta} left",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{prefix} {spinner} {human_pos}, {rate}",
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} records/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
        bar.set_prefix(self.stage);
        bar.set_position(self.done);
        bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
