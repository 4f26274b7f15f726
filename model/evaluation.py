"""The held-out metrics of a model (model/MODEL_CARD.md), the same for training (train.py), the
feature ablation (ablation.py) and the replay through the pipeline (replay.py)."""

import pandas as pd
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

ALERTS_PER_DAY = 5  # k of "precision at k alerts a day" (model/MODEL_CARD.md says why 5)


def alerts_per_day(held, p, k=ALERTS_PER_DAY):
    """Precision of the alerts an analyst team sees with a budget of k a day: the k
    highest-scored payments of each UTC day (all of them on a day with fewer), and the
    precision a perfect ranking would reach with the same budget (the ceiling)."""
    day = held["trans_date_trans_time"].str[:10].to_numpy()
    y = held["is_fraud"].to_numpy()
    scored = pd.DataFrame({"day": day, "p": p, "y": y})
    top = scored.sort_values(["day", "p"], ascending=[True, False]).groupby("day").head(k)
    best = scored.sort_values(["day", "y"], ascending=[True, False]).groupby("day").head(k)
    return {
        "k": k,
        "alerts": len(top),
        "precision": float(top["y"].mean()),
        "ceiling": float(best["y"].mean()),
    }


def held_out_metrics(held, p, threshold):
    """Metrics of probabilities `p` for the held-out transactions `held` (a DataFrame)."""
    y = held["is_fraud"].to_numpy()
    predicted = p >= threshold
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted)),
        "threshold": threshold,
        "alerts_per_day": alerts_per_day(held, p),
    }
