//! The `local` scorer: the XGBoost model of --model-dir (its `model.json` and the
//! `feature_spec.json` it was trained with), evaluated in-process on every core; and the
//! directory's `threshold.json`, the probability from which its payments are predicted frauds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::challenger::Challenger;
use super::reasons::{Explainer, Reason};
use super::rules::Rules;
use super::xgboost::sigmoid;
use super::{
    feature_record, push_scored, Output, Score, ScoreOut, Scored, ScoredBy, Why, XgbModel,
};
use crate::error::Failure;
use crate::parallel::{self, Chunk};
use crate::rules::Decision;
use crate::stagefile::StageReader;
use crate::transaction::Transaction;
use crate::transform::FeatureRecord;
use crate::transform::{Derived, FeatureSpec};

/// The local model: spec + XGBoost trees + a version derived from the model file's content,
/// and the words of its columns.
pub struct LocalModel {
    pub spec: FeatureSpec,
    pub model: XgbModel,
    pub version: String,
    pub explainer: Explainer,
}

/// Why one payment scored as it did (what `fraudctl explain` prints).
#[derive(Debug)]
pub struct Explanation {
    /// The margin (log-odds) as the model sums it (f32, like XGBoost's `output_margin=True`).
    pub margin: f32,
    pub probability: f64,
    /// One per feature, in the model's order, then the bias: they sum to the margin.
    pub contributions: Vec<f64>,
    pub reasons: Vec<Reason>,
}

/// `threshold.json` of a model directory: `{"threshold": p, ...}` (model/train.py writes how it
/// was chosen beside it); None when the directory has none.
pub fn model_threshold(dir: &Path) -> Result<Option<f64>> {
    #[derive(serde::Deserialize)]
    struct Threshold {
        threshold: f64,
    }
    let path = dir.join("threshold.json");
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        read => read.with_context(|| format!("cannot read {}", path.display()))?,
    };
    match serde_json::from_slice::<Threshold>(&bytes) {
        Ok(Threshold { threshold }) if (0.0..=1.0).contains(&threshold) => Ok(Some(threshold)),
        Ok(Threshold { threshold }) => Err(Failure::BadInput(format!(
            "{}: threshold {threshold} is not between 0 and 1",
            path.display()
        ))
        .into()),
        Err(e) => Err(Failure::BadInput(format!("{}: {e}", path.display())).into()),
    }
}

/// A model directory's files, as read.
#[derive(PartialEq, Eq)]
struct ModelFiles {
    model: Vec<u8>,
    spec: Vec<u8>,
}

impl ModelFiles {
    fn read(dir: &Path) -> Result<Self> {
        let read = |name: &str, what: &str| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| format!("cannot read {what} {}", path.display()))
        };
        Ok(ModelFiles {
            model: read("model.json", "model")?,
            spec: read("feature_spec.json", "feature spec")?,
        })
    }
}

impl LocalModel {
    /// A features record's values must be as many as the model takes (`record` names it, only
    /// when they are not: no message is made for the records that fit).
    pub fn check_width(
        &self,
        values: &[Option<f64>],
        record: impl FnOnce() -> String,
    ) -> Result<()> {
        if values.len() == self.model.num_features {
            return Ok(());
        }
        Err(Failure::BadInput(format!(
            "{} has {} values, the model takes {}",
            record(),
            values.len(),
            self.model.num_features
        ))
        .into())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let files = ModelFiles::read(dir)?;
        Self::of(dir, &files)
    }

    /// The model of `dir`, as [`LocalModel::load`], but parsed once a process while its files
    /// stay the same (a model replaced on disk is loaded anew): a long-running process
    /// (`fraudctl live`, a micro-batch every few milliseconds) neither parses it nor builds its
    /// region tables again for each batch.
    pub fn shared(dir: &Path) -> Result<Arc<Self>> {
        static LOADED: Mutex<Option<(ModelFiles, Arc<LocalModel>)>> = Mutex::new(None);
        let files = ModelFiles::read(dir)?;
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, model)) = loaded.as_ref().filter(|(f, _)| *f == files) {
            return Ok(Arc::clone(model));
        }
        let model = Arc::new(Self::of(dir, &files)?);
        *loaded = Some((files, Arc::clone(&model)));
        Ok(model)
    }

    fn of(dir: &Path, files: &ModelFiles) -> Result<Self> {
        let (model_path, bytes) = (dir.join("model.json"), &files.model);
        let model = XgbModel::parse(bytes)
            .map_err(|e| Failure::BadInput(format!("model {}: {e}", model_path.display())))?;
        let spec_path = dir.join("feature_spec.json");
        let spec = FeatureSpec::parse(&files.spec)
            .map_err(|e| Failure::BadInput(format!("feature spec {}: {e}", spec_path.display())))?;
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
            &hex::encode(Sha256::digest(bytes))[..12]
        );
        Ok(LocalModel {
            explainer: Explainer::new(&spec),
            spec,
            model,
            version,
        })
    }

    /// The margin, probability, contributions and reasons of one feature row of `tx`.
    pub fn explain(&self, tx: &Transaction, values: &[Option<f64>]) -> Explanation {
        let margin = self.model.margin(values);
        let contributions = self.model.contributions(values);
        let reasons = self.explainer.reasons(tx, values, &contributions);
        Explanation {
            margin,
            probability: sigmoid(margin),
            contributions,
            reasons,
        }
    }

    /// The reasons of a predicted fraud, from its transaction (a stage file's JSON) and features.
    pub(super) fn reasons(&self, tx_json: &str, values: &[Option<f64>]) -> Result<Vec<Reason>> {
        self.reasons_with(tx_json, values, &self.model.contributions(values))
    }

    /// The same from its contributions, computed already.
    fn reasons_with(
        &self,
        tx_json: &str,
        values: &[Option<f64>],
        contributions: &[f64],
    ) -> Result<Vec<Reason>> {
        let tx: Transaction =
            serde_json::from_str(tx_json).context("scored record holds an invalid transaction")?;
        Ok(self.explainer.reasons(&tx, values, contributions))
    }

    /// A transaction's features computed from scratch with this model's own spec (which reads
    /// no card history: checked when the fallback is set up).
    pub(super) fn features_of_tx(
        &self,
        tx_json: &str,
        values: &mut Vec<f64>,
    ) -> Result<Vec<Option<f64>>> {
        let tx: Transaction =
            serde_json::from_str(tx_json).context("scored record holds an invalid transaction")?;
        let derived = Derived::of(&tx, &self.spec.time_zone);
        self.spec.compute(&tx, &derived, None, values);
        Ok(values.iter().map(|v| Some(*v)).collect())
    }
}

/// What is applied beside the model: the rules, a challenger in shadow.
#[derive(Clone, Copy)]
pub(super) struct With<'a> {
    pub rules: Option<&'a Rules>,
    pub challenger: Option<&'a Challenger>,
}

/// What a chunk's scoring reuses from one chunk to the next.
#[derive(Default)]
struct Buffers {
    /// The model's rows, its probabilities, one record's features.
    rows: Vec<f32>,
    probabilities: Vec<f64>,
    values: Vec<Option<f64>>,
    /// Every record's features one after the other (what the rules read).
    kept: Vec<Option<f64>>,
    /// The same three for the challenger.
    challenger_rows: Vec<f32>,
    challenger_probabilities: Vec<f64>,
    challenger_values: Vec<Option<f64>>,
}

pub(super) fn score_local(
    input: &mut StageReader<serde_json::Value>,
    local: &LocalModel,
    with: With,
    out: &mut Output,
) -> Result<()> {
    let threshold = out.threshold;
    parallel::map_chunks(
        "score",
        input,
        Buffers::default,
        |b, chunk| score_chunk(local, with, threshold, b, chunk),
        |(lines, records, frauds)| {
            out.frauds += frauds;
            out.writer.write_lines(&lines, records)
        },
    )
}

/// A chunk's scored records (`scored.jsonl` lines), with how many records and predicted frauds.
fn score_chunk(
    local: &LocalModel,
    with: With,
    threshold: f64,
    b: &mut Buffers,
    chunk: &Chunk,
) -> Result<(Vec<u8>, u64, u64)> {
    let records = read_chunk(local, with, b, chunk)?;
    local.model.predict_rows(&b.rows, &mut b.probabilities);
    let mut scores: Vec<_> = b
        .probabilities
        .iter()
        .map(|p| Score::new(*p, threshold, &local.version, ScoredBy::Local))
        .collect();
    if let Some(c) = with.challenger {
        c.model
            .model
            .predict_rows(&b.challenger_rows, &mut b.challenger_probabilities);
        for (score, p) in scores.iter_mut().zip(&b.challenger_probabilities) {
            score.challenger = Some(c.score(*p));
        }
    }
    let decisions = match with.rules {
        Some(rules) => decide_all(rules, &records, &mut scores, &b.kept)?,
        None => vec![None; records.len()],
    };
    // Only the (few) alerts pay for their reasons, all of the chunk's at once.
    let frauds: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].predicted_fraud)
        .collect();
    let contributions = local.model.contributions_of(&b.rows, &frauds);
    let mut of_fraud = contributions.chunks(local.model.num_features + 1);
    let mut lines = Vec::with_capacity(chunk.len() * 1024);
    for (((_, record), score), decision) in records.iter().zip(scores).zip(&decisions) {
        let mut why = match score.predicted_fraud {
            true => {
                record.values(&mut b.values).map_err(Failure::BadInput)?;
                let phi = of_fraud.next().expect("one row of contributions a fraud");
                let tx = record.tx.get();
                Some(Why::Reasons(local.reasons_with(tx, &b.values, phi)?))
            }
            false => None,
        };
        if let (Some(rules), Some(d)) = (with.rules, decision) {
            why = rules.reasons(d, why);
        }
        let scored = Scored {
            tx: record.tx,
            derived: record.derived,
            features: record.features,
        };
        push_scored(&mut lines, &scored, &score.with_why(why.as_ref()));
    }
    Ok((lines, chunk.len() as u64, frauds.len() as u64))
}

/// A chunk's records, their model rows (and the challenger's, and the values the rules read)
/// into `b`.
fn read_chunk<'c>(
    local: &LocalModel,
    with: With,
    b: &mut Buffers,
    chunk: &'c Chunk,
) -> Result<Vec<(u64, FeatureRecord<'c>)>> {
    let mut records = Vec::with_capacity(chunk.len());
    b.rows.clear();
    b.kept.clear();
    b.challenger_rows.clear();
    for (no, line) in chunk.lines() {
        let record = feature_record(no, line, &mut b.values)?;
        local.check_width(&b.values, || format!("features record {no}"))?;
        XgbModel::push_row(&mut b.rows, &b.values);
        if with.rules.is_some() {
            b.kept.extend_from_slice(&b.values); // what the rules read, parsed once
        }
        if let Some(c) = with.challenger {
            c.values((no, &record), &b.values, &mut b.challenger_values)?;
            XgbModel::push_row(&mut b.challenger_rows, &b.challenger_values);
        }
        records.push((no, record));
    }
    Ok(records)
}

/// The rules' decision on each record of a chunk, applied to its score; `values` holds the
/// records' features one after the other.
fn decide_all<'a>(
    rules: &'a Rules,
    records: &[(u64, FeatureRecord)],
    scores: &mut [ScoreOut<'a>],
    values: &[Option<f64>],
) -> Result<Vec<Option<Decision>>> {
    let mut decisions = Vec::with_capacity(records.len());
    let width = values.len() / records.len().max(1);
    let rows = values.chunks(width.max(1));
    for (((no, record), score), values) in records.iter().zip(scores.iter_mut()).zip(rows) {
        let d = rules
            .decide(record.tx, values, score.probability, score.threshold)
            .map_err(|e| Failure::BadInput(format!("features record {no}: {e}")))?;
        *score = rules.apply(score.clone(), &d);
        decisions.push(Some(d));
    }
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold_of(file: Option<&str>) -> Result<Option<f64>> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join("threshold.json"), text).unwrap();
        }
        model_threshold(dir.path())
    }

    #[test]
    fn a_model_directory_gives_its_threshold_or_none() {
        assert_eq!(threshold_of(None).unwrap(), None);
        let written = r#"{"schema": "fraudctl.threshold", "threshold": 0.8, "rule": "F2"}"#;
        assert_eq!(threshold_of(Some(written)).unwrap(), Some(0.8));
        assert_eq!(
            threshold_of(Some(r#"{"threshold": 1}"#)).unwrap(),
            Some(1.0)
        );
    }

    #[test]
    fn a_bad_threshold_file_is_bad_input_naming_it() {
        for (text, says) in [
            (
                r#"{"threshold": 1.5}"#,
                "threshold 1.5 is not between 0 and 1",
            ),
            (
                r#"{"threshold": -0.1}"#,
                "threshold -0.1 is not between 0 and 1",
            ),
            (r#"{"threshold": "0.8"}"#, "invalid type"),
            (r#"{"rule": "F2"}"#, "missing field `threshold`"),
            ("0.8", "invalid type"),
        ] {
            let e = threshold_of(Some(text)).unwrap_err();
            let message = format!("{e:#}");
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::BadInput(_))),
                "{text}: {message}"
            );
            assert!(
                message.contains("threshold.json") && message.contains(says),
                "{text}: {message}"
            );
        }
    }
}
