//! The `sagemaker` scorer: InvokeEndpoint with `text/csv` rows in the spec's column order, as the
//! built-in XGBoost container expects. Batches stay under the payload cap; a bounded number of
//! batches are in flight, and results are written in input order. The SDK's standard retry
//! (exponential backoff) retries throttling and 5xx; what still fails is either "unavailable"
//! (the local fallback takes over, if enabled) or a refusal (a configuration error).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Result;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::Client;
use clap::Args;

use crate::error::Failure;
use crate::retry::ServiceError;

/// SageMaker's cap on an InvokeEndpoint request body.
pub const MAX_PAYLOAD_BYTES: usize = 6_291_456;

/// Options of the `sagemaker` scorer.
#[derive(Debug, Clone, Args)]
pub struct SageMakerArgs {
    /// Name of the SageMaker endpoint (built-in XGBoost container, text/csv).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_ENDPOINT", value_name = "NAME")]
    pub sagemaker_endpoint: Option<String>,

    /// Endpoint URL override, for an AWS-compatible server (e.g. http://127.0.0.1:5000).
    /// Region and credentials come from the standard AWS chain (AWS_REGION, AWS_PROFILE, …).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_ENDPOINT_URL", value_name = "URL")]
    pub sagemaker_endpoint_url: Option<String>,

    /// Most rows in one InvokeEndpoint request (1 to 100000).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_MAX_ROWS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sagemaker_max_rows: u32,

    /// Most bytes in one request body (SageMaker refuses more than 6291456).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_MAX_PAYLOAD_BYTES", default_value_t = 5_000_000,
          value_parser = clap::value_parser!(u64).range(1024..=MAX_PAYLOAD_BYTES as u64))]
    pub sagemaker_max_payload_bytes: u64,

    /// Requests in flight at once.
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sagemaker_concurrency: u32,

    /// Attempts per request (the SDK retries throttling and 5xx with exponential backoff; 1 to
    /// 20).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub sagemaker_attempts: u32,

    /// Timeout of one attempt, in seconds (the container must answer within 60 s; 1 to 600).
    #[arg(long, env = "FRAUDCTL_SAGEMAKER_TIMEOUT_SECS", default_value_t = 65,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub sagemaker_timeout_secs: u64,
}

pub struct Endpoint {
    client: Client,
    pub name: String,
    target: String,
}

/// A batch's result: one probability per row, and the production variant that answered.
pub type BatchResult = Result<(Vec<f64>, String), ServiceError>;

impl Endpoint {
    pub async fn connect(args: &SageMakerArgs) -> Result<Self> {
        let name = args.sagemaker_endpoint.clone().ok_or_else(|| {
            Failure::Config(format!(
                "the sagemaker scorer needs an endpoint: set {}",
                crate::setting::name::<SageMakerArgs>("sagemaker_endpoint")
            ))
        })?;
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let region = shared.region().map(|r| r.to_string()).ok_or_else(|| {
            Failure::Config(
                "no AWS region for the SageMaker endpoint: set AWS_REGION (or a profile's region)"
                    .into(),
            )
        })?;
        let mut config = aws_sdk_sagemakerruntime::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(args.sagemaker_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(args.sagemaker_timeout_secs))
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(url) = &args.sagemaker_endpoint_url {
            config = config.endpoint_url(url);
        }
        let target = format!(
            "{} (region {region}{})",
            name,
            args.sagemaker_endpoint_url
                .as_deref()
                .map(|u| format!(", {}", crate::redact::url(u)))
                .unwrap_or_default()
        );
        Ok(Endpoint {
            client: Client::from_conf(config.build()),
            name,
            target,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends one CSV batch of `rows` rows.
    pub async fn invoke(
        client: Client,
        name: String,
        payload: Vec<u8>,
        rows: usize,
    ) -> BatchResult {
        let response = client
            .invoke_endpoint()
            .endpoint_name(&name)
            .content_type("text/csv")
            .accept("text/csv")
            .body(Blob::new(payload))
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                let err = e.err();
                let msg = format!(
                    "{} ({status}): {}",
                    err.code().unwrap_or("error"),
                    err.message().unwrap_or("no message")
                );
                return Err(if status == 429 || status >= 500 {
                    ServiceError::Unavailable(msg)
                } else {
                    ServiceError::Refused(msg)
                });
            }
            Err(e) => return Err(ServiceError::Unavailable(crate::error::chain(&e))),
        };
        let variant = output
            .invoked_production_variant()
            .unwrap_or("default")
            .to_string();
        let body = output
            .body()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let scores = parse_scores(&text).map_err(ServiceError::Refused)?;
        if scores.len() != rows {
            return Err(ServiceError::Refused(format!(
                "endpoint answered {} scores for {rows} rows",
                scores.len()
            )));
        }
        Ok((scores, variant))
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

/// The XGBoost container answers one probability per line; older images one comma-separated
/// line. Both are accepted.
pub fn parse_scores(text: &str) -> Result<Vec<f64>, String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("endpoint answered {s:?}, not a probability"))
        })
        .collect()
}

/// Appends one CSV row (no header; an empty cell for a missing value).
pub fn csv_row(features: &[Option<f64>], out: &mut Vec<u8>) {
    use std::io::Write;
    for (i, v) in features.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(v) = v {
            write!(out, "{v}").expect("writing to a Vec");
        }
    }
    out.push(b'\n');
}

/// Batches in flight, answered in the order they were sent.
pub struct InFlight<T> {
    queue: VecDeque<(tokio::task::JoinHandle<BatchResult>, T)>,
    limit: usize,
}

impl<T> InFlight<T> {
    pub fn new(limit: usize) -> Self {
        InFlight {
            queue: VecDeque::new(),
            limit,
        }
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.limit
    }

    pub fn push(&mut self, task: tokio::task::JoinHandle<BatchResult>, batch: T) {
        self.queue.push_back((task, batch));
    }

    /// The oldest batch and its result.
    pub async fn next(&mut self) -> Option<(BatchResult, T)> {
        let (task, batch) = self.queue.pop_front()?;
        let result = task.await.unwrap_or_else(|e| {
            Err(ServiceError::Unavailable(format!(
                "request task failed: {e}"
            )))
        });
        Some((result, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_split_on_lines_and_commas() {
        assert_eq!(parse_scores("0.1\n0.9\n").unwrap(), vec![0.1, 0.9]);
        assert_eq!(parse_scores("0.1,0.9").unwrap(), vec![0.1, 0.9]);
        assert!(parse_scores("0.1\nNaN").is_err());
    }

    #[test]
    fn csv_rows_leave_missing_cells_empty() {
        let mut out = Vec::new();
        csv_row(&[Some(1.0), None, Some(0.25)], &mut out);
        assert_eq!(out, b"1,,0.25\n");
    }
}
