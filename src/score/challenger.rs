//! A challenger model in shadow (docs/rules.md, "A challenger model"): every payment `score`
//! scores is also scored by the challenger (always in-process), its probability, version and
//! prediction at its own threshold written beside the model's in the scored record. Nothing
//! else reads it: no alert, no rule, no decision.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::challenger::ChallengerArgs;
use crate::error::Failure;
use crate::model::{threshold, LocalModel};
use crate::transform::FeatureRecord;

/// What a scored record says of the challenger (`score.challenger`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengerScore<S = String> {
    pub model_version: S,
    pub probability: f64,
    pub threshold: f64,
    pub predicted_fraud: bool,
}

/// The challenger in force: its model and threshold, and where its inputs are in a record.
pub(super) struct Challenger {
    pub model: Arc<LocalModel>,
    threshold: f64,
    /// Whether records carry its features apart (`challenger_features`: its spec is not the
    /// model's), else it reads the model's.
    own_features: bool,
}

impl Challenger {
    /// The challenger of `args`, checked against the features file (`features`, its header's
    /// `meta` in `meta`): its inputs must be there.
    pub(super) fn load(
        args: &ChallengerArgs,
        meta: &serde_json::Value,
        features: &Path,
    ) -> Result<Option<Self>> {
        let Some(dir) = args.dir() else {
            return Ok(None);
        };
        let model = LocalModel::shared(dir)?;
        let threshold = threshold(None, String::new, dir)?;
        let sha = Some(model.spec.sha256.as_str());
        let own_features = if meta["feature_spec"]["sha256"].as_str() == sha {
            false
        } else if meta["challenger_feature_spec"]["sha256"].as_str() == sha {
            true
        } else {
            return Err(Failure::BadInput(format!(
                "{} holds no features of the challenger's spec {} ({}): run `fraudctl transform` with the same {}",
                features.display(),
                model.spec.name,
                dir.display(),
                crate::setting::name::<ChallengerArgs>("challenger_model_dir"),
            ))
            .into());
        };
        tracing::info!(version = %model.version, threshold, dir = %dir.display(), "challenger in shadow");
        Ok(Some(Challenger {
            model,
            threshold,
            own_features,
        }))
    }

    /// The challenger's inputs of `record` (features record `no`) into `out`, `model_values`
    /// the model's (read already).
    pub(super) fn values(
        &self,
        (no, record): (u64, &FeatureRecord),
        model_values: &[Option<f64>],
        out: &mut Vec<Option<f64>>,
    ) -> Result<()> {
        match self.own_features {
            true => record
                .challenger_values(out)
                .map_err(|e| Failure::BadInput(format!("features record {no}: {e}")))?,
            false => {
                out.clear();
                out.extend_from_slice(model_values);
            }
        }
        let what = || format!("features record {no}'s challenger features");
        self.model.check_width(out, what)
    }

    /// What the scored record says of a probability the challenger gave.
    pub(super) fn score(&self, probability: f64) -> ChallengerScore<&str> {
        ChallengerScore {
            model_version: &self.model.version,
            probability,
            threshold: self.threshold,
            predicted_fraud: probability >= self.threshold,
        }
    }
}
