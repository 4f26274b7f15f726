"""The committed default model (model/default) is what model/train.py makes from the sample."""
import hashlib
import json

import numpy as np
import xgboost

import features
import train
from conftest import DEFAULT_MODEL


def test_saved_model_predicts_like_the_in_memory_booster(sample):
    booster, _ = train.train(sample)
    saved = xgboost.Booster(model_file=str(DEFAULT_MODEL / "model.json"))
    X = xgboost.DMatrix(features.compute(train.SPEC, sample).to_numpy())
    np.testing.assert_array_equal(saved.predict(X), booster.predict(X))


def test_committed_spec_is_the_training_spec():
    assert features.load_spec(DEFAULT_MODEL / "feature_spec.json") == train.SPEC


def test_metrics_come_from_the_sample_and_separate_frauds(sample_path):
    metrics = json.loads((DEFAULT_MODEL / "metrics.json").read_text())
    assert metrics["training_data"] == [
        {"file": sample_path.name, "sha256": hashlib.sha256(sample_path.read_bytes()).hexdigest()}]
    assert metrics["held_out"]["roc_auc"] > 0.9
    assert metrics["held_out"]["threshold"] == 0.5
