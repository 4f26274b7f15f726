//! Why a payment scored as it did: each feature's contribution to the margin (log-odds), exactly
//! as XGBoost's `Booster.predict(..., pred_contribs=True)` computes it (exact TreeSHAP,
//! `approx_contribs=False`; Lundberg, Erion & Lee, "Consistent Individualized Feature
//! Attribution for Tree Ensembles", 2018, Algorithm 2, as in XGBoost's `TreeShap`).
//!
//! The contributions are Shapley values of the game whose value for a set S of known features
//! is the tree's expected output when only the features of S are known: at a split on a feature
//! of S the row's own branch is taken (a missing value takes the split's default branch), at any
//! other split both branches are averaged, weighted by the training rows that went each way (the
//! nodes' covers, `sum_hessian`). The value with no feature known is the tree's mean output; the
//! bias is the sum of those means plus logit(base_score), so that bias + every contribution =
//! the margin.
//!
//! Rather than enumerate the 2^M sets, the algorithm walks each tree once, down every branch,
//! keeping the *path* of the features split on from the root to the current node (each feature
//! once: a feature split on again is first taken out of the path, then put back with both
//! splits' fractions multiplied). Each path element holds, for its feature, the fraction of the
//! flow that reaches here when the feature is unknown (`zero_fraction`, the product of cover
//! ratios) and when it is known (`one_fraction`: 1 while the row's own branch is followed, 0 on
//! the other), and a weight: the share of the subsets of the path's features of each size, as
//! EXTEND grows them. At a leaf, UNWIND takes each feature out in turn to find the weight of the
//! subsets without it; its contribution is that weight × (one − zero fraction) × the leaf value.
//! O(leaves × depth²) a tree; only run for the few payments predicted fraudulent, and by
//! `fraudctl explain`.

use super::xgboost::{Node, XgbModel};

/// One feature on the path from the root to the current node.
#[derive(Debug, Clone, Copy)]
struct PathElement {
    /// The feature split on; `None` for the path's first element (above the root).
    feature: Option<usize>,
    /// The fraction of the flow that gets here along this feature's splits when it is unknown.
    zero_fraction: f64,
    /// The same when it is known: 1 on the row's own branches, 0 once off them.
    one_fraction: f64,
    /// The proportion of subsets of the path's features, of this element's position as their
    /// size, weighted as Shapley weights are (the algorithm's `pweight`).
    weight: f64,
}

type Path = Vec<PathElement>;

/// EXTEND: adds a feature to the path, splitting every subset size's weight between the subsets
/// without the feature (× `zero_fraction`) and with it (× `one_fraction`, one size up).
fn extend(path: &mut Path, zero_fraction: f64, one_fraction: f64, feature: Option<usize>) {
    let depth = path.len();
    path.push(PathElement {
        feature,
        zero_fraction,
        one_fraction,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    });
    let n = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one_fraction * path[i].weight * (i + 1) as f64 / n;
        path[i].weight = zero_fraction * path[i].weight * (depth - i) as f64 / n;
    }
}

/// UNWIND: EXTEND undone for the element at `index` (its weights and the element removed), so a
/// feature split on a second time can be extended again with both splits' fractions.
fn unwind(path: &mut Path, index: usize) {
    let depth = path.len() - 1;
    let PathElement {
        zero_fraction,
        one_fraction,
        ..
    } = path[index];
    let n = (depth + 1) as f64;
    let mut next_one_portion = path[depth].weight;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next_one_portion * n / ((i + 1) as f64 * one_fraction);
            next_one_portion = kept - path[i].weight * zero_fraction * (depth - i) as f64 / n;
        } else {
            path[i].weight = path[i].weight * n / (zero_fraction * (depth - i) as f64);
        }
    }
    // The weights stay by position; the features after `index` move up one.
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
    path.pop();
}

/// The total weight of the path's subsets once the element at `index` is unwound (UNWIND's
/// arithmetic without changing the path): what the leaf's value is multiplied by for it.
fn unwound_sum(path: &Path, index: usize) -> f64 {
    let depth = path.len() - 1;
    let PathElement {
        zero_fraction,
        one_fraction,
        ..
    } = path[index];
    let n = (depth + 1) as f64;
    let mut next_one_portion = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let w = next_one_portion * n / ((i + 1) as f64 * one_fraction);
            total += w;
            next_one_portion = path[i].weight - w * zero_fraction * ((depth - i) as f64 / n);
        } else if zero_fraction != 0.0 {
            total += (path[i].weight / zero_fraction) / ((depth - i) as f64 / n);
        }
    }
    total
}

/// One tree's walk for one row.
struct TreeWalk<'a> {
    model: &'a XgbModel,
    /// The row as the trees compare it: f32, NaN = missing.
    row: &'a [f32],
    /// Contributions, one per feature then the bias.
    phi: &'a mut [f64],
}

impl TreeWalk<'_> {
    /// Visits `at`, reached from `parent` (the path so far) along a split on `feature` whose
    /// fractions are `zero_fraction` and `one_fraction`.
    fn visit(
        &mut self,
        at: u32,
        parent: &Path,
        zero_fraction: f64,
        one_fraction: f64,
        feature: Option<usize>,
    ) {
        let mut path = parent.clone();
        extend(&mut path, zero_fraction, one_fraction, feature);
        let node = self.model.nodes[at as usize];
        if node.left == 0 {
            for (i, e) in path.iter().enumerate().skip(1) {
                let weight = unwound_sum(&path, i);
                let f = e.feature.expect("only the first element has no feature");
                self.phi[f] += weight * (e.one_fraction - e.zero_fraction) * f64::from(node.value);
            }
            return;
        }
        let (hot, cold) = hot_and_cold(&node, self.row);
        let cover = |n: u32| f64::from(self.model.covers[n as usize]);
        let split = node.feature as usize;
        // A feature split on before is taken out and extended again with both splits' fractions.
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(k) = path.iter().position(|e| e.feature == Some(split)) {
            incoming_zero = path[k].zero_fraction;
            incoming_one = path[k].one_fraction;
            unwind(&mut path, k);
        }
        let (hot_zero, cold_zero) = (cover(hot) / cover(at), cover(cold) / cover(at));
        self.visit(
            hot,
            &path,
            hot_zero * incoming_zero,
            incoming_one,
            Some(split),
        );
        self.visit(cold, &path, cold_zero * incoming_zero, 0.0, Some(split));
    }
}

/// The branch `row` takes at a split ("hot": `x < threshold` in f32, a missing value the
/// default direction), and the other ("cold").
fn hot_and_cold(node: &Node, row: &[f32]) -> (u32, u32) {
    let x = row[node.feature as usize];
    let left = if x.is_nan() {
        node.default_left
    } else {
        x < node.value
    };
    if left {
        (node.left, node.right)
    } else {
        (node.right, node.left)
    }
}

impl XgbModel {
    /// The tree's mean output under `at`: its leaves' values weighted by their covers.
    fn mean_value(&self, at: u32) -> f64 {
        let node = self.nodes[at as usize];
        if node.left == 0 {
            return f64::from(node.value);
        }
        let weighted = |n: u32| self.mean_value(n) * f64::from(self.covers[n as usize]);
        (weighted(node.left) + weighted(node.right)) / f64::from(self.covers[at as usize])
    }

    /// The contributions of one feature row (`None` = missing) to its margin: one per feature,
    /// in the model's order, then the bias (XGBoost's `pred_contribs=True` layout). They sum to
    /// [`XgbModel::margin`] (up to f32 rounding: XGBoost sums in f32, this in f64).
    pub fn contributions(&self, features: &[Option<f64>]) -> Vec<f64> {
        let mut row = Vec::with_capacity(features.len());
        Self::push_row(&mut row, features);
        let mut phi = vec![0.0; self.num_features + 1];
        phi[self.num_features] = f64::from(self.base_margin);
        for &root in &self.roots {
            phi[self.num_features] += self.mean_value(root);
            let mut walk = TreeWalk {
                model: self,
                row: &row,
                phi: &mut phi,
            };
            walk.visit(root, &Vec::new(), 1.0, 1.0, None);
        }
        phi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three features, one tree of depth 3 that splits on feature 0 twice on a path (UNWIND),
    /// with missing values going left at feature 1's split and right elsewhere.
    const TREE: &str = r#"{"learner":{"objective":{"name":"binary:logistic"},
      "learner_model_param":{"base_score":"2.5E-1","num_feature":"3"},
      "gradient_booster":{"name":"gbtree","model":{"trees":[{
        "left_children":  [1, 3, 5, 7, -1, -1, -1, -1, -1],
        "right_children": [2, 4, 6, 8, -1, -1, -1, -1, -1],
        "split_indices":  [0, 1, 2, 0, 0, 0, 0, 0, 0],
        "split_conditions":[0.5, 2.0, 1.0, 0.25, 0.3, -0.2, 0.8, -0.5, 0.1],
        "default_left":   [0, 1, 0, 0, 0, 0, 0, 0, 0],
        "sum_hessian":    [100.0, 60.0, 40.0, 35.0, 25.0, 10.0, 30.0, 20.0, 15.0],
        "split_type":     [0, 0, 0, 0, 0, 0, 0, 0, 0]}]}}}}"#;

    /// The tree's expected output when only the features in `known` (a bit set) are known:
    /// the definition TreeSHAP computes Shapley values of.
    fn expected_output(model: &XgbModel, row: &[f32], known: u32, at: u32) -> f64 {
        let node = model.nodes[at as usize];
        if node.left == 0 {
            return f64::from(node.value);
        }
        if known & (1 << node.feature) != 0 {
            return expected_output(model, row, known, hot_and_cold(&node, row).0);
        }
        let cover = |n: u32| f64::from(model.covers[n as usize]);
        (expected_output(model, row, known, node.left) * cover(node.left)
            + expected_output(model, row, known, node.right) * cover(node.right))
            / cover(at)
    }

    /// Shapley values by enumerating every subset of the other features.
    fn brute_force(model: &XgbModel, features: &[Option<f64>]) -> Vec<f64> {
        let m = model.num_features;
        let mut row = Vec::new();
        XgbModel::push_row(&mut row, features);
        let factorial = |n: usize| (1..=n).product::<usize>() as f64;
        let v = |s: u32| expected_output(model, &row, s, 0);
        let mut phi: Vec<f64> = (0..m)
            .map(|i| {
                (0..1u32 << m)
                    .filter(|s| s & (1 << i) == 0)
                    .map(|s| {
                        let size = s.count_ones() as usize;
                        let weight = factorial(size) * factorial(m - size - 1) / factorial(m);
                        weight * (v(s | 1 << i) - v(s))
                    })
                    .sum()
            })
            .collect();
        phi.push(v(0) + f64::from(model.base_margin));
        phi
    }

    #[test]
    fn contributions_are_the_brute_force_shapley_values() {
        let model = XgbModel::parse(TREE.as_bytes()).unwrap();
        let values = [None, Some(0.1), Some(0.4), Some(0.7), Some(1.5), Some(3.0)];
        let mut rows = 0;
        for a in values {
            for b in values {
                for c in values {
                    let row = [a, b, c];
                    let (shap, exact) = (model.contributions(&row), brute_force(&model, &row));
                    for (k, (s, e)) in shap.iter().zip(&exact).enumerate() {
                        assert!((s - e).abs() < 1e-12, "row {row:?} column {k}: {s} != {e}");
                    }
                    let sum: f64 = shap.iter().sum();
                    let margin = f64::from(model.margin(&row));
                    assert!(
                        (sum - margin).abs() < 1e-6,
                        "row {row:?}: {sum} != {margin}"
                    );
                    rows += 1;
                }
            }
        }
        assert_eq!(rows, 216);
    }
}
