//! The setting of a challenger model in shadow (docs/rules.md, "A challenger model"), which
//! `transform` (the challenger's features, when its spec differs from the model's) and `score`
//! (its probability, beside the model's) both read.

use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ChallengerArgs {
    /// A challenger model run in shadow: its directory (model.json, feature_spec.json,
    /// threshold.json). `score` stores its probability and prediction beside the model's and
    /// never alerts on them; `transform` computes its features too when its feature spec
    /// differs from the model's. Give both stages the same directory.
    #[arg(
        long = "challenger-model-dir",
        env = "FRAUDCTL_CHALLENGER_MODEL_DIR",
        value_name = "DIR"
    )]
    pub challenger_model_dir: Option<PathBuf>,
}

impl ChallengerArgs {
    /// The challenger's directory; an empty setting (an unset Airflow Variable) is none.
    pub fn dir(&self) -> Option<&Path> {
        self.challenger_model_dir
            .as_deref()
            .filter(|d| !d.as_os_str().is_empty())
    }

    /// The feature spec the challenger was trained with.
    pub fn feature_spec(&self) -> Option<PathBuf> {
        self.dir().map(|d| d.join("feature_spec.json"))
    }
}
