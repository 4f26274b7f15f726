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
//! O(leaves × depth²) a tree. For shallow trees the same arithmetic is done once per region of a
//! tree and way through it instead ([`RegionTables`]), and a payment costs a look-up a region.
//! Only run for the few payments predicted fraudulent, and by `fraudctl explain`.

use std::sync::OnceLock;

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

impl PathElement {
    const EMPTY: PathElement = PathElement {
        feature: None,
        zero_fraction: 0.0,
        one_fraction: 0.0,
        weight: 0.0,
    };
}

/// EXTEND: adds a feature as the path's last element (`path` is the path with room for it),
/// splitting every subset size's weight between the subsets without the feature
/// (× `zero_fraction`) and with it (× `one_fraction`, one size up).
fn extend(path: &mut [PathElement], zero_fraction: f64, one_fraction: f64, feature: Option<usize>) {
    let depth = path.len() - 1;
    path[depth] = PathElement {
        feature,
        zero_fraction,
        one_fraction,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let n = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one_fraction * path[i].weight * (i + 1) as f64 / n;
        path[i].weight = zero_fraction * path[i].weight * (depth - i) as f64 / n;
    }
}

/// UNWIND: EXTEND undone for the element at `index` (its weights and the element removed), so a
/// feature split on a second time can be extended again with both splits' fractions. The path
/// is then one shorter: its last element is left over.
fn unwind(path: &mut [PathElement], index: usize) {
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
}

/// The total weight of the path's subsets once the element at `index` is unwound (UNWIND's
/// arithmetic without changing the path): what the leaf's value is multiplied by for it.
fn unwound_sum(path: &[PathElement], index: usize) -> f64 {
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

/// How a node was reached: along a split on `feature` with these fractions.
#[derive(Clone, Copy)]
struct Reached {
    feature: Option<usize>,
    zero_fraction: f64,
    one_fraction: f64,
}

impl TreeWalk<'_> {
    /// Visits `at`, reached by `step` from its parent, whose path is `paths[..parent_len]`.
    /// The rest of `paths` is room for the paths below: this node's is a copy of its parent's,
    /// extended, right after it (no allocation a node; XGBoost lays them out the same way).
    fn visit(&mut self, at: u32, paths: &mut [PathElement], parent_len: usize, step: Reached) {
        let (parent, rest) = paths.split_at_mut(parent_len);
        rest[..parent_len].copy_from_slice(parent);
        let mut len = parent_len + 1;
        extend(
            &mut rest[..len],
            step.zero_fraction,
            step.one_fraction,
            step.feature,
        );
        let node = self.model.nodes[at as usize];
        if node.left == 0 {
            let path = &rest[..len];
            for (i, e) in path.iter().enumerate().skip(1) {
                let weight = unwound_sum(path, i);
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
        if let Some(k) = rest[..len].iter().position(|e| e.feature == Some(split)) {
            incoming_zero = rest[k].zero_fraction;
            incoming_one = rest[k].one_fraction;
            unwind(&mut rest[..len], k);
            len -= 1;
        }
        let feature = Some(split);
        let hot_step = Reached {
            feature,
            zero_fraction: cover(hot) / cover(at) * incoming_zero,
            one_fraction: incoming_one,
        };
        let cold_step = Reached {
            feature,
            zero_fraction: cover(cold) / cover(at) * incoming_zero,
            one_fraction: 0.0,
        };
        self.visit(hot, rest, len, hot_step);
        self.visit(cold, rest, len, cold_step);
    }
}

/// Whether `row` goes left at a split: `x < threshold` in f32, a missing value the default
/// direction.
fn goes_left(node: &Node, row: &[f32]) -> bool {
    let x = row[node.feature as usize];
    if x.is_nan() {
        node.default_left
    } else {
        x < node.value
    }
}

/// The branch `row` takes at a split ("hot"), and the other ("cold").
fn hot_and_cold(node: &Node, row: &[f32]) -> (u32, u32) {
    if goes_left(node, row) {
        (node.left, node.right)
    } else {
        (node.right, node.left)
    }
}

/// The tree's mean output under `at`: its leaves' values weighted by their covers.
fn mean_value(nodes: &[Node], covers: &[f32], at: u32) -> f64 {
    let node = nodes[at as usize];
    if node.left == 0 {
        return f64::from(node.value);
    }
    let weighted = |n: u32| mean_value(nodes, covers, n) * f64::from(covers[n as usize]);
    (weighted(node.left) + weighted(node.right)) / f64::from(covers[at as usize])
}

/// How many table entries ([`RegionTables`]) a model may have (4 bytes each): beyond, every
/// payment's contributions are computed by the recursive walk.
const MAX_TABLE_ENTRIES: usize = 1 << 22;

/// How many splits may index one region's table (2^8 rows).
const REGION_BITS: usize = 8;

/// The walk's result at a leaf depends on the row only through which of the leaf's path
/// features the row "follows" (one fraction 1: every split on it along the path goes the row's
/// way; else 0), so it depends only on the row's way at the splits of the leaf's path. For a
/// subtree small enough, the row's way at the splits above it and in it (at most
/// [`REGION_BITS`]) therefore fixes the sum of its leaves' shares of each feature's
/// contribution: such a subtree is a *region*, and its table holds that sum for every way the
/// row can go, computed once with the same EXTEND and UNWIND as the walk (the path's features
/// extended in any order give the same weights). A payment then costs the tree's splits (one
/// comparison each, as scoring does) and a look-up a region: the default model's trees of
/// depth 4 are two regions each, some fifty times less work than the walk, which is what keeps
/// `score`'s cost within its budget (BENCHMARKS.md).
///
/// The tables are flat (every tree's splits, every region's index bits, features and shares one
/// after the other). A payment's way at each split of a tree is found once, as one bit a split.
#[derive(Debug, Default)]
struct RegionTables {
    trees: Vec<TreeTables>,
    /// Every tree's splits (at most 64 a tree: one bit each).
    splits: Vec<Node>,
    regions: Vec<Region>,
    /// For each region, the bits (split numbers in its tree) that index its table, in order.
    bits: Vec<u8>,
    /// For each region, the features its leaves split on, each once.
    features: Vec<usize>,
    /// Every region's rows: for each way the row goes at its bits, each feature's share. In f32,
    /// as XGBoost computes contributions: half the memory, which a payment reads at random.
    shares: Vec<f32>,
}

/// Where a tree's splits and regions are in [`RegionTables`].
#[derive(Debug)]
struct TreeTables {
    splits: std::ops::Range<usize>,
    regions: std::ops::Range<usize>,
}

/// Where a region's parts are in [`RegionTables`].
#[derive(Debug)]
struct Region {
    bits: std::ops::Range<usize>,
    features: std::ops::Range<usize>,
    shares: usize,
}

/// The splits above a node while a tree is read: (split bit, split node, child taken).
type PathTo = Vec<(usize, u32, u32)>;

/// One leaf's shares while the tables are built: for each pattern p of its features (bit k
/// set: the row follows its k-th feature), each feature's share.
struct LeafShares {
    /// The bits of its path's splits where the path goes left.
    left: u64,
    features: Vec<usize>,
    /// For each feature, the bits of its splits on the path.
    masks: Vec<u64>,
    shares: Vec<f64>,
}

impl LeafShares {
    /// The leaf `at`, reached by `path`: its features, each with its zero fraction (the cover
    /// ratios of its splits, multiplied) and its splits' bits, and its shares for every
    /// pattern, by EXTEND and UNWIND as the walk computes them at a leaf.
    fn of(model: &XgbModel, at: u32, path: &[(usize, u32, u32)]) -> LeafShares {
        let cover = |n: u32| f64::from(model.covers[n as usize]);
        let mut leaf = LeafShares {
            left: 0,
            features: Vec::new(),
            masks: Vec::new(),
            shares: Vec::new(),
        };
        let mut zero_fractions = Vec::new();
        for &(bit, split, child) in path {
            let node = model.nodes[split as usize];
            let feature = node.feature as usize;
            let k = leaf.features.iter().position(|f| *f == feature);
            let k = k.unwrap_or_else(|| {
                leaf.features.push(feature);
                leaf.masks.push(0);
                zero_fractions.push(1.0);
                zero_fractions.len() - 1
            });
            zero_fractions[k] *= cover(child) / cover(split);
            leaf.masks[k] |= 1 << bit;
            leaf.left |= u64::from(child == node.left) << bit;
        }
        let n = leaf.features.len();
        let value = f64::from(model.nodes[at as usize].value);
        let mut elements = vec![PathElement::EMPTY; n + 1];
        for pattern in 0..1usize << n {
            let one = |k: usize| if pattern & (1 << k) != 0 { 1.0 } else { 0.0 };
            extend(&mut elements[..1], 1.0, 1.0, None);
            for (k, &zero) in zero_fractions.iter().enumerate() {
                extend(&mut elements[..k + 2], zero, one(k), Some(leaf.features[k]));
            }
            leaf.shares.extend(
                (0..n)
                    .map(|k| unwound_sum(&elements, k + 1) * (one(k) - zero_fractions[k]) * value),
            );
        }
        leaf
    }

    /// Its shares for a row going left at the splits of `lefts`' bits: the row follows feature
    /// k when it goes the path's way at each of its splits.
    fn shares_for(&self, lefts: u64) -> impl Iterator<Item = (usize, f64)> + '_ {
        let off_path = lefts ^ self.left;
        let pattern = self.masks.iter().enumerate().fold(0usize, |p, (k, mask)| {
            p | usize::from(off_path & mask == 0) << k
        });
        let n = self.features.len();
        let shares = &self.shares[pattern * n..][..n];
        self.features.iter().copied().zip(shares.iter().copied())
    }
}

impl RegionTables {
    /// The tables of every region of the model, or `None` when they would take more than
    /// [`MAX_TABLE_ENTRIES`] or a tree has more than 64 splits.
    fn of(model: &XgbModel) -> Option<RegionTables> {
        let mut tables = RegionTables::default();
        for &root in &model.roots {
            let (first_split, first_region) = (tables.splits.len(), tables.regions.len());
            let mut bit_of = std::collections::HashMap::new();
            let mut stack = vec![root];
            while let Some(at) = stack.pop() {
                let node = model.nodes[at as usize];
                if node.left != 0 {
                    if tables.splits.len() - first_split == 64 {
                        return None;
                    }
                    bit_of.insert(at, tables.splits.len() - first_split);
                    tables.splits.push(node);
                    stack.extend([node.left, node.right]);
                }
            }
            tables.add_regions(model, &bit_of, root, &mut Vec::new())?;
            tables.trees.push(TreeTables {
                splits: first_split..tables.splits.len(),
                regions: first_region..tables.regions.len(),
            });
        }
        Some(tables)
    }

    /// Cuts the subtree at `at` (reached by `path`) into regions: itself when the splits above
    /// it and in it fit in [`REGION_BITS`] (or it is a leaf), else each of its children's.
    fn add_regions(
        &mut self,
        model: &XgbModel,
        bit_of: &std::collections::HashMap<u32, usize>,
        at: u32,
        path: &mut PathTo,
    ) -> Option<()> {
        let inside = splits_under(model, at);
        let node = model.nodes[at as usize];
        if node.left == 0 || path.len() + inside.len() <= REGION_BITS {
            return self.add_region(model, bit_of, at, path, &inside);
        }
        for child in [node.left, node.right] {
            path.push((bit_of[&at], at, child));
            self.add_regions(model, bit_of, child, path)?;
            path.pop();
        }
        Some(())
    }

    /// Adds the region of the subtree at `at`, reached by `above`, with the splits `inside`:
    /// its leaves' summed shares for every way the row can go at those splits.
    fn add_region(
        &mut self,
        model: &XgbModel,
        bit_of: &std::collections::HashMap<u32, usize>,
        at: u32,
        above: &[(usize, u32, u32)],
        inside: &[u32],
    ) -> Option<()> {
        let mut leaves = Vec::new();
        let mut stack: Vec<(u32, PathTo)> = vec![(at, above.to_vec())];
        while let Some((n, path)) = stack.pop() {
            let node = model.nodes[n as usize];
            if node.left == 0 {
                leaves.push(LeafShares::of(model, n, &path));
                continue;
            }
            for child in [node.left, node.right] {
                let mut below = path.clone();
                below.push((bit_of[&n], n, child));
                stack.push((child, below));
            }
        }
        let bits: Vec<usize> = above
            .iter()
            .map(|s| s.0)
            .chain(inside.iter().map(|n| bit_of[n]))
            .collect();
        let mut features: Vec<usize> = Vec::new();
        for f in leaves.iter().flat_map(|l| &l.features) {
            if !features.contains(f) {
                features.push(*f);
            }
        }
        let rows = 1usize.checked_shl(bits.len() as u32)?;
        if self.shares.len() + rows.checked_mul(features.len())? > MAX_TABLE_ENTRIES {
            return None;
        }
        let region = Region {
            bits: self.bits.len()..self.bits.len() + bits.len(),
            features: self.features.len()..self.features.len() + features.len(),
            shares: self.shares.len(),
        };
        for way in 0..rows {
            let lefts = bits
                .iter()
                .enumerate()
                .fold(0u64, |l, (j, bit)| l | ((way as u64 >> j) & 1) << bit);
            let mut row = vec![0.0; features.len()];
            for (f, share) in leaves.iter().flat_map(|l| l.shares_for(lefts)) {
                row[features
                    .iter()
                    .position(|g| *g == f)
                    .expect("a region feature")] += share;
            }
            self.shares.extend(row.iter().map(|s| *s as f32));
        }
        self.bits.extend(bits.iter().map(|b| *b as u8));
        self.features.extend(features);
        self.regions.push(region);
        Some(())
    }

    /// Adds every region's shares for each of the rows `which` of `rows` (rows of `width`
    /// values one after the other) to its contributions (`phi`: one after the other), tree by
    /// tree, so that a tree's tables, read at random, are read for every row while they are in
    /// the cache (a chunk's predicted frauds are a few dozen rows among a thousand).
    fn add_rows(&self, rows: &[f32], width: usize, which: &[usize], phi: &mut [f64]) {
        let stride = phi.len() / which.len().max(1);
        for tree in &self.trees {
            for (k, &i) in which.iter().enumerate() {
                let row = &rows[i * width..][..width];
                self.add_tree(tree, row, &mut phi[k * stride..][..stride]);
            }
        }
    }

    /// Adds one tree's regions' shares for `row` to `phi`.
    fn add_tree(&self, tree: &TreeTables, row: &[f32], phi: &mut [f64]) {
        let lefts = self.splits[tree.splits.clone()]
            .iter()
            .enumerate()
            .fold(0u64, |bits, (bit, split)| {
                bits | u64::from(goes_left(split, row)) << bit
            });
        for region in &self.regions[tree.regions.clone()] {
            let way = self.bits[region.bits.clone()]
                .iter()
                .enumerate()
                .fold(0usize, |w, (j, bit)| w | ((lefts >> bit) as usize & 1) << j);
            let n = region.features.len();
            let shares = &self.shares[region.shares + way * n..][..n];
            for (f, share) in self.features[region.features.clone()].iter().zip(shares) {
                phi[*f] += f64::from(*share);
            }
        }
    }
}

/// The splits of the subtree at `at`.
fn splits_under(model: &XgbModel, at: u32) -> Vec<u32> {
    let mut splits = Vec::new();
    let mut stack = vec![at];
    while let Some(n) = stack.pop() {
        let node = model.nodes[n as usize];
        if node.left != 0 {
            splits.push(n);
            stack.extend([node.left, node.right]);
        }
    }
    splits
}

/// A model's TreeSHAP: its bias, and its region tables once built. Made by [`TreeShap::of`] for
/// one model and used with that model only.
#[derive(Debug)]
pub struct TreeShap {
    /// The margin's expected value over the training rows: logit(base_score) + each tree's
    /// mean output.
    bias: f64,
    /// The model's node count, to catch a use with another model.
    nodes: usize,
    /// Built when first needed (`None`: the model is too deep for them).
    region_tables: OnceLock<Option<RegionTables>>,
}

impl TreeShap {
    pub fn of(model: &XgbModel) -> TreeShap {
        let means = model
            .roots
            .iter()
            .map(|&root| mean_value(&model.nodes, &model.covers, root));
        TreeShap {
            bias: f64::from(model.base_margin) + means.sum::<f64>(),
            nodes: model.nodes.len(),
            region_tables: OnceLock::new(),
        }
    }

    /// The contributions of one feature row (`None` = missing) to its margin: one per feature,
    /// in the model's order, then the bias (XGBoost's `pred_contribs=True` layout). They sum to
    /// [`XgbModel::margin`] (up to f32 rounding: XGBoost sums in f32, this in f64).
    pub fn contributions(&self, model: &XgbModel, features: &[Option<f64>]) -> Vec<f64> {
        let mut row = Vec::with_capacity(features.len());
        XgbModel::push_row(&mut row, features);
        self.contributions_of(model, &row, &[0])
    }

    /// The contributions of the rows `which` of `rows` (laid out by [`XgbModel::push_row`]),
    /// one row's after the other (each `num_features + 1` long). From the region tables
    /// (built at their first use, some 15 ms for the default model; then ≈ 7–20 µs a row)
    /// when the model has them, else by the walk (≈ 0.6 ms a row). Never one or the other by
    /// the batch's size: they agree only within f32 rounding, and a payment's reasons must be
    /// the same however it was batched (the live path's micro-batch, the DAG's minute).
    pub fn contributions_of(&self, model: &XgbModel, rows: &[f32], which: &[usize]) -> Vec<f64> {
        assert_eq!(
            self.nodes,
            model.nodes.len(),
            "TreeShap used with another model"
        );
        let (width, stride) = (model.num_features, model.num_features + 1);
        let mut phi = vec![0.0; which.len() * stride];
        if which.is_empty() {
            return phi; // and no tables built (some 15 ms) for a batch without a fraud
        }
        for bias in phi.iter_mut().skip(width).step_by(stride) {
            *bias = self.bias;
        }
        let tables = self.region_tables.get_or_init(|| RegionTables::of(model));
        match tables {
            Some(tables) => tables.add_rows(rows, width, which, &mut phi),
            None => {
                for (k, &i) in which.iter().enumerate() {
                    let row = &rows[i * width..][..width];
                    walk_contributions(model, row, &mut phi[k * stride..][..stride]);
                }
            }
        }
        phi
    }
}

/// Adds every tree's contributions for `row` to `phi` by the recursive walk.
fn walk_contributions(model: &XgbModel, row: &[f32], phi: &mut [f64]) {
    // A node at depth d has a path of at most d + 1 elements (the first one above the
    // root), each copied after its parent's: room for 1 + 2 + … + (max_depth + 2).
    let longest = model.max_depth as usize + 2;
    let mut paths = vec![PathElement::EMPTY; longest * (longest + 1) / 2];
    let root_step = Reached {
        feature: None,
        zero_fraction: 1.0,
        one_fraction: 1.0,
    };
    for &root in &model.roots {
        let mut walk = TreeWalk { model, row, phi };
        walk.visit(root, &mut paths, 0, root_step);
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
        let shap = TreeShap::of(&model);
        assert!(shap
            .region_tables
            .get_or_init(|| RegionTables::of(&model))
            .is_some());
        let values = [None, Some(0.1), Some(0.4), Some(0.7), Some(1.5), Some(3.0)];
        let mut rows = 0;
        for a in values {
            for b in values {
                for c in values {
                    let row = [a, b, c];
                    let tabled = shap.contributions(&model, &row);
                    let exact = brute_force(&model, &row);
                    let mut walked = vec![0.0; 4];
                    walked[3] = shap.bias;
                    let mut f32_row = Vec::new();
                    XgbModel::push_row(&mut f32_row, &row);
                    walk_contributions(&model, &f32_row, &mut walked);
                    for (k, e) in exact.iter().enumerate() {
                        let (s, w) = (tabled[k], walked[k]);
                        // The tables keep the shares in f32.
                        assert!(
                            (s - e).abs() < 1e-6,
                            "row {row:?} column {k}: table {s} != {e}"
                        );
                        assert!(
                            (w - e).abs() < 1e-12,
                            "row {row:?} column {k}: walk {w} != {e}"
                        );
                    }
                    let sum: f64 = tabled.iter().sum();
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

    #[test]
    fn the_default_models_region_tables_give_the_walks_contributions() {
        use rand::{Rng, SeedableRng};
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/model/default/model.json");
        let model = XgbModel::load(std::path::Path::new(path)).unwrap();
        let tables = RegionTables::of(&model).expect("the default model has tables");
        assert!(
            tables.regions.len() > tables.trees.len(),
            "some of its trees (depth 4, up to 15 splits) are cut into regions"
        );
        // Rows at each split's threshold, just below or above it, or missing: every way
        // through the trees.
        let mut thresholds = vec![Vec::new(); model.num_features];
        for node in model.nodes.iter().filter(|n| n.left != 0) {
            thresholds[node.feature as usize].push(f64::from(node.value));
        }
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..500 {
            let features: Vec<Option<f64>> = thresholds
                .iter()
                .map(|t| match (t.is_empty(), rng.gen_range(0..4)) {
                    (true, _) | (false, 0) => None,
                    (false, side) => {
                        Some(t[rng.gen_range(0..t.len())] + (side as f64 - 2.0) * 1e-3)
                    }
                })
                .collect();
            let mut row = Vec::new();
            XgbModel::push_row(&mut row, &features);
            let (mut tabled, mut walked) = (
                vec![0.0; model.num_features + 1],
                vec![0.0; model.num_features + 1],
            );
            tables.add_rows(&row, model.num_features, &[0], &mut tabled);
            walk_contributions(&model, &row, &mut walked);
            for (k, (t, w)) in tabled.iter().zip(&walked).enumerate() {
                assert!(
                    (t - w).abs() < 1e-5,
                    "{features:?} column {k}: table {t} != walk {w}"
                );
            }
        }
    }
}
