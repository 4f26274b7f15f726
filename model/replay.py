"""Replays the card-disjoint held-out split through the pipeline and measures the default model
there, as production would see it: the held-out payments in time order, cut into consecutive runs
of --run-size payments, each run `fraudctl extract --from-csv` → `transform` → `score` →
`load`, so that a run's card history comes from the earlier runs through the database and from
its own batch. The figures go in model/MODEL_CARD.md.

    FRAUDCTL_DATABASE_URL=postgres://postgres@127.0.0.1:55432/fraud_replay \\
        .venv/bin/python -m model.replay --csv ../shared/data/fraud_sample.csv

The database must be new (it is migrated, created if missing): a replay into a database that
already holds the payments would read them as history. Needs the fraudctl binary (--fraudctl,
default target/release/fraudctl); prints the metrics as JSON on stdout.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from model import evaluation, features, recipe

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "model" / "default"


def held_out_rows(csv_path):
    """The held-out split's rows of the CSV (the training split, recipe.split), in time order, as CSV lines."""
    df = features.read_transactions(csv_path)
    _, held = recipe.split(df)
    lines = Path(csv_path).read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    order = sorted(held, key=lambda i: (df["trans_date_trans_time"].iloc[i], i))
    return header, [body[i] for i in order]


def fraudctl(binary, env, stage, run_dir, *args):
    done = subprocess.run(
        [str(binary), stage, "--run-dir", str(run_dir), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"replay: fraudctl {stage} for {run_dir} exited {done.returncode}:\n{done.stderr}")


def replay(csv_path, binary, run_size, work, env):
    """Runs every run; returns (probability, predicted, label) of each held-out payment."""
    header, rows = held_out_rows(csv_path)
    scored = []
    for n, start in enumerate(range(0, len(rows), run_size)):
        run_dir = work / f"run{n:04d}"
        part = work / f"run{n:04d}.csv"
        part.write_text("\n".join([header, *rows[start : start + run_size]]) + "\n", encoding="utf-8")
        fraudctl(binary, env, "extract", run_dir, "--from-csv", part)
        fraudctl(binary, env, "transform", run_dir, "--feature-spec", MODEL / "feature_spec.json")
        fraudctl(binary, env, "score", run_dir, "--model-dir", MODEL)
        fraudctl(binary, env, "load", run_dir)
        lines = (run_dir / "scored.jsonl").read_text(encoding="utf-8").splitlines()[1:]
        for line in lines:
            record = json.loads(line)
            score = record["score"]
            scored.append(
                (
                    score["probability"],
                    score["predicted_fraud"],
                    bool(record["tx"]["is_fraud"]),
                    record["tx"]["trans_time_ms"],
                )
            )
    return scored, len(rows), n + 1


def metrics(scored, threshold):
    """The model card's held-out metrics (evaluation.held_out_metrics, as training measures them) of the replayed payments."""
    p = np.array([s[0] for s in scored])
    held = pd.DataFrame(
        {
            "is_fraud": [int(s[2]) for s in scored],
            "trans_date_trans_time": pd.to_datetime([s[3] for s in scored], unit="ms").strftime(
                features.TIME_FORMAT
            ),
        }
    )
    out = evaluation.held_out_metrics(held, p, threshold)
    out["predicted_frauds"] = int(sum(s[1] for s in scored))
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", required=True, type=Path, help="the data set's CSV (the sample)")
    parser.add_argument("--fraudctl", type=Path, default=REPO / "target" / "release" / "fraudctl")
    parser.add_argument("--run-size", type=int, default=100, help="payments per run (default 100)")
    args = parser.parse_args()
    if "FRAUDCTL_DATABASE_URL" not in os.environ:
        sys.exit("replay: set FRAUDCTL_DATABASE_URL to a new database (see --help)")
    env = {
        **os.environ,
        "FRAUDCTL_PAN_HASH_KEY": os.environ.get(
            "FRAUDCTL_PAN_HASH_KEY", "held-out-replay-key-0123456789abcdef"
        ),
    }
    subprocess.run(
        [str(args.fraudctl), "migrate", "--create-database"], env=env, check=True, capture_output=True
    )
    with tempfile.TemporaryDirectory(prefix="fraudctl-replay-") as work:
        scored, payments, runs = replay(args.csv, args.fraudctl, args.run_size, Path(work), env)
    result = {
        "payments": payments,
        "runs": runs,
        "run_size": args.run_size,
        **metrics(scored, features.load_threshold(MODEL)),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
