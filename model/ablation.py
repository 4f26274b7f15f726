"""Which card-history features to ship: one model per candidate set, compared twice.

Every candidate is trained exactly as train.py trains the default (model/recipe.py: same split,
parameters and per-payment features) and judged on the held-out cards twice, every one at the
same threshold (THRESHOLD); one more row is default-v2 itself (its history feature and its
per-payment features, day_of_week included, which v3 dropped):

* on the sample as it is;
* on a *dense replay*: the held-out cards' payments plus synthetic legitimate payments of the
  same cards, `rate` a day (see `densify`). The sample was drawn so that history means something
  else than in production (fraud bursts without the card's everyday payments around them,
  legitimate payments from a few days only), and a feature whose value depends on that
  (counts over 30 days, amount against a 30-day mean of the burst itself) scores well here and
  misfires on a real stream. The replay shows which ones. Only the real rows are scored.

    python -m model.ablation --csv /work/shared/data/fraud_sample.csv
    (python -m model.train --ablation runs the same and stores the rows in metrics.json)
"""

import argparse
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from model import evaluation, features, recipe

DENSE_RATES = (2.5, 10.0)  # legitimate payments a day: an average card and a heavy user
DENSE_SEED = 20240601
# Every candidate is judged at the same threshold, the one a model's probabilities mean "more
# likely fraud than not" on the sample; the shipped model's own (train.choose_threshold) is higher.
THRESHOLD = 0.5
HISTORY_SECONDS = 30 * 86400  # what a history sees: synthetic payments further back are useless
GROUPS = {
    "no history": [],
    "all thirteen": list(features.HISTORY_FEATURES),
    "counts 1h-30d": ["card_count_1h", "card_count_24h", "card_count_7d", "card_count_30d"],
    "amount sums 1h-7d": ["card_amt_sum_1h", "card_amt_sum_24h", "card_amt_sum_7d"],
    "ratio + secs since prev": ["card_amt_ratio_30d", "card_secs_since_prev"],
    "sum 24h + ratio": ["card_amt_sum_24h", "card_amt_ratio_30d"],
    "sum 24h + secs since prev": ["card_amt_sum_24h", "card_secs_since_prev"],
}
HISTORY_ONLY = {
    **recipe.spec_with("history only", []),
    "blocks": [{"type": "card_history", "features": list(features.HISTORY_FEATURES)}],
}
VARIANTS = {**GROUPS, **{name: [name] for name in features.HISTORY_FEATURES}}
WITH_DAY_OF_WEEK = "default-v2 (with day_of_week)"
V2_HISTORY = ["card_amt_sum_24h"]  # what default-v2 (and v3) read of the card's history


def epoch_seconds(texts):
    return (pd.to_datetime(texts) - pd.Timestamp(0)) // pd.Timedelta(seconds=1)


def densify(held, rate, seed=DENSE_SEED):
    """`held` (its rows first, in order) plus, for each card, synthetic legitimate payments
    arriving as a Poisson stream of `rate` a day over the 30 days before each of its payments.
    Each is a copy of one of the card's own legitimate payments (amount, category, merchant
    location), or of any held-out one when the card has none, moved to its new time."""
    rng = np.random.default_rng(seed)
    legit = held[held["is_fraud"] == 0]
    added = []
    for card, rows in held.groupby("cc_num", sort=True):
        real = np.sort(epoch_seconds(rows["trans_date_trans_time"]).to_numpy())
        start = real[0] - HISTORY_SECONDS
        count = rng.poisson(rate * (real[-1] - start) / 86400)
        arrivals = np.sort(rng.integers(start, real[-1], count))
        next_real = real[np.searchsorted(real, arrivals, side="right")]
        arrivals = arrivals[next_real - arrivals <= HISTORY_SECONDS]
        own = legit[legit["cc_num"] == card]
        pool = own if len(own) else legit
        added.append(
            pool.iloc[rng.integers(0, len(pool), len(arrivals))].assign(
                cc_num=card,
                trans_date_trans_time=[
                    (pd.Timestamp(0) + timedelta(seconds=int(s))).strftime(features.TIME_FORMAT)
                    for s in arrivals
                ],
            )
        )
    synthetic = pd.concat(added, ignore_index=True)
    synthetic["trans_num"] = [f"dense-{i}" for i in range(len(synthetic))]
    return pd.concat([held, synthetic], ignore_index=True)


def scores(booster, X):
    return booster.predict(xgboost.DMatrix(X.to_numpy()))


def run(df):
    """One row for WITH_DAY_OF_WEEK, then one per VARIANTS entry: its numeric per-payment and
    history features and its held-out metrics on the sample and on each dense replay
    (evaluation.held_out_metrics)."""
    train_idx, test_idx = recipe.split(df)
    held = df.iloc[test_idx]
    y = df["is_fraud"].to_numpy()
    # One pass over every column any row reads; each row picks its own, in its spec's order.
    every = recipe.spec_with("ablation", features.HISTORY_FEATURES, recipe.V2_NUMERIC)
    X = features.compute(every, df)
    judged = {
        "held_out": X.iloc[test_idx],
        **{f"dense_{rate:g}_per_day": replay(X.iloc[test_idx], held, rate) for rate in DENSE_RATES},
    }
    candidates = [
        (WITH_DAY_OF_WEEK, V2_HISTORY, recipe.V2_NUMERIC),
        *((name, history, recipe.NUMERIC) for name, history in VARIANTS.items()),
    ]
    rows = []
    for name, history, numeric in candidates:
        columns = features.columns(recipe.spec_with(name, history, numeric))
        booster = recipe.fit(X[columns].to_numpy()[train_idx], y[train_idx])
        rows.append(
            {
                "variant": name,
                "numeric": numeric,
                "history": history,
                **{
                    key: evaluation.held_out_metrics(held, scores(booster, X_judged[columns]), THRESHOLD)
                    for key, X_judged in judged.items()
                },
            }
        )
    return rows


def replay(X_held, held, rate):
    """`X_held` (the held-out rows' features) with the history columns of the dense replay: the
    per-payment columns do not change, so only the history is recomputed."""
    history = features.compute(HISTORY_ONLY, densify(held, rate)).iloc[: len(held)]
    X_dense = X_held.reset_index(drop=True)
    X_dense[history.columns] = history.to_numpy()
    return X_dense


def table(rows):
    """The rows as the Markdown table of model/MODEL_CARD.md; ← marks the shipped features
    (model/recipe.py's NUMERIC and HISTORY)."""
    k = rows[0]["held_out"]["alerts_per_day"]
    dense = [key for key in rows[0] if key.startswith("dense_")]
    head = [
        "history features",
        "ROC AUC",
        "PR AUC",
        f"P@{THRESHOLD}",
        f"R@{THRESHOLD}",
        f"P@{k['k']}/day",
    ] + [f"{key.split('_')[1]}/day {name}" for key in dense for name in ("ROC AUC", "P", "R")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        shipped = " ←" if is_shipped(row) else ""
        m = row["held_out"]
        cells = [
            row["variant"] + shipped,
            f"{m['roc_auc']:.4f}",
            f"{m['average_precision']:.4f}",
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['alerts_per_day']['precision']:.3f}",
        ]
        cells += [
            f"{row[key][name]:.{4 if name == 'roc_auc' else 3}f}"
            for key in dense
            for name in ("roc_auc", "precision", "recall")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        f"\n\nP@{k['k']}/day: {k['alerts']} alerts; a perfect ranking reaches {k['ceiling']:.3f}."
    )


def is_shipped(row):
    """Whether an ablation row is the model train.py ships (model/recipe.py's)."""
    return row["numeric"] == recipe.NUMERIC and row["history"] == recipe.HISTORY


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--csv",
        required=True,
        action="append",
        type=Path,
        help="labelled transactions in the data set's CSV layout (repeatable)",
    )
    args = parser.parse_args()
    df = pd.concat([features.read_transactions(p) for p in args.csv], ignore_index=True)
    print(table(run(df)))


if __name__ == "__main__":
    main()
