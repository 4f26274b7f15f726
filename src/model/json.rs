//! Reads an XGBoost model file (XGBoost's JSON format, `Booster.save_model("model.json")`): the
//! learner's parameters, then each tree's arrays, checked before any is used (a bad file is
//! refused with what is wrong, never evaluated half-read).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::xgboost::{Node, XgbModel};
use crate::error::Failure;

#[derive(Deserialize)]
struct ModelFile {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    gradient_booster: Booster,
    learner_model_param: Value,
    objective: Value,
}

#[derive(Deserialize)]
struct Booster {
    name: String,
    #[serde(default)]
    model: Option<Trees>,
}

#[derive(Deserialize)]
struct Trees {
    trees: Vec<TreeFile>,
}

/// One tree as the file holds it: arrays indexed by node, children as indices (-1: a leaf).
#[derive(Deserialize)]
struct TreeFile {
    left_children: Vec<i32>,
    right_children: Vec<i32>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f32>,
    default_left: Vec<Value>,
    sum_hessian: Vec<f32>,
    #[serde(default)]
    split_type: Vec<u8>,
}

/// The trees read so far, laid out as [`XgbModel`] keeps them.
#[derive(Default)]
struct Forest {
    nodes: Vec<Node>,
    covers: Vec<f32>,
    roots: Vec<u32>,
}

impl XgbModel {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| Failure::BadInput(format!("model {}: {e}", path.display())).into())
    }

    /// The model of a file's text, or what is wrong with it.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let file: ModelFile =
            serde_json::from_slice(text).map_err(|e| format!("not an XGBoost JSON model: {e}"))?;
        let learner = file.learner;
        let (base_score, num_features) = learner_params(&learner)?;
        let trees = learner
            .gradient_booster
            .model
            .ok_or("gradient_booster.model.trees is missing")?
            .trees;
        let mut forest = Forest::default();
        for (i, tree) in trees.into_iter().enumerate() {
            check_tree(i, &tree, num_features)?;
            forest.push(tree)?;
        }
        let base_margin = -(1.0f32 / base_score - 1.0f32).ln();
        let Forest {
            nodes,
            covers,
            roots,
        } = forest;
        Ok(XgbModel::of_trees(
            nodes,
            covers,
            roots,
            base_margin,
            num_features,
        ))
    }
}

/// The learner's `base_score` and feature count, once its objective and booster are ones this
/// evaluator computes as XGBoost does.
fn learner_params(learner: &Learner) -> Result<(f32, usize), String> {
    let objective = learner.objective["name"].as_str().unwrap_or("?");
    if objective != "binary:logistic" {
        return Err(format!(
            "objective {objective:?} is not supported (binary:logistic only)"
        ));
    }
    let booster = &learner.gradient_booster.name;
    if booster != "gbtree" {
        return Err(format!(
            "booster {booster:?} is not supported (gbtree only)"
        ));
    }
    let param = &learner.learner_model_param;
    let base_score = parse_base_score(param["base_score"].as_str().unwrap_or("0.5"))?;
    if !(0.0 < base_score && base_score < 1.0) {
        return Err(format!("base_score {base_score} is not a probability"));
    }
    let num_features: usize = param["num_feature"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("learner_model_param.num_feature is missing")?;
    Ok((base_score, num_features))
}

/// Tree `i` is one this evaluator walks safely: numeric splits only, arrays of one length,
/// children after their parent and inside the tree, splits with a positive cover (TreeSHAP
/// divides by it) on a feature the model has.
fn check_tree(i: usize, t: &TreeFile, num_features: usize) -> Result<(), String> {
    if t.split_type.iter().any(|s| *s != 0) {
        return Err(format!(
            "tree {i} has categorical splits, which are not supported"
        ));
    }
    let n = t.left_children.len();
    let lengths = [
        t.right_children.len(),
        t.split_indices.len(),
        t.split_conditions.len(),
        t.default_left.len(),
        t.sum_hessian.len(),
    ];
    if lengths.iter().any(|len| *len != n) {
        return Err(format!("tree {i} has arrays of different lengths"));
    }
    for node in (0..n).filter(|&node| t.left_children[node] != -1) {
        let (l, r) = (t.left_children[node], t.right_children[node]);
        let inside = |c: i32| c >= 0 && (c as usize) < n && c as usize > node;
        if !inside(l) || !inside(r) {
            return Err(format!("tree {i} node {node} has invalid children"));
        }
        let cover = t.sum_hessian[node];
        if cover.is_nan() || cover <= 0.0 {
            return Err(format!(
                "tree {i} node {node} is a split with cover (sum_hessian) {cover}"
            ));
        }
        if t.split_indices[node] as usize >= num_features {
            return Err(format!(
                "tree {i} node {node} splits on feature {} of {num_features}",
                t.split_indices[node]
            ));
        }
    }
    Ok(())
}

impl Forest {
    /// Appends a checked tree: its nodes, their children as offsets into `nodes`.
    fn push(&mut self, t: TreeFile) -> Result<(), String> {
        let base = self.nodes.len() as u32;
        self.roots.push(base);
        self.covers.extend_from_slice(&t.sum_hessian);
        for node in 0..t.left_children.len() {
            let default_left = &t.default_left[node];
            let leaf = t.left_children[node] == -1;
            let child = |c: i32| if leaf { 0 } else { base + c as u32 };
            self.nodes.push(Node {
                feature: t.split_indices[node],
                value: t.split_conditions[node],
                left: child(t.left_children[node]),
                right: child(t.right_children[node]),
                default_left: default_left
                    .as_bool()
                    .or_else(|| default_left.as_u64().map(|x| x != 0))
                    .ok_or("default_left holds a non-boolean")?,
            });
        }
        Ok(())
    }
}

/// `base_score` as written by XGBoost: `"5E-1"`, or since 3.1 a list string `"[2.5514E-1]"`.
fn parse_base_score(s: &str) -> Result<f32, String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let first = inner.split(',').next().unwrap_or("").trim();
    first
        .parse::<f32>()
        .map_err(|_| format!("base_score {s:?} is not a number"))
}
