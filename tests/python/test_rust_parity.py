"""`fraudctl` (Rust) against the Python references, on every row of the sample: the features of
both feature specs and the local XGBoost scorer's probabilities. Skipped when the binary is not
built (FRAUDCTL_BIN, default target/release/fraudctl)."""
import numpy as np
import pytest
import xgboost
from sklearn.metrics import roc_auc_score

import features
from conftest import DEFAULT_MODEL, ORIGINAL_SPEC, read_stage

DEFAULT_SPEC = DEFAULT_MODEL / "feature_spec.json"
FLOAT_HINT = ("distance_km or age a few ULP off with equal formulas usually means a stage read a "
              "float from JSON not correctly rounded (serde_json needs its float_roundtrip feature)")


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
    spec = {**features.load_spec(DEFAULT_SPEC),
            "blocks": [{"type": "numeric", "features": ["age", "distance_km", "hour", "day_of_week"]}]}
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
