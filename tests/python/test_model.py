"""The committed default model is what model/train.py makes from the sample with its spec,
parameters and rounds, and meets the model card's targets."""

import hashlib
import json

import numpy as np
import xgboost
from conftest import DEFAULT_MODEL

from model import ablation, features, recipe, train

# Held out, at the model's threshold. ROC AUC 0.996, not v2's 0.997: v2's extra 0.002 came from
# the day of week telling the sample's fraud-only days apart, which v3 on no longer reads. Recall
# 0.90, not 0.95: the threshold is chosen for the data set's fraud share, not the sample's 14 %,
# and gives up held-out recall there for precision (model/MODEL_CARD.md, "Threshold").
TARGETS = {"roc_auc": 0.996, "precision": 0.95, "recall": 0.90}


def metrics():
    return json.loads((DEFAULT_MODEL / "metrics.json").read_text())


def test_saved_model_predicts_like_the_in_memory_booster(sample):
    spec = features.load_spec(DEFAULT_MODEL / "feature_spec.json")
    recorded = metrics()
    booster, threshold, _ = train.train(sample, spec, recorded["params"], recorded["rounds"])
    assert threshold == json.loads((DEFAULT_MODEL / "threshold.json").read_text())
    saved = xgboost.Booster(model_file=str(DEFAULT_MODEL / "model.json"))
    X = xgboost.DMatrix(features.compute(spec, sample).to_numpy())
    np.testing.assert_array_equal(saved.predict(X), booster.predict(X))


def test_metrics_come_from_the_sample_and_separate_frauds(sample_path):
    recorded = metrics()
    assert recorded["training_data"] == [
        {"file": sample_path.name, "sha256": hashlib.sha256(sample_path.read_bytes()).hexdigest()}
    ]
    assert recorded["held_out"]["threshold"] == features.load_threshold(DEFAULT_MODEL)


def test_training_spec_is_committed_with_its_parameters():
    assert features.load_spec(DEFAULT_MODEL / "feature_spec.json") == recipe.SPEC
    recorded = metrics()
    assert (recorded["params"], recorded["rounds"]) == (recipe.PARAMS, recipe.ROUNDS)


def test_training_spec_meets_the_targets_and_carries_its_ablation():
    recorded = metrics()
    held = recorded["held_out"]
    assert {k: held[k] >= v for k, v in TARGETS.items()} == dict.fromkeys(TARGETS, True), held
    shipped = [row for row in recorded["ablation"] if ablation.is_shipped(row)]
    # The ablation judges every candidate at 0.5; the ranking figures do not depend on it.
    assert len(shipped) == 1
    assert {k: shipped[0]["held_out"][k] for k in ("roc_auc", "average_precision")} == {
        k: held[k] for k in ("roc_auc", "average_precision")
    }
