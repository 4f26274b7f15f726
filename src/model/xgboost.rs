//! Evaluates an XGBoost model saved in XGBoost's JSON format (`binary:logistic`, gbtree) the way
//! XGBoost's CPU predictor does: features as f32, a node goes left when `x < threshold` (strict,
//! in f32), a missing value (NaN) follows `default_left`, leaf values (in `split_conditions`)
//! summed in f32 onto logit(base_score), then the sigmoid. Each node's cover (`sum_hessian`) is
//! kept for the feature contributions (TreeSHAP, `shap.rs`). The file is read by `json.rs`.

/// One node of a tree, packed so that a walk touches one cache line per step. A leaf has
/// `left == 0` (no split node points back to the root) and its value in `value`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) feature: u32,
    /// Split threshold, or the leaf value.
    pub(super) value: f32,
    /// Children as offsets into the model's node array; 0 marks a leaf.
    pub(super) left: u32,
    pub(super) right: u32,
    pub(super) default_left: bool,
}

/// A split of a complete tree (see [`Complete`]). No `default_left`: rows with a missing value
/// are walked node by node.
#[derive(Debug, Clone, Copy)]
struct Split {
    feature: u32,
    threshold: f32,
}

/// The model's trees as complete binary trees of the model's depth, for models no deeper than
/// [`COMPLETE_MAX_DEPTH`]: in level order, node k's children are 2k+1 and 2k+2. A leaf above
/// the bottom level is pushed down: its value fills every bottom leaf under it, so the padding
/// splits below it (feature 0, any threshold) do not change the result.
#[derive(Debug)]
struct Complete {
    depth: u32,
    /// `2^depth - 1` splits a tree, one tree after the other.
    splits: Vec<Split>,
    /// `2^depth` leaf values a tree.
    leaves: Vec<f32>,
}

/// [`Complete::add_leaves`] tests all 2^depth - 1 splits of a tree where a walk takes `depth`
/// steps: worth it while the tree is shallow (the default model has depth 4). Deeper models are
/// walked node by node.
const COMPLETE_MAX_DEPTH: u32 = 6;

#[derive(Debug)]
pub struct XgbModel {
    /// Every tree's nodes, one tree after the other.
    pub(super) nodes: Vec<Node>,
    /// Each node's cover (XGBoost's `sum_hessian`: the training rows' hessian that reached it),
    /// beside `nodes` rather than in them so that a walk's cache lines stay full of splits.
    pub(super) covers: Vec<f32>,
    /// Where each tree's root is in `nodes`.
    pub(super) roots: Vec<u32>,
    /// The same trees made complete, when the model is shallow enough (most are).
    complete: Option<Complete>,
    pub(super) base_margin: f32,
    /// The deepest tree's depth (TreeSHAP's path buffer is sized by it).
    pub(super) max_depth: u32,
    pub num_features: usize,
}

impl XgbModel {
    /// The model of these trees (`nodes` laid out as [`Node`] says, `roots` where each tree
    /// starts), checked already by the reader (`json.rs`).
    pub(super) fn of_trees(
        nodes: Vec<Node>,
        covers: Vec<f32>,
        roots: Vec<u32>,
        base_margin: f32,
        num_features: usize,
    ) -> XgbModel {
        let complete = Complete::of(&nodes, &roots);
        let max_depth = roots.iter().map(|&r| depth(&nodes, r)).max().unwrap_or(0);
        XgbModel {
            nodes,
            covers,
            roots,
            complete,
            base_margin,
            max_depth,
            num_features,
        }
    }

    /// The fraud probability for one feature row (`None` = missing).
    pub fn predict(&self, features: &[Option<f64>]) -> f64 {
        sigmoid(self.margin(features))
    }

    /// The margin (log-odds, XGBoost's `output_margin=True`) for one feature row.
    pub fn margin(&self, features: &[Option<f64>]) -> f32 {
        let mut row = Vec::with_capacity(features.len());
        Self::push_row(&mut row, features);
        let mut margin = [0.0f32];
        self.margins(&row, &mut margin);
        margin[0]
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
        margins.fill(self.base_margin);
        // Blocks of LANES rows are evaluated together on the complete trees; a block with a
        // missing value, the rows left over, and every row of a model too deep for the
        // complete form walk the trees node by node (faster for a lone row: the CPU runs ahead
        // on its predicted branches).
        let mut walked_from = 0;
        if let Some(complete) = &self.complete {
            walked_from = margins.len() / LANES * LANES;
            let mut columns = Vec::with_capacity(width);
            for (rows, margins) in rows
                .chunks_exact(width * LANES)
                .zip(margins[..walked_from].chunks_exact_mut(LANES))
            {
                if rows.iter().any(|x| x.is_nan()) {
                    self.walk(rows, width, margins);
                } else {
                    complete.add_leaves(rows, width, &mut columns, margins);
                }
            }
        }
        self.walk(
            &rows[walked_from * width..],
            width,
            &mut margins[walked_from..],
        );
    }

    /// Adds every tree's leaf to the margin of each row, walking the trees node by node.
    fn walk(&self, rows: &[f32], width: usize, margins: &mut [f32]) {
        for (margin, row) in margins.iter_mut().zip(rows.chunks_exact(width)) {
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

/// Rows evaluated together on complete trees: each step of [`Complete::add_leaves`] is the same
/// operation on every lane, which the compiler turns into vector instructions.
const LANES: usize = 16;

/// One value per lane.
type Lanes = [f32; LANES];

/// The depth of the tree under `at` (a leaf: 0).
fn depth(nodes: &[Node], at: u32) -> u32 {
    let node = nodes[at as usize];
    if node.left == 0 {
        0
    } else {
        1 + depth(nodes, node.left).max(depth(nodes, node.right))
    }
}

impl Complete {
    /// The complete form of the trees, or `None` when one is deeper than COMPLETE_MAX_DEPTH.
    fn of(nodes: &[Node], roots: &[u32]) -> Option<Complete> {
        let mut max = 0;
        for &root in roots {
            max = max.max(depth(nodes, root));
            if max > COMPLETE_MAX_DEPTH {
                return None;
            }
        }
        let depth = max;
        let (inner, bottom) = ((1usize << depth) - 1, 1usize << depth);
        // A model of single leaves (depth 0) still keeps one (unused) split a tree.
        let stride = inner.max(1);
        let padding = Split {
            feature: 0,
            threshold: 0.0,
        };
        let mut splits = vec![padding; stride * roots.len()];
        let mut leaves = vec![0.0f32; bottom * roots.len()];
        for (t, &root) in roots.iter().enumerate() {
            // (node, its index in level order) pairs, root first.
            let mut stack = vec![(root, 0usize)];
            while let Some((at, k)) = stack.pop() {
                let node = nodes[at as usize];
                if node.left != 0 {
                    splits[t * stride + k] = Split {
                        feature: node.feature,
                        threshold: node.value,
                    };
                    stack.push((node.left, 2 * k + 1));
                    stack.push((node.right, 2 * k + 2));
                    continue;
                }
                // A leaf at level d covers the bottom leaves [first, first + span).
                let level = usize::BITS - 1 - (k + 1).leading_zeros();
                let span = 1usize << (depth as usize - level as usize);
                let first = (k + 1) * span - 1 - inner;
                leaves[t * bottom + first..t * bottom + first + span].fill(node.value);
            }
        }
        Some(Complete {
            depth,
            splits,
            leaves,
        })
    }

    /// Adds every tree's leaf to the margins of LANES rows (`width` features each, none
    /// missing), tree by tree: XGBoost's order, so that the f32 sums are the same.
    ///
    /// Instead of walking down (a load that depends on the previous step's outcome), every
    /// split of a tree is tested, bottom level first: a split's value becomes its left or its
    /// right child's value, so the root ends up with the leaf the walk would reach. That is
    /// 2^depth - 1 tests instead of `depth`, but each is the same branch-free operation on the
    /// LANES rows (vector instructions) and none waits for another.
    fn add_leaves(
        &self,
        rows: &[f32],
        width: usize,
        columns: &mut Vec<Lanes>,
        margins: &mut [f32],
    ) {
        let (inner, bottom) = ((1usize << self.depth) - 1, 1usize << self.depth);
        // Feature-major: columns[f] holds feature f of the LANES rows.
        columns.clear();
        columns.extend((0..width).map(|f| std::array::from_fn(|lane| rows[lane * width + f])));
        let mut values = [[0.0f32; LANES]; 1 << COMPLETE_MAX_DEPTH];
        let mut sums: Lanes = [0.0; LANES];
        sums.copy_from_slice(margins);
        for (splits, leaves) in self
            .splits
            .chunks_exact(inner.max(1))
            .zip(self.leaves.chunks_exact(bottom))
        {
            for (value, leaf) in values.iter_mut().zip(leaves) {
                *value = [*leaf; LANES];
            }
            // Level by level from the bottom: node j of a level (level-order index
            // first + j) takes the value of its child 2j or 2j + 1 of the level below.
            for level in (0..self.depth as usize).rev() {
                let first = (1 << level) - 1;
                for j in 0..1usize << level {
                    let split = splits[first + j];
                    let x = &columns[split.feature as usize];
                    let (left, right) = (values[2 * j], values[2 * j + 1]);
                    let mut value = [0.0; LANES];
                    for lane in 0..LANES {
                        // A mask, not a branch: the lanes become vector operations.
                        let mask = if x[lane] < split.threshold {
                            u32::MAX
                        } else {
                            0
                        };
                        value[lane] = f32::from_bits(
                            (left[lane].to_bits() & mask) | (right[lane].to_bits() & !mask),
                        );
                    }
                    values[j] = value;
                }
            }
            for (sum, value) in sums.iter_mut().zip(values[0]) {
                *sum += value;
            }
        }
        margins.copy_from_slice(&sums);
    }
}

/// The probability of a margin (log-odds), computed in f32 as XGBoost does.
pub fn sigmoid(margin: f32) -> f64 {
    f64::from(1.0f32 / (1.0f32 + (-margin).exp()))
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
                "split_conditions":[1.5,-0.4,0.6],"default_left":[0,0,0],"split_type":[0,0,0],
                "sum_hessian":[10.0,6.0,4.0]}}]}}}}}}}}"#
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
    fn complete_trees_give_the_walks_result() {
        // Tree 0: uneven (a leaf at depth 1 beside a subtree of depth 3, NaN going left on
        // feature 1); tree 1: a lone leaf.
        let json = r#"{"learner":{"objective":{"name":"binary:logistic"},
          "learner_model_param":{"base_score":"5E-1","num_feature":"2"},
          "gradient_booster":{"name":"gbtree","model":{"trees":[{
            "left_children":[1,-1,3,5,-1,-1,-1],"right_children":[2,-1,4,6,-1,-1,-1],
            "split_indices":[0,0,1,0,0,0,0],
            "split_conditions":[0.5,-0.3,2.0,1.5,0.7,0.1,0.2],
            "default_left":[0,0,1,0,0,0,0],"split_type":[0,0,0,0,0,0,0],
            "sum_hessian":[20.0,8.0,12.0,7.0,5.0,3.0,4.0]},
            {"left_children":[-1],"right_children":[-1],"split_indices":[0],
             "split_conditions":[0.05],"default_left":[0],"split_type":[0],"sum_hessian":[20.0]}]}}}}"#;
        let complete = XgbModel::parse(json.as_bytes()).unwrap();
        assert_eq!(complete.complete.as_ref().map(|c| c.depth), Some(3));
        let walked = XgbModel {
            complete: None,
            ..XgbModel::parse(json.as_bytes()).unwrap()
        };
        // 36 rows without a missing value, then LANES rows with some: the first two blocks of
        // LANES rows are evaluated on the complete trees; the third (it has missing values)
        // and the rows left over are walked.
        let values = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0];
        let mut rows = Vec::new();
        for a in values {
            for b in values {
                XgbModel::push_row(&mut rows, &[Some(a), Some(b)]);
            }
        }
        for i in 0..LANES {
            let missing = [None, Some(values[i % values.len()])];
            XgbModel::push_row(&mut rows, &[missing[i % 2], missing[(i / 2) % 2]]);
        }
        let (mut blocks, mut walks) = (Vec::new(), Vec::new());
        complete.predict_rows(&rows, &mut blocks);
        walked.predict_rows(&rows, &mut walks);
        assert_eq!(blocks, walks);
        let leaves_seen: std::collections::BTreeSet<u64> =
            blocks.iter().map(|p| p.to_bits()).collect();
        assert_eq!(leaves_seen.len(), 4, "every leaf of tree 0 is reached");
    }

    #[test]
    fn base_score_list_form() {
        let m = model("[2.5E-1]");
        let expected = 1.0f32 / (1.0f32 + (-(-(3.0f32).ln() - 0.4)).exp());
        assert!((m.predict(&[Some(0.0)]) - f64::from(expected)).abs() < 1e-7);
    }
}
