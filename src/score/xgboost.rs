//! Evaluates an XGBoost model saved in XGBoost's JSON format (`binary:logistic`, gbtree) the way
//! XGBoost's CPU predictor does: features as f32, a node goes left when `x < threshold` (strict,
//! in f32), a missing value (NaN) follows `default_left`, leaf values (in `split_conditions`)
//! summed in f32 onto logit(base_score), then the sigmoid.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Failure;

/// One node of a tree, packed so that a walk touches one cache line per step. A leaf has
/// `left == 0` (no split node points back to the root) and its value in `value`.
#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    /// Split threshold, or the leaf value.
    value: f32,
    /// Children as offsets into the model's node array; 0 marks a leaf.
    left: u32,
    right: u32,
    default_left: bool,
}

#[derive(Debug)]
pub struct XgbModel {
    /// Every tree's nodes, one tree after the other.
    nodes: Vec<Node>,
    /// Where each tree's root is in `nodes`.
    roots: Vec<u32>,
    base_margin: f32,
    pub num_features: usize,
}

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

#[derive(Deserialize)]
struct TreeFile {
    left_children: Vec<i32>,
    right_children: Vec<i32>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f32>,
    default_left: Vec<Value>,
    #[serde(default)]
    split_type: Vec<u8>,
}

impl XgbModel {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| Failure::BadInput(format!("model {}: {e}", path.display())).into())
    }

    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let file: ModelFile =
            serde_json::from_slice(text).map_err(|e| format!("not an XGBoost JSON model: {e}"))?;
        let learner = file.learner;
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
        let trees = learner
            .gradient_booster
            .model
            .ok_or("gradient_booster.model.trees is missing")?
            .trees;
        let (mut nodes, mut roots) = (Vec::new(), Vec::with_capacity(trees.len()));
        for (i, t) in trees.into_iter().enumerate() {
            if t.split_type.iter().any(|s| *s != 0) {
                return Err(format!(
                    "tree {i} has categorical splits, which are not supported"
                ));
            }
            let n = t.left_children.len();
            if [
                t.right_children.len(),
                t.split_indices.len(),
                t.split_conditions.len(),
                t.default_left.len(),
            ]
            .iter()
            .any(|len| *len != n)
            {
                return Err(format!("tree {i} has arrays of different lengths"));
            }
            for node in 0..n {
                let (l, r) = (t.left_children[node], t.right_children[node]);
                if l != -1
                    && (l as usize >= n
                        || r as usize >= n
                        || r < 0
                        || l as usize <= node
                        || r as usize <= node)
                {
                    return Err(format!("tree {i} node {node} has invalid children"));
                }
                if l != -1 && t.split_indices[node] as usize >= num_features {
                    return Err(format!(
                        "tree {i} node {node} splits on feature {} of {num_features}",
                        t.split_indices[node]
                    ));
                }
            }
            let base = nodes.len() as u32;
            roots.push(base);
            for node in 0..n {
                let default_left = &t.default_left[node];
                let leaf = t.left_children[node] == -1;
                nodes.push(Node {
                    feature: t.split_indices[node],
                    value: t.split_conditions[node],
                    left: if leaf {
                        0
                    } else {
                        base + t.left_children[node] as u32
                    },
                    right: if leaf {
                        0
                    } else {
                        base + t.right_children[node] as u32
                    },
                    default_left: default_left
                        .as_bool()
                        .or_else(|| default_left.as_u64().map(|x| x != 0))
                        .ok_or("default_left holds a non-boolean")?,
                });
            }
        }
        let base_margin = -(1.0f32 / base_score - 1.0f32).ln();
        Ok(XgbModel {
            nodes,
            roots,
            base_margin,
            num_features,
        })
    }

    /// The fraud probability for one feature row (`None` = missing).
    pub fn predict(&self, features: &[Option<f64>]) -> f64 {
        let mut row = Vec::with_capacity(features.len());
        Self::push_row(&mut row, features);
        let mut margin = [0.0f32];
        self.margins(&row, &mut margin);
        sigmoid(margin[0])
    }

    /// Appends a feature row in the evaluator's form (f32, NaN = missing) to `rows`.
    pub fn push_row(rows: &mut Vec<f32>, features: &[Option<f64>]) {
        rows.extend(features.iter().map(|v| v.map_or(f32::NAN, |v| v as f32)));
    }

    /// Probabilities of many rows at once: `rows` holds them one after the other, each
    /// `num_features` long (NaN = missing); `out` gets one probability per row. (Walking each
    /// tree for every row before the next tree measured no faster: BENCHMARKS.md.)
    pub fn predict_rows(&self, rows: &[f32], out: &mut Vec<f64>) {
        let mut margins = vec![0.0f32; rows.len() / self.num_features.max(1)];
        self.margins(rows, &mut margins);
        out.clear();
        out.extend(margins.into_iter().map(sigmoid));
    }

    fn margins(&self, rows: &[f32], margins: &mut [f32]) {
        let width = self.num_features.max(1);
        assert_eq!(
            rows.len(),
            margins.len() * width,
            "rows of {width} features"
        );
        for (margin, row) in margins.iter_mut().zip(rows.chunks_exact(width)) {
            *margin = self.base_margin;
            for &root in &self.roots {
                let mut node = self.nodes[root as usize];
                while node.left != 0 {
                    let x = row[node.feature as usize];
                    // NaN compares false: a missing value goes where default_left says.
                    let go_left = x < node.value || (x.is_nan() && node.default_left);
                    node = self.nodes[if go_left { node.left } else { node.right } as usize];
                }
                *margin += node.value;
            }
        }
    }
}

fn sigmoid(margin: f32) -> f64 {
    f64::from(1.0f32 / (1.0f32 + (-margin).exp()))
}

/// `base_score` as written by XGBoost: `"5E-1"`, or since 3.1 a list string `"[2.5514E-1]"`.
fn parse_base_score(s: &str) -> Result<f32, String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let first = inner.split(',').next().unwrap_or("").trim();
    first
        .parse::<f32>()
        .map_err(|_| format!("base_score {s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(base_score: &str) -> XgbModel {
        // One stump: feature 0 < 1.5 → leaf -0.4 else leaf 0.6; missing goes right.
        let json = format!(
            r#"{{"learner":{{"objective":{{"name":"binary:logistic"}},
              "learner_model_param":{{"base_score":"{base_score}","num_feature":"1"}},
              "gradient_booster":{{"name":"gbtree","model":{{"trees":[{{
                "left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],
                "split_conditions":[1.5,-0.4,0.6],"default_left":[0,0,0],"split_type":[0,0,0]}}]}}}}}}}}"#
        );
        XgbModel::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn strict_less_than_in_f32_and_missing_default() {
        let m = model("5E-1");
        let sig = |x: f32| f64::from(1.0f32 / (1.0f32 + (-x).exp()));
        assert_eq!(m.predict(&[Some(1.0)]), sig(-0.4));
        assert_eq!(
            m.predict(&[Some(1.5)]),
            sig(0.6),
            "a value on the threshold goes right"
        );
        // 1.4999999999 rounds to 1.5 in f32: XGBoost compares in f32, so it goes right too.
        assert_eq!(m.predict(&[Some(1.499_999_999_9)]), sig(0.6));
        assert_eq!(m.predict(&[None]), sig(0.6));
    }

    #[test]
    fn base_score_list_form() {
        let m = model("[2.5E-1]");
        let expected = 1.0f32 / (1.0f32 + (-(-(3.0f32).ln() - 0.4)).exp());
        assert!((m.predict(&[Some(0.0)]) - f64::from(expected)).abs() < 1e-7);
    }
}
