#!/usr/bin/env python3
"""Measures the synthetic payments of `fraudctl serve-payments` (no --csv) against the data set
and prints every figure as JSON:

    FRAUDCTL_DATABASE_URL=postgres://postgres@127.0.0.1:55432/generator_report \\
        .venv/bin/python -m scripts.generator_report --csv ../shared/data/fraud_sample.csv

* **Through the pipeline, as the stack sees it** (for each --seed, default options otherwise,
  `--time-mode original` so that the figures do not depend on when the script runs): three runs
  of 1,000 payments, each `extract` → `transform` (card history from the run's batch and, through
  PostgreSQL, the earlier runs) → `score` → `load`. Figures: the default model's precision and
  recall, the false-alarm rate on legitimate payments (and by day of week), the median number
  of times a card is seen, frauds per compromised card, and the legitimate payments' 24-hour
  card spending (what the model reads) beside the sample's.
* **In `--time-mode last-day`, at every hour of the day**: the same payments stamped as
  serve-payments stamps them in that mode (the latest moment up to the request with their
  simulated time of day; `now`, the default, runs the generator on the wall clock instead), served one every 0.1 s in three runs, their card history recomputed as `transform`
  would (the earlier runs and the same batch, strictly earlier stamps) and scored by the model
  at its threshold:
  precision, recall, false-alarm rate and the share of cards whose payments keep their order;
  and the false-alarm rate by day of week over all 24 hours.
* **Pooled over the seeds**: precision, recall and the false-alarm rate (and by day of week) of
  all the pipeline runs together.
* **How far from the sample**: a classifier (XGBoost, 5-fold cross-validated) trained to tell the
  sample's payments from as many generated ones, at the sample's fraud share: ROC AUC on the
  model's per-payment inputs, on every column of a payment but its time and identifiers (the
  places too, and the state, city, job and merchant hashed), and for each column alone. The
  folds are split by card: the sample has 679 cards of 9 payments on average, and a classifier
  that saw some of a card's payments would recognise its others by their exact age and city
  population, which says nothing about the generator.

The database may hold anything: each invocation hashes card numbers with a fresh key, so no
earlier payment counts as history. Needs the fraudctl binary (--fraudctl, default
target/release/fraudctl).
"""

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from model import features

REPO = Path(__file__).resolve().parents[1]

MODEL = REPO / "model" / "default"
DAY_MS = 86_400_000
RUNS, RUN_SIZE = 3, 1000
SERVE_INTERVAL_MS = 100  # the stack's extract polls every 100 ms


class Simulator:
    """A `fraudctl serve-payments` process on a free port."""

    def __init__(self, binary, *args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/current-transactions"
        self.proc = subprocess.Popen(
            [str(binary), "serve-payments", "--listen", f"127.0.0.1:{port}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("generator_report: serve-payments did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def fraudctl(binary, env, stage, run_dir, *args):
    done = subprocess.run(
        [str(binary), stage, "--run-dir", str(run_dir), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"generator_report: fraudctl {stage} for {run_dir} exited {done.returncode}:\n{done.stderr}")


def records(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def pipeline_runs(binary, env, seed, work):
    """Three runs through the pipeline; one row per payment (run, tx, score, features)."""
    rows = []
    with Simulator(binary, "--seed", str(seed), "--time-mode", "original") as sim:
        for run in range(RUNS):
            run_dir = work / f"seed{seed}-run{run}"
            fraudctl(
                binary,
                env,
                "extract",
                run_dir,
                "--api-url",
                sim.url,
                "--max-records",
                RUN_SIZE,
                "--poll-interval-ms",
                0,
                "--run-id",
                f"report-{seed}-{run}",
            )
            fraudctl(binary, env, "transform", run_dir, "--feature-spec", MODEL / "feature_spec.json")
            fraudctl(binary, env, "score", run_dir, "--model-dir", MODEL)
            fraudctl(binary, env, "load", run_dir)
            header, feats = records(run_dir / "features.jsonl")
            _, scored = records(run_dir / "scored.jsonl")
            columns = header["meta"]["feature_spec"]["columns"]
            for f, s in zip(feats, scored):
                rows.append({"run": run, **s["tx"], **s["score"], **dict(zip(columns, f["features"]))})
    return pd.DataFrame(rows), columns


def precision_recall(label, predicted):
    caught = int((label & predicted).sum())
    return {
        "precision": round(caught / max(int(predicted.sum()), 1), 3),
        "recall": round(caught / max(int(label.sum()), 1), 3),
        "frauds": int(label.sum()),
        "alerts": int(predicted.sum()),
        "caught": caught,
    }


def stream_figures(df):
    label, predicted = df["is_fraud"].astype(bool), df["predicted_fraud"].astype(bool)
    seen = df.groupby("cc_hash").size()
    bursts = df[label].groupby("cc_hash").size()
    legit_sum = df.loc[~label, "card_amt_sum_24h"]
    return {
        "payments": len(df),
        **precision_recall(label, predicted),
        **false_alarms(predicted[~label], day_of_week(df.loc[~label, "trans_time_ms"])),
        "cards": len(seen),
        "median_times_a_card_is_seen": float(seen.median()),
        "cards_seen_3_times_or_more": round(float((seen >= 3).mean()), 3),
        "compromised_cards": len(bursts),
        "frauds_per_compromised_card": round(float(bursts.mean()), 2),
        "legit_card_amt_sum_24h_quantiles": quantiles(legit_sum),
    }


def day_of_week(times_ms):
    """The UTC day of week (0 Monday) of epoch milliseconds, as the default spec's time zone."""
    return pd.Series(pd.to_datetime(np.asarray(times_ms), unit="ms", utc=True).dayofweek)


def false_alarms(alerted, days):
    """The share of legitimate payments alerted (`alerted`, one bool each, on `days`), overall
    and by day of week (0 Monday): the sample's legitimate payments fall on six calendar days
    (none on a Saturday, on a Monday only before 01:07), and default-v2, which read the day of
    week, alerted on ordinary Mondays, Fridays and Saturdays three to six times as often as on
    Tuesdays (model/MODEL_CARD.md)."""
    alerted = pd.Series(np.asarray(alerted, dtype=bool))
    by_day = alerted.groupby(np.asarray(days, dtype=int))
    return {
        "false_alarm_rate": round(float(alerted.mean()), 4),
        "false_alarm_rate_by_day_of_week": {
            int(day): {"legit": int(a.size), "rate": round(float(a.mean()), 4)} for day, a in by_day
        },
    }


def quantiles(values):
    return {str(q): round(float(values.quantile(q)), 0) for q in (0.25, 0.5, 0.75, 0.9, 0.95, 0.99)}


def history_now(df, stamps):
    """The card-history features (a DataFrame in df's order) as `transform` computes them with
    these stamps: a payment's history is its card's payments of the earlier runs and of its own
    run, those stamped before it (features.CardHistory, the training definitions)."""
    payments = [
        features.Payment(int(t), r.trans_num, round(r.amt * 100), r.category, r.merch_lat, r.merch_long)
        for t, r in zip(stamps, df.itertuples())
    ]
    runs = df["run"].to_numpy()
    out = [None] * len(df)
    for (card, run), idx in df.groupby(["cc_hash", "run"]).indices.items():
        of_card = df.index[df["cc_hash"] == card]
        history = features.CardHistory([payments[j] for j in of_card if runs[j] <= run])
        for i in idx:
            out[i] = history.features(payments[i])
    return pd.DataFrame(out)


def now_mode(df, columns, booster, threshold):
    """Precision, recall, false-alarm rate and cards in order when the same stream is served in
    last-day mode at each hour of the day, and the false-alarm rate by day over all 24 hours."""
    simulated = df["trans_time_ms"].to_numpy()
    served = np.arange(len(df)) * SERVE_INTERVAL_MS
    label = df["is_fraud"].astype(bool).to_numpy()
    by_hour, legit_alerted, legit_days = {}, [], []
    for hour in range(24):
        now = pd.Timestamp("2026-12-02", tz="UTC").value // 1_000_000 + hour * 3_600_000 + served
        stamps = now - (now - simulated) % DAY_MS
        moments = pd.to_datetime(stamps, unit="ms", utc=True)
        x = df[columns].copy()
        x["hour"] = moments.hour
        if "day_of_week" in columns:  # a model that reads it (default-v2 did)
            x["day_of_week"] = moments.dayofweek
        history = history_now(df, stamps)
        read = [name for name in columns if name in history.columns]
        x[read] = history[read].to_numpy()
        predicted = booster.predict(xgb.DMatrix(x.to_numpy(dtype=float), feature_names=columns)) >= threshold
        in_order = pd.Series(stamps).groupby(df["cc_hash"]).apply(lambda s: s.is_monotonic_increasing)
        figures = precision_recall(label, predicted)
        legit_alerted.append(predicted[~label])
        legit_days.append(moments.dayofweek[~label])
        by_hour[hour] = {k: figures[k] for k in ("precision", "recall")} | {
            "false_alarm_rate": round(float(predicted[~label].mean()), 4),
            "cards_in_order": round(float(in_order.mean()), 3),
        }
    return {
        "by_hour": by_hour,
        "all_hours": false_alarms(np.concatenate(legit_alerted), np.concatenate(legit_days)),
    }


def pooled(streams):
    """Precision, recall and false alarms of several seeds' pipeline runs taken together."""
    df = pd.concat(streams, ignore_index=True)
    label, predicted = df["is_fraud"].astype(bool), df["predicted_fraud"].astype(bool)
    return {
        "payments": len(df),
        **precision_recall(label, predicted),
        **false_alarms(predicted[~label], day_of_week(df.loc[~label, "trans_time_ms"])),
    }


# Every column of a payment but its time and identifiers, beyond the model's inputs: the
# customer's and the merchant's places, and the customer's state, city, job and the merchant's
# name (hashed into 64 columns each).
HASHED = ("state", "city", "job", "merchant")
EVERY_COLUMN_BLOCKS = [
    {"type": "numeric", "features": ["zip", "lat", "long", "merch_lat", "merch_long"]},
    *(
        {"type": "hashing", "fields": [field], "n_features": 64, "prefix": f"{field}_hash"}
        for field in HASHED
    ),
]


def per_payment_spec(work):
    """The default spec without its card_history block, then every other column of a payment;
    and the model's own per-payment columns."""
    spec = json.loads((MODEL / "feature_spec.json").read_text())
    spec["blocks"] = [b for b in spec["blocks"] if b["type"] != "card_history"]
    model_inputs = features.columns(spec)
    spec["blocks"] += EVERY_COLUMN_BLOCKS
    path = work / "per_payment_spec.json"
    path.write_text(json.dumps(spec))
    return path, spec, model_inputs


def adversarial(binary, env, sample, work, seed):
    """ROC AUC of a classifier telling the sample from generated payments: on the model's
    per-payment inputs, and on every column of a payment but its time and identifiers."""
    spec_path, spec, model_inputs = per_payment_spec(work)
    fraud_share = float(sample["is_fraud"].mean())
    run_dir = work / "adversarial"
    with Simulator(
        binary, "--seed", str(seed), "--time-mode", "original", "--fraud-rate", f"{fraud_share:.4f}"
    ) as sim:
        fraudctl(
            binary,
            env,
            "extract",
            run_dir,
            "--api-url",
            sim.url,
            "--max-records",
            len(sample),
            "--poll-interval-ms",
            0,
        )
    fraudctl(binary, env, "transform", run_dir, "--feature-spec", spec_path)
    header, feats = records(run_dir / "features.jsonl")
    columns = header["meta"]["feature_spec"]["columns"]
    generated = pd.DataFrame([f["features"] for f in feats], columns=columns)
    real = features.compute(spec, sample)[columns]
    x = pd.concat([real, generated], ignore_index=True).drop(columns=["log_amt"])
    y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    cards = np.r_[sample["cc_num"].astype(str), [f["tx"]["cc_hash"] for f in feats]]

    def auc(columns):
        return cross_validated_auc(x[columns], y, cards)

    groups = {"category": "category="} | {f: f"{f}_hash_" for f in HASHED}
    grouped = {name: [c for c in x.columns if c.startswith(prefix)] for name, prefix in groups.items()}
    singles = [c for c in x.columns if not any(c in g for g in grouped.values())]
    alone = {c: auc([c]) for c in singles} | {name: auc(g) for name, g in grouped.items()}
    return {
        "generated_fraud_share": round(fraud_share, 4),
        "rows": [len(real), len(generated)],
        "roc_auc_model_inputs": auc([c for c in model_inputs if c in x.columns]),
        "roc_auc_every_column": auc(list(x.columns)),
        "roc_auc_each_column_alone": alone,
    }


def cross_validated_auc(x, y, groups):
    scores = np.zeros(len(y))
    for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(x, y, groups):
        model = xgb.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1, n_jobs=2)
        model.fit(x.iloc[train], y[train])
        scores[test] = model.predict_proba(x.iloc[test])[:, 1]
    return round(float(roc_auc_score(y, scores)), 3)


def sample_figures(sample):
    spec = features.load_spec(MODEL / "feature_spec.json")
    sums = features.compute(spec, sample)["card_amt_sum_24h"]
    return {"legit_card_amt_sum_24h_quantiles": quantiles(sums[sample["is_fraud"] == 0])}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", required=True, type=Path, help="the data set's sample")
    parser.add_argument("--fraudctl", type=Path, default=REPO / "target" / "release" / "fraudctl")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[42], help="generator seeds (default 42, serve-payments' own)"
    )
    args = parser.parse_args()
    if "FRAUDCTL_DATABASE_URL" not in os.environ:
        sys.exit("generator_report: set FRAUDCTL_DATABASE_URL (see --help)")
    env = {**os.environ, "FRAUDCTL_PAN_HASH_KEY": secrets.token_hex(32)}
    subprocess.run(
        [str(args.fraudctl), "migrate", "--create-database"], env=env, check=True, capture_output=True
    )
    sample = features.read_transactions(args.csv)
    booster = xgb.Booster()
    booster.load_model(MODEL / "model.json")
    threshold = features.load_threshold(MODEL)
    report = {"sample": sample_figures(sample), "seeds": {}}
    with tempfile.TemporaryDirectory(prefix="fraudctl-generator-") as work:
        work = Path(work)
        streams = []
        for seed in args.seeds:
            df, columns = pipeline_runs(args.fraudctl, env, seed, work)
            streams.append(df)
            report["seeds"][seed] = {
                "pipeline": stream_figures(df),
                "now_mode": now_mode(df, columns, booster, threshold),
            }
        report["pooled"] = pooled(streams)
        report["adversarial"] = adversarial(args.fraudctl, env, sample, work, args.seeds[0] + 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
