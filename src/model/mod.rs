//! The model runtime: an XGBoost model read from its JSON file and evaluated the way XGBoost's
//! CPU predictor does (`xgboost.rs`, the file's format read by `json.rs`), its exact TreeSHAP
//! feature contributions (`shap.rs`), the words of a predicted fraud's reasons (`reasons.rs`),
//! and a model directory with its feature spec and threshold (`dir.rs`). A library: the `score`
//! stage, `fraudctl explain`, backtests and the benchmarks use it; it knows no stage.

mod dir;
mod json;
pub mod reasons;
mod shap;
mod xgboost;

pub use dir::{model_threshold, threshold, Explanation, LocalModel, DEFAULT_THRESHOLD};
pub use reasons::{Explainer, Reason, TOP_REASONS};
pub use shap::TreeShap;
pub use xgboost::{sigmoid, XgbModel};
