//! `fraudctl score`: features → fraud probability, predicted label, model version and scorer.
//!
//! Scorers: `local` (default; the XGBoost model in --model-dir, evaluated in-process) and
//! `sagemaker` (an endpoint). When the endpoint is unavailable after its retries, the fallback
//! (`--fallback local`, the default) scores the batch with the local model on features computed
//! from the transaction with the local model's own spec, and marks the rows `needs_rescore`;
//! `--fallback none` fails the task instead (exit 3) so Airflow retries it.

mod sagemaker;
mod xgboost;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use sagemaker::SageMakerArgs;
pub use xgboost::XgbModel;

use crate::error::Failure;
use crate::parallel;
use crate::rundir::{log_started, require_input, RunArgs, RunDir};
use crate::stagefile::{Header, StageReader, StageWriter};
use crate::transaction::Transaction;
use crate::transform::{Derived, FeatureRecord, FeatureSpec, FEATURES_SCHEMA};

pub const SCORED_SCHEMA: &str = "fraudctl.scored";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scorer {
    /// The XGBoost model in --model-dir, in-process (offline).
    Local,
    /// An AWS SageMaker endpoint.
    Sagemaker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fallback {
    /// Score with the local model and mark the rows for re-scoring.
    Local,
    /// Fail the task (exit 3).
    None,
}

/// Options of `fraudctl score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Which scorer computes the probabilities.
    #[arg(long, env = "FRAUDCTL_SCORER", value_enum, default_value_t = Scorer::Local)]
    pub scorer: Scorer,

    /// Directory of the local model: model.json (XGBoost JSON) and feature_spec.json.
    #[arg(long, env = "FRAUDCTL_MODEL_DIR", default_value = "model/default")]
    pub model_dir: PathBuf,

    /// Probability from which a payment is predicted fraudulent.
    #[arg(long, env = "FRAUDCTL_THRESHOLD", default_value_t = 0.5)]
    pub threshold: f64,

    /// What to do when the SageMaker endpoint is unavailable.
    #[arg(long, env = "FRAUDCTL_FALLBACK", value_enum, default_value_t = Fallback::Local)]
    pub fallback: Fallback,

    #[command(flatten)]
    pub sagemaker: SageMakerArgs,
}

/// The `score` object of a scored record: read with owned strings (`Score`), written with
/// borrowed ones (`Score<&str>`, no allocation a record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Score<S = String> {
    pub probability: f64,
    pub predicted_fraud: bool,
    pub threshold: f64,
    pub model_version: S,
    pub scorer: S,
    pub needs_rescore: bool,
}

#[derive(Serialize)]
struct ScoredOut<'a> {
    tx: &'a RawValue,
    derived: &'a RawValue,
    score: &'a Score<&'a str>,
}

/// A record of `scored.jsonl`, as read by `load`.
#[derive(Debug, Deserialize)]
pub struct ScoredRecord {
    pub tx: Transaction,
    pub derived: Derived,
    pub score: Score,
}

#[derive(Debug, Serialize)]
pub struct ScoreSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub records: u64,
    pub predicted_frauds: u64,
    pub scorer: &'static str,
    pub model_version: String,
    pub fallback_records: u64,
}

/// The local model: spec + XGBoost trees + a version derived from the model file's content.
pub struct LocalModel {
    pub spec: FeatureSpec,
    pub model: XgbModel,
    pub version: String,
}

impl LocalModel {
    pub fn load(dir: &Path) -> Result<Self> {
        let model_path = dir.join("model.json");
        let bytes = std::fs::read(&model_path)
            .with_context(|| format!("cannot read model {}", model_path.display()))?;
        let model = XgbModel::parse(&bytes)
            .map_err(|e| Failure::BadInput(format!("model {}: {e}", model_path.display())))?;
        let spec = FeatureSpec::load(&dir.join("feature_spec.json"))?;
        if model.num_features != spec.width() {
            return Err(Failure::BadInput(format!(
                "model {} takes {} features but its feature_spec.json lists {}",
                model_path.display(),
                model.num_features,
                spec.width()
            ))
            .into());
        }
        let version = format!(
            "{}@{}",
            spec.name,
            &hex::encode(Sha256::digest(&bytes))[..12]
        );
        Ok(LocalModel {
            spec,
            model,
            version,
        })
    }

    /// Scores a transaction from scratch (features computed with this model's own spec, which
    /// reads no card history: checked when the fallback is set up).
    fn score_tx(&self, tx_json: &str, values: &mut Vec<f64>) -> Result<f64> {
        let tx: Transaction =
            serde_json::from_str(tx_json).context("scored record holds an invalid transaction")?;
        let derived = Derived::of(&tx, self.spec.time_zone);
        self.spec.compute(&tx, &derived, None, values);
        let row: Vec<Option<f64>> = values.iter().map(|v| Some(*v)).collect();
        Ok(self.model.predict(&row))
    }
}

struct Output {
    writer: StageWriter,
    threshold: f64,
    frauds: u64,
    fallback: u64,
    line: Vec<u8>,
}

impl<'a> Score<&'a str> {
    fn new(probability: f64, threshold: f64, version: &'a str, scorer: &'a str) -> Self {
        Score {
            probability,
            predicted_fraud: probability >= threshold,
            threshold,
            model_version: version,
            scorer,
            needs_rescore: scorer == "local-fallback",
        }
    }
}

/// Appends one `scored.jsonl` line.
fn push_scored(line: &mut Vec<u8>, tx: &RawValue, derived: &RawValue, score: &Score<&str>) {
    serde_json::to_writer(&mut *line, &ScoredOut { tx, derived, score })
        .expect("a scored record serialises");
    line.push(b'\n');
}

impl Output {
    fn write(
        &mut self,
        tx: &RawValue,
        derived: &RawValue,
        probability: f64,
        version: &str,
        scorer: &str,
    ) -> Result<()> {
        let score = Score::new(probability, self.threshold, version, scorer);
        self.frauds += u64::from(score.predicted_fraud);
        self.fallback += u64::from(score.needs_rescore);
        self.line.clear();
        push_scored(&mut self.line, tx, derived, &score);
        self.writer.write_lines(&self.line, 1)
    }
}

pub fn run(args: &ScoreArgs) -> Result<ScoreSummary> {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(Failure::Config(format!(
            "--threshold / FRAUDCTL_THRESHOLD {} is not between 0 and 1",
            args.threshold
        ))
        .into());
    }
    let dir = RunDir::open(&args.run)?;
    require_input(&dir.features(), "transform")?;
    let mut input = StageReader::<serde_json::Value>::open(&dir.features(), FEATURES_SCHEMA)?;
    log_started("score", input.header().records());
    let spec_meta = input.header().meta["feature_spec"].clone();
    let local = match (args.scorer, args.fallback) {
        (Scorer::Sagemaker, Fallback::None) => None,
        _ => Some(LocalModel::load(&args.model_dir)?),
    };
    let meta = serde_json::json!({ "scorer": format!("{:?}", args.scorer).to_lowercase(), "threshold": args.threshold, "feature_spec": spec_meta });
    let writer = StageWriter::create(
        &dir.scored(),
        Header::new(SCORED_SCHEMA, &dir.run_id, "score", meta),
    )?;
    let mut out = Output {
        writer,
        threshold: args.threshold,
        frauds: 0,
        fallback: 0,
        line: Vec::with_capacity(1024),
    };

    let (scorer, model_version) = match args.scorer {
        Scorer::Local => {
            let local = local.as_ref().expect("loaded for the local scorer");
            if spec_meta["sha256"].as_str() != Some(local.spec.sha256.as_str()) {
                return Err(Failure::BadInput(format!(
                    "{} was computed with feature spec {} but the model in {} expects {}: re-run `fraudctl transform --feature-spec {}`",
                    dir.features().display(),
                    spec_meta["name"],
                    args.model_dir.display(),
                    local.spec.name,
                    args.model_dir.join("feature_spec.json").display()
                ))
                .into());
            }
            score_local(&mut input, local, &mut out)?;
            ("local", local.version.clone())
        }
        Scorer::Sagemaker => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let version = runtime.block_on(score_sagemaker(
                &mut input,
                &args.sagemaker,
                local.as_ref(),
                &mut out,
            ))?;
            ("sagemaker", version)
        }
    };
    let (frauds, fallback) = (out.frauds, out.fallback);
    let header = out.writer.finish(BTreeMap::from([
        ("predicted_frauds".to_string(), frauds),
        ("fallback".to_string(), fallback),
    ]))?;
    if fallback > 0 {
        tracing::warn!(
            fallback,
            "rows scored by the local fallback are marked needs_rescore"
        );
    }
    Ok(ScoreSummary {
        stage: "score",
        run_id: dir.run_id,
        records: header.records(),
        predicted_frauds: frauds,
        scorer,
        model_version,
        fallback_records: fallback,
    })
}

/// Parses a `features.jsonl` line, its features into `values`, naming its record number when
/// it is not one.
fn feature_record<'a>(
    record: u64,
    line: &'a str,
    values: &mut Vec<Option<f64>>,
) -> Result<FeatureRecord<'a>> {
    let bad = |e: String| Failure::BadInput(format!("features record {record}: {e}"));
    let parsed: FeatureRecord = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    parsed.values(values).map_err(bad)?;
    Ok(parsed)
}

fn score_local(
    input: &mut StageReader<serde_json::Value>,
    local: &LocalModel,
    out: &mut Output,
) -> Result<()> {
    let threshold = out.threshold;
    parallel::map_chunks(
        input,
        || (Vec::new(), Vec::new(), Vec::new()),
        |(rows, probabilities, values), chunk| {
            let mut records = Vec::with_capacity(chunk.len());
            rows.clear();
            for (no, line) in chunk.lines() {
                let record = feature_record(no, line, values)?;
                if values.len() != local.model.num_features {
                    return Err(Failure::BadInput(format!(
                        "features record {no} has {} values, the model takes {}",
                        values.len(),
                        local.model.num_features
                    ))
                    .into());
                }
                XgbModel::push_row(rows, values);
                records.push(record);
            }
            local.model.predict_rows(rows, probabilities);
            let mut lines = Vec::with_capacity(chunk.len() * 1024);
            let mut frauds = 0u64;
            for (record, p) in records.iter().zip(probabilities.iter()) {
                let score = Score::new(*p, threshold, &local.version, "local");
                frauds += u64::from(score.predicted_fraud);
                push_scored(&mut lines, record.tx, record.derived, &score);
            }
            Ok((lines, chunk.len() as u64, frauds))
        },
        |(lines, records, frauds)| {
            out.frauds += frauds;
            out.writer.write_lines(&lines, records)
        },
    )
}

/// A row of a SageMaker batch: its transaction and derived values, and its features when the
/// local fallback can use them as they are (computed with its own spec).
struct BatchRow {
    tx: Box<RawValue>,
    derived: Box<RawValue>,
    features: Option<Vec<Option<f64>>>,
}

/// Rows of one SageMaker batch, kept to write them once their scores arrive.
struct Batch {
    rows: Vec<BatchRow>,
}

/// What the local fallback scores from: the records' own features when they were computed with
/// its spec, else features it recomputes from the transaction with its spec, which it can only
/// do when that spec reads no card history (the history is `transform`'s to read).
fn fallback_reuses_features(local: &LocalModel, features_sha256: Option<&str>) -> Result<bool> {
    if features_sha256 == Some(local.spec.sha256.as_str()) {
        return Ok(true);
    }
    if local.spec.has_history() {
        return Err(Failure::Config(format!(
            "the local fallback model ({}) reads card history, but features.jsonl was computed with another feature spec: run `fraudctl transform` with the fallback model's spec, or set --fallback none",
            local.spec.name
        ))
        .into());
    }
    Ok(false)
}

async fn score_sagemaker(
    input: &mut StageReader<serde_json::Value>,
    args: &SageMakerArgs,
    fallback: Option<&LocalModel>,
    out: &mut Output,
) -> Result<String> {
    let endpoint = sagemaker::Endpoint::connect(args).await?;
    let mut in_flight = sagemaker::InFlight::new(args.sagemaker_concurrency as usize);
    let max_bytes = args.sagemaker_max_payload_bytes as usize;
    let mut payload = Vec::new();
    let mut batch = Batch { rows: Vec::new() };
    let mut row = Vec::new();
    let mut version = format!("sagemaker:{}", endpoint.name);
    let reuse = match fallback {
        Some(local) => fallback_reuses_features(
            local,
            input.header().meta["feature_spec"]["sha256"].as_str(),
        )?,
        None => false,
    };
    let mut values = Vec::new();
    let mut features = Vec::new();
    let mut records = 0u64;
    loop {
        let record = match input.next_line()? {
            Some(line) => {
                records += 1;
                let r = feature_record(records, line, &mut features)?;
                row.clear();
                sagemaker::csv_row(&features, &mut row);
                if row.len() > max_bytes {
                    return Err(Failure::BadInput(format!(
                        "one feature row is {} bytes, over the {max_bytes}-byte payload limit",
                        row.len()
                    ))
                    .into());
                }
                Some(BatchRow {
                    tx: r.tx.to_owned(),
                    derived: r.derived.to_owned(),
                    features: reuse.then(|| features.clone()),
                })
            }
            None => None,
        };
        let full = !batch.rows.is_empty()
            && (record.is_none()
                || batch.rows.len() >= args.sagemaker_max_rows as usize
                || payload.len() + row.len() > max_bytes);
        if full {
            let task = tokio::spawn(sagemaker::Endpoint::invoke(
                endpoint.client(),
                endpoint.name.clone(),
                std::mem::take(&mut payload),
                batch.rows.len(),
            ));
            in_flight.push(
                task,
                std::mem::replace(&mut batch, Batch { rows: Vec::new() }),
            );
        }
        while in_flight.is_full() || (record.is_none() && batch.rows.is_empty()) {
            let Some((result, done)) = in_flight.next().await else {
                break;
            };
            write_batch(
                result,
                done,
                &endpoint,
                fallback,
                out,
                &mut version,
                &mut values,
            )?;
        }
        match record {
            Some(rows) => {
                payload.extend_from_slice(&row);
                batch.rows.push(rows);
            }
            None => break,
        }
    }
    Ok(version)
}

fn write_batch(
    result: sagemaker::BatchResult,
    batch: Batch,
    endpoint: &sagemaker::Endpoint,
    fallback: Option<&LocalModel>,
    out: &mut Output,
    version: &mut String,
    values: &mut Vec<f64>,
) -> Result<()> {
    match result {
        Ok((scores, variant)) => {
            *version = format!("sagemaker:{}/{variant}", endpoint.name);
            for (r, p) in batch.rows.iter().zip(scores) {
                out.write(&r.tx, &r.derived, p, version, "sagemaker")?;
            }
        }
        Err(sagemaker::InvokeError::Unavailable(msg)) => match fallback {
            Some(local) => {
                tracing::warn!(endpoint = endpoint.target(), rows = batch.rows.len(), error = %msg, "SageMaker unavailable, scoring the batch with the local model (marked needs_rescore)");
                for r in &batch.rows {
                    let p = match &r.features {
                        Some(features) => local.model.predict(features),
                        None => local.score_tx(r.tx.get(), values)?,
                    };
                    out.write(&r.tx, &r.derived, p, &local.version, "local-fallback")?;
                }
            }
            None => {
                return Err(Failure::Unavailable { service: "SageMaker endpoint", target: endpoint.target().to_string(), detail: msg }.into())
            }
        },
        Err(sagemaker::InvokeError::Refused(msg)) => {
            return Err(Failure::Config(format!(
                "SageMaker endpoint {} refused the request: {msg}; check --sagemaker-endpoint / FRAUDCTL_SAGEMAKER_ENDPOINT and that it serves the model for this feature spec",
                endpoint.target()
            ))
            .into())
        }
    }
    Ok(())
}
