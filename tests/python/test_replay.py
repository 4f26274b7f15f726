"""The held-out split replayed through the pipeline (model/replay.py): consecutive runs, each
run's earlier payments only in the database. The model card's targets hold there, and the
figures are the training script's: the pipeline computes the features training computed."""

import json
import os
import subprocess
import sys

import pytest
from conftest import DEFAULT_MODEL, REPO
from test_model import TARGETS


@pytest.fixture(scope="module")
def replayed(fraudctl, sample_path, new_database):
    env = {
        **os.environ,
        "FRAUDCTL_DATABASE_URL": new_database(),
        "FRAUDCTL_PAN_HASH_KEY": "held-out-replay-test-0123456789abcdef",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.replay",
            "--csv",
            sample_path,
            "--fraudctl",
            fraudctl,
            "--run-size",
            "200",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_replay_meets_the_targets(replayed):
    assert replayed["runs"] > 1, "several runs: the history crosses the database"
    for name, target in TARGETS.items():
        assert replayed[name] >= target, (name, replayed[name])


def test_the_replay_gives_the_training_figures(replayed):
    trained = json.loads((DEFAULT_MODEL / "metrics.json").read_text())["held_out"]
    assert (
        replayed["payments"]
        == json.loads((DEFAULT_MODEL / "metrics.json").read_text())["counts"]["held_out"]["rows"]
    )
    for name in ("roc_auc", "average_precision", "precision", "recall"):
        assert replayed[name] == pytest.approx(trained[name], abs=1e-6), name
