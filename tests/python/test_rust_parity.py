"""`fraudctl` (Rust) against the Python references, on every row of the sample: the features of
both feature specs and the local XGBoost scorer's probabilities. Skipped when the binary is not
built (FRAUDCTL_BIN, default target/release/fraudctl)."""

import json
import shutil

import numpy as np
import pytest
import xgboost
from conftest import DEFAULT_MODEL, ORIGINAL_SPEC, read_stage
from sklearn.metrics import roc_auc_score

from model import features

DEFAULT_SPEC = DEFAULT_MODEL / "feature_spec.json"
FLOAT_HINT = (
    "distance_km or age a few ULP off with equal formulas usually means a stage read a "
    "float from JSON not correctly rounded (serde_json needs its float_roundtrip feature)"
)


def feature_matrix(records):
    return np.array([r["features"] for r in records], dtype=np.float64)  # null -> NaN


def test_extract_keeps_every_sample_row(fraudctl_run, sample):
    run_dir = fraudctl_run(ORIGINAL_SPEC)
    header, _ = read_stage(run_dir / "raw.jsonl", "fraudctl.raw")
    assert header["counts"]["records"] == len(sample)


def test_original_spec_equals_seed_preprocessing(fraudctl_run, stage_records, sample, seed_transform):
    run_dir = fraudctl_run(ORIGINAL_SPEC)
    header, _ = read_stage(run_dir / "features.jsonl", "fraudctl.features")
    spec = features.load_spec(ORIGINAL_SPEC)
    assert header["meta"]["feature_spec"]["columns"] == features.columns(spec)
    rust = feature_matrix(stage_records(run_dir / "features.jsonl", "fraudctl.features"))
    sklearn = seed_transform(sample)
    passthrough = np.array([c in spec["blocks"][-1]["features"] for c in features.columns(spec)])
    np.testing.assert_array_equal(rust[:, ~passthrough], sklearn[:, ~passthrough])
    np.testing.assert_allclose(rust[:, passthrough], sklearn[:, passthrough], rtol=1e-12, atol=0)


def test_default_spec_equals_features_py(fraudctl_run, stage_records, sample):
    run_dir = fraudctl_run(DEFAULT_SPEC)
    records = stage_records(run_dir / "features.jsonl", "fraudctl.features")
    python = features.compute(features.load_spec(DEFAULT_SPEC), sample)
    np.testing.assert_array_equal(feature_matrix(records), python.to_numpy(), err_msg=FLOAT_HINT)


def test_derived_equals_features_py(fraudctl_run, stage_records, sample):
    run_dir = fraudctl_run(DEFAULT_SPEC)
    derived = [r["derived"] for r in stage_records(run_dir / "features.jsonl", "fraudctl.features")]
    spec = {
        **features.load_spec(DEFAULT_SPEC),
        "blocks": [{"type": "numeric", "features": ["age", "distance_km", "hour", "day_of_week"]}],
    }
    python = features.compute(spec, sample).to_numpy()
    rust = np.array([[d["age_years"], d["distance_km"], d["hour"], d["day_of_week"]] for d in derived])
    np.testing.assert_array_equal(rust, python, err_msg=FLOAT_HINT)


@pytest.fixture(scope="module")
def scored(fraudctl_run, stage_records):
    """Rust features and Rust probabilities of the default model, in sample order."""
    run_dir = fraudctl_run(DEFAULT_SPEC, DEFAULT_MODEL)
    rust_features = feature_matrix(stage_records(run_dir / "features.jsonl", "fraudctl.features"))
    records = stage_records(run_dir / "scored.jsonl", "fraudctl.scored")
    return rust_features, np.array([r["score"]["probability"] for r in records])


def test_probabilities_equal_xgboost(scored):
    rust_features, rust_probability = scored
    booster = xgboost.Booster(model_file=str(DEFAULT_MODEL / "model.json"))
    expected = booster.predict(xgboost.DMatrix(rust_features, missing=np.nan))
    np.testing.assert_allclose(rust_probability, expected, rtol=0, atol=1e-6)


def test_frauds_rank_far_above_legit_rows(scored, sample):
    _, rust_probability = scored
    assert roc_auc_score(sample["is_fraud"], rust_probability) > 0.95


EVERY_HISTORY = {
    "schema": features.SPEC_SCHEMA,
    "version": 1,
    "name": "every-history-feature",
    "time_zone": "UTC",
    "blocks": [{"type": "card_history", "features": list(features.HISTORY_FEATURES)}],
}


@pytest.fixture(scope="module")
def replayed_in_runs(fraudctl, run, sample_path, tmp_path_factory, new_database, stage_env):
    """The sample replayed through extract → transform → score → load as three consecutive runs
    (each one's earlier payments only in the database); returns the run directories and the
    database, and each run's features.jsonl as transform wrote it then."""
    env = {**stage_env, "FRAUDCTL_DATABASE_URL": new_database()}
    root = tmp_path_factory.mktemp("runs")
    lines = sample_path.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    dirs, first_features = [], []
    for k in range(3):
        part = root / f"part{k}.csv"
        part.write_text("\n".join([header, *rows[k * len(rows) // 3 : (k + 1) * len(rows) // 3]]) + "\n")
        run_dir = root / f"run{k}"
        for stage in (
            ["extract", "--from-csv", part],
            ["transform", "--feature-spec", DEFAULT_SPEC],
            ["score", "--model-dir", DEFAULT_MODEL],
            ["load"],
        ):
            run([fraudctl, stage[0], "--run-dir", run_dir, *stage[1:]], env)
        dirs.append(run_dir)
        first_features.append((run_dir / "features.jsonl").read_text().splitlines()[1:])
    return dirs, env, first_features


def features_by_trans_num(paths):
    """Every record's features (null → NaN), by trans_num, from features.jsonl files."""
    out = {}
    for path in paths:
        _, records = read_stage(path, "fraudctl.features")
        out.update(
            {r["tx"]["trans_num"]: [np.nan if v is None else v for v in r["features"]] for r in records}
        )
    return out


def test_history_split_between_database_and_batch_equals_features_py(
    replayed_in_runs, fraudctl, run, sample, tmp_path
):
    """Every history feature, each run transformed again after all three were loaded (so later
    payments sit in the database): bit for bit what features.py computes over the whole CSV."""
    dirs, env, _ = replayed_in_runs
    spec_file = tmp_path / "every_history.json"
    spec_file.write_text(json.dumps(EVERY_HISTORY))
    again = []
    for run_dir in dirs:
        copy = tmp_path / run_dir.name
        copy.mkdir()
        shutil.copy(run_dir / "raw.jsonl", copy / "raw.jsonl")  # the same capture time
        run([fraudctl, "transform", "--run-dir", copy, "--feature-spec", spec_file], env)
        again.append(copy / "features.jsonl")
    rust = features_by_trans_num(again)
    python = features.compute(EVERY_HISTORY, sample)
    matrix = np.array([rust[t] for t in sample["trans_num"]])
    np.testing.assert_array_equal(matrix, python.to_numpy())
    assert np.nanmax(python["card_count_30d"].to_numpy()) > 0, "the runs share cards' history"


def test_features_of_a_run_never_change_after_later_runs_are_loaded(replayed_in_runs, fraudctl, run):
    dirs, env, first_features = replayed_in_runs
    for run_dir, first in zip(dirs, first_features):
        run([fraudctl, "transform", "--run-dir", run_dir, "--feature-spec", DEFAULT_SPEC], env)
        assert (run_dir / "features.jsonl").read_text().splitlines()[1:] == first, run_dir.name


# "Why it fired": `fraudctl explain` against xgboost's exact TreeSHAP (pred_contribs=True) on every
# sample row. (model/original ships only a feature spec, for its SageMaker endpoint: there is no
# local model of that format to compare.)
CONTRIBUTION_ATOL = 1e-5


def explain(fraudctl, run, env, run_dir):
    """`fraudctl explain` of every record of a run directory, by trans_num."""
    done = run([fraudctl, "explain", "--run-dir", run_dir, "--model-dir", DEFAULT_MODEL], env)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_trans_num = {e["trans_num"]: e for e in lines}
    assert len(by_trans_num) == len(lines), "one line a payment"
    return by_trans_num


def assert_contributions_equal_xgboost(features, explained, columns):
    """Rust's contributions (bias last) against pred_contribs=True, their sums and margins
    against output_margin=True."""
    assert all(list(e["contributions"]) == [*columns, "bias"] for e in explained)
    rust = np.array([[e["contributions"][c] for c in [*columns, "bias"]] for e in explained])
    booster = xgboost.Booster(model_file=str(DEFAULT_MODEL / "model.json"))
    matrix = xgboost.DMatrix(features, missing=np.nan)
    expected = booster.predict(matrix, pred_contribs=True, approx_contribs=False)
    margin = booster.predict(matrix, output_margin=True)
    assert rust.shape == expected.shape == (len(features), len(columns) + 1)
    np.testing.assert_allclose(rust, expected, rtol=0, atol=CONTRIBUTION_ATOL)
    np.testing.assert_allclose(rust.sum(axis=1), margin, rtol=0, atol=CONTRIBUTION_ATOL)
    np.testing.assert_allclose([e["margin"] for e in explained], margin, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        [e["probability"] for e in explained], booster.predict(matrix), rtol=0, atol=1e-6
    )
    assert (np.abs(expected[:, :-1]) > 0.1).any(axis=0).sum() >= 5, "features that matter"


@pytest.fixture(scope="module")
def default_run(fraudctl_run, stage_records):
    run_dir = fraudctl_run(DEFAULT_SPEC, DEFAULT_MODEL)
    header, _ = read_stage(run_dir / "features.jsonl", "fraudctl.features")
    records = stage_records(run_dir / "features.jsonl", "fraudctl.features")
    return run_dir, records, header["meta"]["feature_spec"]["columns"]


def test_explain_contributions_equal_xgboost_pred_contribs(default_run, fraudctl, run, stage_env):
    run_dir, records, columns = default_run
    by_trans_num = explain(fraudctl, run, stage_env, run_dir)
    explained = [by_trans_num[r["tx"]["trans_num"]] for r in records]
    assert_contributions_equal_xgboost(feature_matrix(records), explained, columns)


def test_explain_with_missing_values_follows_the_default_directions(
    default_run, fraudctl, run, stage_env, tmp_path
):
    """The same records with a fifth of their values made null (NaN for the model): the
    contributions still equal xgboost's, whose walk takes each split's default direction."""
    run_dir, records, columns = default_run
    lines = (run_dir / "features.jsonl").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(7)
    holed = []
    for line in lines[1:]:
        record = json.loads(line)
        record["features"] = [None if rng.random() < 0.2 else v for v in record["features"]]
        holed.append(record)
    copy = tmp_path / "holed"
    copy.mkdir()
    (copy / "features.jsonl").write_text(
        "\n".join([lines[0], *(json.dumps(r) for r in holed)]) + "\n", encoding="utf-8"
    )
    by_trans_num = explain(fraudctl, run, stage_env, copy)
    explained = [by_trans_num[r["tx"]["trans_num"]] for r in holed]
    features = feature_matrix(holed)
    assert np.isnan(features).mean() > 0.15
    assert_contributions_equal_xgboost(features, explained, columns)


def test_scored_frauds_carry_explains_reasons_and_others_none(
    default_run, fraudctl, run, stage_env, stage_records
):
    run_dir, _, _ = default_run
    by_trans_num = explain(fraudctl, run, stage_env, run_dir)
    scored = stage_records(run_dir / "scored.jsonl", "fraudctl.scored")
    frauds = [r for r in scored if r["score"]["predicted_fraud"]]
    assert 0 < len(frauds) < len(scored)
    for r in scored:
        explained = by_trans_num[r["tx"]["trans_num"]]
        if not r["score"]["predicted_fraud"]:
            assert "reasons" not in r["score"], r["tx"]["trans_num"]
            continue
        assert r["score"]["reasons"] == explained["reasons"], r["tx"]["trans_num"]
        contributions = [x["contribution"] for x in explained["reasons"]]
        assert 1 <= len(contributions) <= 3 and contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
        top = max(v for k, v in explained["contributions"].items() if k != "bias")
        assert contributions[0] == top
