//! A model directory (--model-dir): its XGBoost model (`model.json`), the `feature_spec.json`
//! it was trained with, and its `threshold.json`, the probability from which its payments are
//! predicted frauds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::reasons::{Explainer, Reason};
use super::shap::TreeShap;
use super::xgboost::{sigmoid, XgbModel};
use crate::error::Failure;
use crate::transaction::Transaction;
use crate::transform::{Derived, FeatureSpec};

/// The local model: spec + XGBoost trees + a version derived from the model file's content,
/// and the words of its columns.
pub struct LocalModel {
    pub spec: FeatureSpec,
    pub model: XgbModel,
    /// The model's feature contributions (for the reasons).
    pub shap: TreeShap,
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

/// The threshold of a model directory without threshold.json (a model trained elsewhere).
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// The threshold a model's payments are predicted frauds from: `given` (a setting, named by
/// `setting` when it is not a probability), else the directory's own ([`model_threshold`]),
/// else [`DEFAULT_THRESHOLD`].
pub fn threshold(given: Option<f64>, setting: impl FnOnce() -> String, dir: &Path) -> Result<f64> {
    match given {
        Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(Failure::Config(format!("{} {t} is not between 0 and 1", setting())).into()),
        None => Ok(model_threshold(dir)?.unwrap_or(DEFAULT_THRESHOLD)),
    }
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
            shap: TreeShap::of(&model),
            model,
            version,
        })
    }

    /// The margin, probability, contributions and reasons of one feature row of `tx`.
    pub fn explain(&self, tx: &Transaction, values: &[Option<f64>]) -> Explanation {
        let margin = self.model.margin(values);
        let contributions = self.shap.contributions(&self.model, values);
        let reasons = self.explainer.reasons(tx, values, &contributions);
        Explanation {
            margin,
            probability: sigmoid(margin),
            contributions,
            reasons,
        }
    }

    /// The reasons of a predicted fraud, from its transaction (a stage file's JSON) and features.
    pub fn reasons(&self, tx_json: &str, values: &[Option<f64>]) -> Result<Vec<Reason>> {
        self.reasons_with(
            tx_json,
            values,
            &self.shap.contributions(&self.model, values),
        )
    }

    /// The same from its contributions, computed already.
    pub fn reasons_with(
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
    pub fn features_of_tx(&self, tx_json: &str, values: &mut Vec<f64>) -> Result<Vec<Option<f64>>> {
        let tx: Transaction =
            serde_json::from_str(tx_json).context("scored record holds an invalid transaction")?;
        let derived = Derived::of(&tx, &self.spec.time_zone);
        self.spec.compute(&tx, &derived, None, values);
        Ok(values.iter().map(|v| Some(*v)).collect())
    }
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
    fn a_threshold_given_wins_a_bad_one_names_its_setting_and_none_is_the_directorys() {
        let dir = tempfile::tempdir().unwrap();
        let setting = || "--threshold / FRAUDCTL_THRESHOLD".to_string();
        assert_eq!(threshold(Some(0.3), setting, dir.path()).unwrap(), 0.3);
        assert_eq!(
            threshold(None, setting, dir.path()).unwrap(),
            DEFAULT_THRESHOLD
        );
        std::fs::write(dir.path().join("threshold.json"), r#"{"threshold": 0.8}"#).unwrap();
        assert_eq!(threshold(None, setting, dir.path()).unwrap(), 0.8);
        for bad in [1.5, -0.1, f64::NAN] {
            let e = threshold(Some(bad), setting, dir.path()).unwrap_err();
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))),
                "{e:#}"
            );
            assert!(
                format!("{e:#}").starts_with("--threshold / FRAUDCTL_THRESHOLD "),
                "{e:#}"
            );
        }
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
