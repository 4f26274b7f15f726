//! How fraudctl treats a failing outside service (the payments API, the SMTP server, SageMaker):
//! each failure is classified once, as transient (unreachable, timed out, throttled, a 5xx; for
//! SMTP a 4xx) or not, by the error type itself ([`Transient`], Vector's `RetryLogic` idea), and
//! the transient ones are retried with exponential backoff. Permanent errors are never retried.

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

/// Whether a failure is worth another attempt.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// A failed call to an outside service, for services whose failures come in two kinds.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Unreachable, timed out, throttled or a 5xx: it may answer later.
    #[error("{0}")]
    Unavailable(String),
    /// The service refused the request itself (a 4xx, an unknown endpoint, a bad answer):
    /// asking again will not help.
    #[error("{0}")]
    Refused(String),
}

impl Transient for ServiceError {
    fn is_transient(&self) -> bool {
        matches!(self, ServiceError::Unavailable(_))
    }
}

/// Runs `op` until it succeeds, fails permanently, or the retries are used up.
pub fn retry<T, E: Transient + std::fmt::Display>(
    backoff: &Backoff,
    what: &str,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < backoff.retries => {
                let pause = backoff.delay(attempt);
                tracing::warn!(what, attempt = attempt + 1, retry_in_ms = pause.as_millis() as u64, error = %e, "transient failure, retrying");
                std::thread::sleep(pause);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
