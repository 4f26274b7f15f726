"""Trains the default fraud model, reproducibly: same CSVs in, same model.json out.

Writes to --out: feature_spec.json (the columns, docs/feature-spec.md), model.json (XGBoost
JSON, binary:logistic) and metrics.json (held-out metrics, counts, versions, input hashes).
The split is card-disjoint: no card has transactions on both sides.

    python model/train.py --csv /work/shared/data/fraud_sample.csv --out model/default
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import xgboost
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import features  # noqa: E402  (needs the path above)

SEED = 20240601
TEST_SIZE = 0.25
THRESHOLD = 0.5
ROUNDS = 200
PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.1,
    "min_child_weight": 1,
    "seed": SEED,
    "nthread": 2,
}
CATEGORIES = [
    "entertainment", "food_dining", "gas_transport", "grocery_net", "grocery_pos",
    "health_fitness", "home", "kids_pets", "misc_net", "misc_pos", "personal_care",
    "shopping_net", "shopping_pos", "travel",
]
SPEC = {
    "schema": features.SPEC_SCHEMA,
    "version": 1,
    "name": "default-v1",
    "time_zone": "UTC",
    "blocks": [
        {"type": "numeric", "features": ["amt", "log_amt", "hour", "day_of_week", "age", "gender",
                                         "city_pop", "distance_km"]},
        {"type": "one_hot", "field": "category", "categories": CATEGORIES},
    ],
}


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train(df):
    """Features, card-disjoint split, XGBoost; returns the booster and the held-out metrics.

    The booster carries no feature names (the feature spec holds them): SageMaker's container
    and the test endpoint predict on unnamed CSV columns.
    """
    X = features.compute(SPEC, df).to_numpy()
    y = df["is_fraud"].to_numpy()
    groups = df["cc_num"].to_numpy()
    split = GroupShuffleSplit(n_splits=1, test_size=TEST_SIZE, random_state=SEED)
    train_idx, test_idx = next(split.split(X, y, groups))
    dtrain = xgboost.DMatrix(X[train_idx], label=y[train_idx])
    dtest = xgboost.DMatrix(X[test_idx], label=y[test_idx])
    booster = xgboost.train(PARAMS, dtrain, num_boost_round=ROUNDS)
    p = booster.predict(dtest)
    predicted = p >= THRESHOLD
    metrics = {
        "held_out": {
            "roc_auc": float(roc_auc_score(y[test_idx], p)),
            "precision": float(precision_score(y[test_idx], predicted, zero_division=0)),
            "recall": float(recall_score(y[test_idx], predicted)),
            "threshold": THRESHOLD,
        },
        "counts": {
            side: {"rows": len(idx), "frauds": int(y[idx].sum()),
                   "cards": int(np.unique(groups[idx]).size)}
            for side, idx in (("train", train_idx), ("held_out", test_idx))
        },
    }
    return booster, metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, action="append", type=Path,
                        help="labelled transactions in the data set's CSV layout (repeatable)")
    parser.add_argument("--out", required=True, type=Path,
                        help="model directory to write (e.g. model/default)")
    args = parser.parse_args()
    for path in args.csv:
        if not path.is_file():
            sys.exit(f"train: --csv {path} does not exist")

    df = pd.concat([features.read_transactions(p) for p in args.csv], ignore_index=True)
    booster, metrics = train(df)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_spec.json").write_text(json.dumps(SPEC, indent=2) + "\n", encoding="utf-8")
    booster.save_model(args.out / "model.json")
    metrics.update({
        "feature_spec": SPEC["name"],
        "columns": features.columns(SPEC),
        "params": PARAMS,
        "rounds": ROUNDS,
        "split": {"method": "GroupShuffleSplit by cc_num", "test_size": TEST_SIZE, "seed": SEED},
        "versions": {"xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__},
        "training_data": [{"file": p.name, "sha256": sha256_of(p)} for p in args.csv],
    })
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    held = metrics["held_out"]
    print(f"wrote {args.out}: held-out AUC {held['roc_auc']:.4f}, precision {held['precision']:.3f}, "
          f"recall {held['recall']:.3f} at {THRESHOLD}")


if __name__ == "__main__":
    main()
