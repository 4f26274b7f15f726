//! `fraudctl score`: features → fraud probability, predicted label, model version and scorer.
//!
//! Scorers: `local` (default; the XGBoost model in --model-dir, evaluated in-process) and
//! `sagemaker` (an endpoint). When the endpoint is unavailable after its retries, the fallback
//! (`--fallback local`, the default) scores the batch with the local model on features computed
//! from the transaction with the local model's own spec, and marks the rows `needs_rescore`;
//! `--fallback none` fails the task instead (exit 3) so Airflow retries it.
//!
//! `local.rs` is the local path (the model, scoring on every core), `remote.rs` the SageMaker
//! path's batching and fallback, `sagemaker.rs` the endpoint's client; what every path writes
//! (a [`Score`], marked by [`ScoredBy`]) is here.

mod challenger;
mod local;
mod remote;
mod rules;
mod sagemaker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use challenger::ChallengerScore;
pub use sagemaker::SageMakerArgs;

use crate::challenger::ChallengerArgs;
use crate::error::Failure;
use crate::model::{self, LocalModel, Reason};
use crate::rundir::{log_started, require_input, RunArgs, RunDir};
use crate::stagefile::{Header, StageReader, StageWriter};
use crate::transaction::Transaction;
use crate::transform::{Derived, FeatureRecord, FEATURES_SCHEMA};

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

/// Who computed a probability: the `scorer` of a scored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoredBy {
    /// The local model, as configured.
    Local,
    /// The SageMaker endpoint.
    Sagemaker,
    /// The local model standing in for an endpoint that was unavailable.
    LocalFallback,
}

impl ScoredBy {
    pub fn name(self) -> &'static str {
        match self {
            ScoredBy::Local => "local",
            ScoredBy::Sagemaker => "sagemaker",
            ScoredBy::LocalFallback => "local-fallback",
        }
    }

    /// Whether the row must be scored again (by the endpoint, once it answers).
    pub fn needs_rescore(self) -> bool {
        self == ScoredBy::LocalFallback
    }
}

impl Scorer {
    /// What the rows this scorer computes are marked with.
    fn scored_by(self) -> ScoredBy {
        match self {
            Scorer::Local => ScoredBy::Local,
            Scorer::Sagemaker => ScoredBy::Sagemaker,
        }
    }
}

/// Options of `fraudctl score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub options: ScoreOptions,
    /// fraud_db, read only for the lists of --rules.
    #[command(flatten)]
    pub db: crate::db::DbArgs,
}

impl std::ops::Deref for ScoreArgs {
    type Target = ScoreOptions;
    fn deref(&self) -> &ScoreOptions {
        &self.options
    }
}

/// How payments are scored: `score`'s settings but its run directory (`fraudctl live` has them
/// too).
#[derive(Debug, Clone, Args)]
pub struct ScoreOptions {
    /// Which scorer computes the probabilities.
    #[arg(long, env = "FRAUDCTL_SCORER", value_enum, default_value_t = Scorer::Local)]
    pub scorer: Scorer,

    /// Directory of the local model: model.json (XGBoost JSON) and feature_spec.json.
    #[arg(long, env = "FRAUDCTL_MODEL_DIR", default_value = "model/default")]
    pub model_dir: PathBuf,

    /// Probability from which a payment is predicted fraudulent [default: the model's own,
    /// threshold.json in --model-dir, written by model/train.py; 0.5 for a model without one].
    #[arg(long, env = "FRAUDCTL_THRESHOLD")]
    pub threshold: Option<f64>,

    /// What to do when the SageMaker endpoint is unavailable.
    #[arg(long, env = "FRAUDCTL_FALLBACK", value_enum, default_value_t = Fallback::Local)]
    pub fallback: Fallback,

    /// Rules evaluated on every payment after the model (docs/rules.md): a TOML file of rules
    /// whose conditions are CEL expressions. The lists they name are read from fraud_db
    /// (--database-url) when the stage starts.
    #[arg(long = "rules", env = "FRAUDCTL_RULES_FILE", value_name = "FILE")]
    pub rules_file: Option<PathBuf>,

    #[command(flatten)]
    pub challenger: ChallengerArgs,

    #[command(flatten)]
    pub sagemaker: SageMakerArgs,
}

/// The `score` object of a scored record: read with owned strings and the reasons as JSON text
/// (`Score`, what `load` stores), written with borrowed ones (`Score<&str, …>`, no allocation a
/// record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Score<S = String, R = Box<RawValue>> {
    pub probability: f64,
    pub predicted_fraud: bool,
    pub threshold: f64,
    pub model_version: S,
    pub scorer: S,
    pub needs_rescore: bool,
    /// Why it fired: a predicted fraud's top reasons (docs/stage-files.md), `null` when they
    /// could not be made (then `reasons_unavailable` says why); absent for the other payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons_unavailable: Option<S>,
    /// With --rules: what decided (absent without rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionOut<S>>,
    /// With a challenger in shadow: its score (absent without one). Never decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger: Option<ChallengerScore<S>>,
}

/// What decided a payment when rules were in force (docs/rules.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionOut<S = String> {
    /// The rule set's version (`<file stem>@<hash>`).
    pub rule_set: S,
    /// alert, allow, review or none.
    pub action: S,
    /// The deciding rule; absent when the model decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<S>,
    /// Every rule that matched, in the file's order.
    #[serde(default)]
    pub matched: Vec<S>,
}

/// What a predicted fraud's scored record says of why it fired.
#[derive(Debug)]
pub enum Why {
    /// Its top reasons, from the model that scored it (or the same model's local copy).
    Reasons(Vec<Reason>),
    /// Why there are none: `"reasons": null` and this in `reasons_unavailable`.
    Unavailable(String),
}

/// The `score` object as `score` writes it: the reasons a list, or `null` (`Some(None)`).
type ScoreOut<'a> = Score<&'a str, Option<&'a [Reason]>>;

#[derive(Serialize)]
struct ScoredOut<'a> {
    tx: &'a RawValue,
    derived: &'a RawValue,
    /// The model's inputs, as the model that scored the payment read them.
    features: &'a RawValue,
    score: &'a ScoreOut<'a>,
}

/// What a scored record is written from: the features record's transaction and derived values,
/// and the inputs the scoring model read (the record's features, or the fallback's own).
pub(super) struct Scored<'a> {
    pub tx: &'a RawValue,
    pub derived: &'a RawValue,
    pub features: &'a RawValue,
}

/// A record of `scored.jsonl`, as read by `load` (its transaction checked as it is read; its
/// score by [`ScoredRecord::check`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoredRecord {
    pub tx: Transaction,
    pub derived: Derived,
    /// Absent from files scored before the model's inputs were kept.
    #[serde(default)]
    pub features: Option<Vec<Option<f64>>>,
    pub score: Score,
}

impl ScoredRecord {
    /// What decided it, when rules were in force.
    pub fn decision(&self) -> Option<&DecisionOut> {
        self.score.decision.as_ref()
    }

    /// The challenger's score, when one ran in shadow.
    pub fn challenger(&self) -> Option<&ChallengerScore> {
        self.score.challenger.as_ref()
    }

    /// What `load` relies on beyond the transaction: a probability and a threshold between 0
    /// and 1, the model's and the scorer's names as text, reasons PostgreSQL can store.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.score;
        for (name, value) in [("probability", s.probability), ("threshold", s.threshold)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("score.{name} {value} is not between 0 and 1"));
            }
        }
        for (name, value) in [
            ("age_years", self.derived.age_years),
            ("distance_km", self.derived.distance_km),
        ] {
            if !value.is_finite() {
                return Err(format!("derived.{name} is not a finite number"));
            }
        }
        crate::transaction::check_text("score.model_version", &s.model_version)?;
        if let Some(c) = &s.challenger {
            for (name, value) in [("probability", c.probability), ("threshold", c.threshold)] {
                if !(0.0..=1.0).contains(&value) {
                    return Err(format!(
                        "score.challenger.{name} {value} is not between 0 and 1"
                    ));
                }
            }
            crate::transaction::check_text("score.challenger.model_version", &c.model_version)?;
        }
        crate::transaction::check_text("score.scorer", &s.scorer)?;
        if let Some(d) = &s.decision {
            if !["alert", "allow", "review", "none"].contains(&d.action.as_str()) {
                return Err(format!(
                    "score.decision.action {:?} is not alert, allow, review or none",
                    d.action
                ));
            }
            std::iter::once(&d.rule_set)
                .chain(&d.rule)
                .chain(&d.matched)
                .try_for_each(|text| crate::transaction::check_text("score.decision", text))?;
        }
        // jsonb holds no NUL character (a `\u0000` escape).
        if s.reasons
            .as_ref()
            .is_some_and(|r| r.get().contains("\\u0000"))
        {
            return Err("score.reasons holds a NUL character (\\u0000)".into());
        }
        Ok(())
    }
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

struct Output {
    writer: StageWriter,
    threshold: f64,
    frauds: u64,
    fallback: u64,
    line: Vec<u8>,
}

impl<'a> ScoreOut<'a> {
    fn new(probability: f64, threshold: f64, version: &'a str, by: ScoredBy) -> Self {
        Score {
            probability,
            predicted_fraud: probability >= threshold,
            threshold,
            model_version: version,
            scorer: by.name(),
            needs_rescore: by.needs_rescore(),
            reasons: None,
            reasons_unavailable: None,
            decision: None,
            challenger: None,
        }
    }

    /// The score with why it fired (`None`: not a predicted fraud, nothing said).
    fn with_why(self, why: Option<&'a Why>) -> Self {
        match why {
            None => self,
            Some(Why::Reasons(reasons)) => Score {
                reasons: Some(Some(reasons)),
                ..self
            },
            Some(Why::Unavailable(because)) => Score {
                reasons: Some(None),
                reasons_unavailable: Some(because),
                ..self
            },
        }
    }
}

/// Appends one `scored.jsonl` line.
fn push_scored(line: &mut Vec<u8>, record: &Scored, score: &ScoreOut) {
    let Scored {
        tx,
        derived,
        features,
    } = *record;
    let out = ScoredOut {
        tx,
        derived,
        features,
        score,
    };
    serde_json::to_writer(&mut *line, &out).expect("a scored record serialises");
    line.push(b'\n');
}

impl Output {
    /// Whether a probability is a predicted fraud (which gets its reasons).
    fn is_fraud(&self, probability: f64) -> bool {
        probability >= self.threshold
    }

    /// Writes a scored record; `decided`, with rules, their decision on it; `challenger`, with
    /// a challenger in shadow, its score.
    fn write(
        &mut self,
        record: &Scored,
        probability: f64,
        (version, by): (&str, ScoredBy),
        why: Option<Why>,
        decided: Option<(&rules::Rules, &crate::rules::Decision)>,
        challenger: Option<ChallengerScore<&str>>,
    ) -> Result<()> {
        let mut score = Score::new(probability, self.threshold, version, by);
        score.challenger = challenger;
        let mut why = why;
        if let Some((rules, d)) = decided {
            score = rules.apply(score, d);
            why = rules.reasons(d, why).filter(|_| score.predicted_fraud);
        }
        let score = score.with_why(why.as_ref());
        self.frauds += u64::from(score.predicted_fraud);
        self.fallback += u64::from(score.needs_rescore);
        self.line.clear();
        push_scored(&mut self.line, record, &score);
        self.writer.write_lines(&self.line, 1)
    }
}

pub fn run(args: &ScoreArgs) -> Result<ScoreSummary> {
    let setting = || crate::setting::name::<ScoreArgs>("threshold");
    let threshold = model::threshold(args.threshold, setting, &args.model_dir)?;
    let dir = RunDir::open(&args.run, "score")?;
    require_input(&dir.features(), "transform")?;
    let mut input = StageReader::<serde_json::Value>::open(&dir.features(), FEATURES_SCHEMA)?;
    log_started("score", input.header().records());
    let spec_meta = input.header().meta["feature_spec"].clone();
    let local = match (args.scorer, args.fallback) {
        (Scorer::Sagemaker, Fallback::None) => None,
        _ => Some(LocalModel::shared(&args.model_dir)?),
    };
    let scorer = args.scorer.scored_by().name();
    let meta =
        serde_json::json!({ "scorer": scorer, "threshold": threshold, "feature_spec": spec_meta });
    let writer = StageWriter::create(
        &dir.scored(),
        Header::new(SCORED_SCHEMA, &dir.run_id, "score", meta),
    )?;
    let mut out = Output {
        writer,
        threshold,
        frauds: 0,
        fallback: 0,
        line: Vec::with_capacity(1024),
    };

    let columns: Vec<String> = spec_meta["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let rules = rules::Rules::load(args.rules_file.as_deref(), &columns, &args.db)?;
    let challenger =
        challenger::Challenger::load(&args.challenger, &input.header().meta, &dir.features())?;
    let model_version = match args.scorer {
        Scorer::Local => {
            let local = local.as_ref().expect("loaded for the local scorer");
            same_spec(&dir.features(), &spec_meta, local, &args.model_dir)?;
            let with = local::With {
                rules: rules.as_ref(),
                challenger: challenger.as_ref(),
            };
            local::score_local(input.blocks(), local, with, &mut out)?;
            local.version.clone()
        }
        Scorer::Sagemaker => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(remote::score_sagemaker(
                &mut input,
                &args.sagemaker,
                local.as_deref(),
                local::With {
                    rules: rules.as_ref(),
                    challenger: challenger.as_ref(),
                },
                &mut out,
            ))?
        }
    };
    out.finish(dir.run_id, scorer, model_version)
}

impl Output {
    /// Makes `scored.jsonl` durable with its counts; the stage's summary.
    fn finish(
        self,
        run_id: String,
        scorer: &'static str,
        model_version: String,
    ) -> Result<ScoreSummary> {
        let (frauds, fallback) = (self.frauds, self.fallback);
        let header = self.writer.finish(BTreeMap::from([
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
            run_id,
            records: header.records(),
            predicted_frauds: frauds,
            scorer,
            model_version,
            fallback_records: fallback,
        })
    }
}

/// Refuses features (`features`, its header's `meta.feature_spec` in `spec_meta`) computed with
/// another spec than the local model's (from `model_dir`).
pub(crate) fn same_spec(
    features: &Path,
    spec_meta: &serde_json::Value,
    local: &LocalModel,
    model_dir: &Path,
) -> Result<()> {
    if spec_meta["sha256"].as_str() == Some(local.spec.sha256.as_str()) {
        return Ok(());
    }
    Err(Failure::BadInput(format!(
        "{} was computed with feature spec {} but the model in {} expects {}: re-run `fraudctl transform --feature-spec {}`",
        features.display(),
        spec_meta["name"],
        model_dir.display(),
        local.spec.name,
        model_dir.join("feature_spec.json").display()
    ))
    .into())
}

/// Parses a `features.jsonl` line, its features into `values`, naming its record number when
/// it is not one.
pub(crate) fn feature_record<'a>(
    record: u64,
    line: &'a str,
    values: &mut Vec<Option<f64>>,
) -> Result<FeatureRecord<'a>> {
    let bad = |e: String| Failure::BadInput(format!("features record {record}: {e}"));
    let parsed: FeatureRecord = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    parsed.values(values).map_err(bad)?;
    Ok(parsed)
}
