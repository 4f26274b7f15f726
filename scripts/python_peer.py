#!/usr/bin/env python3
"""The Python peer of `make bench`: the pipeline fraudctl replaces, written the way a Python data
engineer would write it today, run on the same CSV and into the same `payments_scored`.

    FRAUDCTL_PAN_HASH_KEY=... .venv/bin/python scripts/python_peer.py --csv tx.csv \
        --database-url postgres://postgres@127.0.0.1:55432/fraudctl_bench

Four stages, each timed, printed as one JSON line on stdout (seconds, and the process's peak
resident memory in MB when each stage ended):
  read      pandas reads the CSV (features.read_transactions, as training does) and cleans it as
            `fraudctl extract` does where that is cheap in pandas: types and ranges, duplicate
            trans_nums, card-number-like digit runs masked in free text, the card number
            replaced by its last four digits and an HMAC-SHA256 (FRAUDCTL_PAN_HASH_KEY);
  features  the model's features by the project's own feature code (model/features.py, the
            definitions training uses, card history included: the batch is the history);
  predict   xgboost on the shipped model at the threshold, and the predicted frauds' three
            largest TreeSHAP contributions (pred_contribs) as their reasons;
  upsert    psycopg2's execute_values(INSERT … ON CONFLICT (trans_num) DO UPDATE SET …) in
            pages, one transaction, into the columns `fraudctl load` writes (read from
            src/load/sql/upsert.sql).
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import xgboost
from psycopg2.extras import Json, execute_values

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "model"))
import features  # noqa: E402  (needs the path above)

UPSERT_SQL = ROOT / "src" / "load" / "sql" / "upsert.sql"
KEY_VAR = "FRAUDCTL_PAN_HASH_KEY"
TOP_REASONS = 3
# A run of digits, grouped or not by single spaces or dashes; 11 or more digits is a card number
# (src/pan.rs) and is masked to its last four.
DIGIT_RUN = re.compile(r"\d(?:[ -]?\d)*")
LONG_DIGIT_RUN = r"\d(?:[ -]?\d){10}"
# A card number standing as a word: 11 to 19 digits, no letter or digit either side.
CARD_NUMBER_WORD = r"(?<![A-Za-z0-9])\d(?:[ -]?\d){10,18}(?![A-Za-z0-9])"
FREE_TEXT = ["merchant", "category", "city", "job"]
STRINGS = [*FREE_TEXT, "gender", "state", "trans_num", "dob"]
RANGES = {
    "lat": (-90, 90),
    "long": (-180, 180),
    "merch_lat": (-90, 90),
    "merch_long": (-180, 180),
    "zip": (0, 99_999),
    "city_pop": (0, 100_000_000),
    "amt": (0, 1_000_000),
}
TIME_RANGE = (pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC"))


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pan_key():
    key = os.environ.get(KEY_VAR, "").encode()
    if len(key) < 32 or len(set(key)) < 10:
        sys.exit(
            f"python_peer: {KEY_VAR} must be set to a secret of at least 32 bytes with 10 "
            "different ones (the key fraudctl hashes card numbers with)"
        )
    return key


# --- read ----------------------------------------------------------------------------------


def read(path, key):
    """The CSV's valid transactions (cleaned, card numbers protected) and how many were refused."""
    df = features.read_transactions(path)
    n = len(df)
    df["trans_time"] = pd.to_datetime(
        df["trans_date_trans_time"], format=features.TIME_FORMAT, utc=True, errors="coerce"
    )
    df = df[valid_rows(df)].drop_duplicates("trans_num")
    df = df.assign(**{c: mask_card_numbers(df[c]) for c in FREE_TEXT})
    digits = df["cc_num"].astype(str)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    return df.assign(cc_last4=digits.str[-4:], cc_hash=[hmac_hex(mac, d) for d in digits]), n - len(df)


def hmac_hex(mac, digits):
    one = mac.copy()
    one.update(digits.encode())
    return one.hexdigest()


def valid_rows(df):
    """Which rows pass extract's checks (src/transaction.rs) that pandas does in bulk."""
    ok = df[[*STRINGS, *RANGES, "cc_num", "trans_time"]].notna().all(axis=1)
    for c in STRINGS:
        text = df[c].astype(str)
        ok &= (text.str.strip() != "") & (text.str.len() <= 200)
    for c, (low, high) in RANGES.items():
        ok &= pd.to_numeric(df[c], errors="coerce").between(low, high)
    amt = pd.to_numeric(df["amt"], errors="coerce")
    cents = amt * 100
    ok &= (amt > 0) & ((cents.round() - cents).abs() <= 1e-6)
    ok &= df["cc_num"].astype(str).str.fullmatch(r"\d{11,19}")
    ok &= df["gender"].isin(["M", "F"]) & df["state"].astype(str).str.fullmatch("[A-Z]{2}")
    ok &= df["trans_num"].astype(str).str.fullmatch(r"[A-Za-z0-9_-]{1,64}")
    ok &= ~df["trans_num"].astype(str).str.contains(CARD_NUMBER_WORD)
    ok &= df["is_fraud"].isna() | df["is_fraud"].isin([0, 1])
    born = pd.to_datetime(df["dob"], format="%Y-%m-%d", errors="coerce")
    ok &= df["trans_time"].between(*TIME_RANGE, inclusive="left")
    ok &= (born.dt.year >= 1900) & (born < df["trans_time"].dt.tz_localize(None).dt.normalize())
    return ok


def mask_card_numbers(text):
    """Every run of 11 or more digits (grouped or not) down to "****" and its last four."""

    def mask(m):
        digits = re.sub(r"\D", "", m.group())
        return m.group() if len(digits) < 11 else "****" + digits[-4:]

    text = text.astype(str)
    suspect = text.str.contains(LONG_DIGIT_RUN)
    return text.mask(suspect, text[suspect].str.replace(DIGIT_RUN, mask, regex=True))


# --- features, predict -----------------------------------------------------------------------


def model_version(model_dir, spec):
    """The version fraudctl gives a local model: the spec's name @ the model file's digest."""
    digest = hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()
    return f"{spec['name']}@{digest[:12]}"


def predict(booster, X, threshold):
    """Probabilities, predicted labels and, for the predicted frauds, their reasons (None else)."""
    p = booster.predict(xgboost.DMatrix(X.to_numpy())).astype(np.float64)
    fraud = p >= threshold
    reasons = np.full(len(p), None, dtype=object)
    if fraud.any():
        frauds = X[fraud]
        contribs = booster.predict(xgboost.DMatrix(frauds.to_numpy()), pred_contribs=True)[:, :-1]
        reasons[fraud] = [
            Json(top_reasons(frauds.columns, row, c)) for row, c in zip(frauds.to_numpy(), contribs)
        ]
    return p, fraud, reasons


def top_reasons(names, values, contributions):
    """The largest positive contributions, largest first, in payments_scored.reasons' shape."""
    order = [i for i in np.argsort(-contributions, kind="stable") if contributions[i] > 0]
    return [
        {
            "feature": names[i],
            "value": None if np.isnan(values[i]) else float(values[i]),
            "contribution": float(contributions[i]),
            "text": f"{names[i]} = {values[i]:g}",
        }
        for i in order[:TOP_REASONS]
    ]


# --- upsert ----------------------------------------------------------------------------------


def load_columns():
    """The columns `fraudctl load` inserts, in its order (src/load/sql/upsert.sql)."""
    match = re.search(r"INSERT INTO payments_scored AS p \(([^)]*)\)", UPSERT_SQL.read_text())
    if not match:
        sys.exit(f"python_peer: no INSERT INTO payments_scored AS p (…) column list in {UPSERT_SQL}")
    return [c.strip() for c in match.group(1).split(",")]


def upsert_sql(columns):
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "trans_num")
    return (
        f"INSERT INTO payments_scored ({', '.join(columns)}) VALUES %s "
        f"ON CONFLICT (trans_num) DO UPDATE SET {updates}, updated_at = now()"
    )


def upsert(url, rows, page_size):
    """All rows in one transaction, page_size rows a statement."""
    columns = load_columns()
    missing = sorted(set(columns) - set(rows.columns))
    if missing:
        sys.exit(f"python_peer: {UPSERT_SQL} loads columns the peer does not make: {missing}")
    values = list(zip(*(rows[c].tolist() for c in columns)))
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        execute_values(cur, upsert_sql(columns), values, page_size=page_size)
    conn.close()


def table_rows(df, X, scored, meta):
    """The payments_scored rows: the transaction, what fraudctl derives, the score."""
    p, fraud, reasons = scored
    return pd.DataFrame(
        {
            "trans_num": df["trans_num"],
            "trans_time": df["trans_time"],
            "cc_last4": df["cc_last4"],
            "cc_hash": df["cc_hash"],
            "merchant": df["merchant"],
            "category": df["category"],
            "amt": df["amt"],
            "gender": df["gender"],
            "city": df["city"],
            "state": df["state"],
            "city_pop": df["city_pop"],
            "merch_lat": df["merch_lat"],
            "merch_long": df["merch_long"],
            "age_years": X["age"],
            "distance_km": X["distance_km"],
            "is_fraud_label": df["is_fraud"]
            .map({0: False, 1: True})
            .astype(object)
            .where(df["is_fraud"].notna(), None),
            "fraud_probability": p,
            "predicted_fraud": fraud,
            "reasons": reasons,
            # The model's inputs, NaN as NULL (psycopg2 sends a list as an array).
            "features": X.astype(object).where(X.notna(), None).values.tolist(),
            # No rules (docs/rules.md): what decided is the model.
            "rule_set": None,
            "decision": None,
            "decided_by_rule": None,
            "rules_matched": None,
            # No challenger in shadow.
            "challenger_model_version": None,
            "challenger_probability": None,
            "challenger_predicted_fraud": None,
            **meta,
        },
        index=df.index,
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", type=Path, required=True, help="transactions in the data set's layout")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FRAUDCTL_DATABASE_URL"),
        help="a database migrated by `fraudctl migrate` (FRAUDCTL_DATABASE_URL)",
    )
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model" / "default")
    parser.add_argument(
        "--threshold",
        type=float,
        help="default: the model's own, as fraudctl score (threshold.json in --model-dir)",
    )
    parser.add_argument("--page-size", type=int, default=1000, help="rows a statement (default 1000)")
    parser.add_argument("--run-id", default=None, help="default: python-peer-<UTC time>")
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("python_peer: give --database-url or set FRAUDCTL_DATABASE_URL")
    started = datetime.now(UTC)
    run_id = args.run_id or "python-peer-" + started.strftime("%Y%m%dT%H%M%SZ")
    spec = features.load_spec(args.model_dir / "feature_spec.json")
    if not {"age", "distance_km"} <= set(features.columns(spec)):
        sys.exit(
            "python_peer: payments_scored keeps age_years and distance_km, which the peer "
            "takes from the spec's age and distance_km features: this spec lacks them"
        )
    booster = xgboost.Booster(model_file=str(args.model_dir / "model.json"))
    threshold = features.load_threshold(args.model_dir) if args.threshold is None else args.threshold
    times, peaks = {}, {}

    def stage(name, work):
        start = time.perf_counter()
        out = work()
        times[name], peaks[name] = time.perf_counter() - start, peak_mb()
        return out

    key = pan_key()
    meta = {
        "threshold": threshold,
        "model_version": model_version(args.model_dir, spec),
        "scorer": "local",
        "needs_rescore": False,
        "run_id": run_id,
        "captured_at": started,
    }
    df, rejected = stage("read", lambda: read(args.csv, key))
    X = stage("features", lambda: features.compute(spec, df))
    scored = stage("predict", lambda: predict(booster, X, threshold))
    stage("upsert", lambda: upsert(args.database_url, table_rows(df, X, scored, meta), args.page_size))
    print(
        json.dumps(
            {
                "records": len(df),
                "rejected": rejected,
                "predicted_frauds": int(scored[1].sum()),
                "run_id": run_id,
                "seconds": times,
                "peak_mb": peaks,
            }
        )
    )


if __name__ == "__main__":
    main()
