//! Exponential backoff for errors that are transient (5xx, throttling, network). Callers decide
//! what is transient; permanent errors are never retried.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Retries after the first attempt.
    pub retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(retries: u32, initial: Duration, max: Duration) -> Self {
        Backoff {
            retries,
            initial,
            max,
        }
    }

    /// The pause before retry number `attempt` (0-based): doubling, capped, with ±20 % jitter so
    /// that many workers do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1 << attempt.min(16))
            .min(self.max);
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

/// Runs `op` until it succeeds, fails permanently, or the retries are used up. `op` returns
/// `Err((error, transient))`.
pub fn retry<T, E: std::fmt::Display>(
    backoff: &Backoff,
    what: &str,
    mut op: impl FnMut() -> Result<T, (E, bool)>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err((e, true)) if attempt < backoff.retries => {
                let pause = backoff.delay(attempt);
                tracing::warn!(what, attempt = attempt + 1, retry_in_ms = pause.as_millis() as u64, error = %e, "transient failure, retrying");
                std::thread::sleep(pause);
                attempt += 1;
            }
            Err((e, _)) => return Err(e),
        }
    }
}
