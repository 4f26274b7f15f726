#!/usr/bin/env python3
"""The Python peer of `make bench`: the pipeline fraudctl replaces, written the way a Python data
engineer would write it today, run on the same CSV and into the same `payments_scored`.

    FRAUDCTL_PAN_HASH_KEY=... .venv/bin/python -m scripts.python_peer --csv tx.csv \
        --database-url postgres://postgres@127.0.0.1:55432/fraudctl_bench

Four stages, each timed, printed as one JSON line on stdout (seconds, and the process's peak
resident memory in MB when each stage ended):
  read      pandas reads the CSV (features.read_transactions, as training does) and cleans it as
            `fraudctl extract` does where that is cheap in pandas: types and ranges, duplicate
            trans_nums, card-number-like digit runs masked in free text, the card number
            replaced by its last four digits and an HMAC-SHA256 (FRAUDCTL_PAN_HASH_KEY);
  features  the model's features over whole columns, no loop over the rows: numpy and pandas
            for the per-payment ones; the card history (the batch is the history) grouped by
            card and millisecond, its windows by pandas' time-based rolling sums closed on the
            left (strictly before each payment). The values are docs/feature-spec.md's to the
            bit, as fraudctl's and model/features.py's (the row-at-a-time definitions training
            uses);
  predict   xgboost on the shipped model at the threshold, and the predicted frauds' three
            largest TreeSHAP contributions (pred_contribs) as their reasons;
  upsert    the rows as CSV (pandas' to_csv, a page of rows at a time) COPY'd by psycopg2 into a
            temporary table, then one INSERT … SELECT … ON CONFLICT (trans_num) DO UPDATE SET …
            into payments_scored, in one transaction: the columns `fraudctl load` writes (read
            from src/load/sql/upsert.sql). (The peer of 2026-12-02 sent the rows through
            execute_values' INSERT … ON CONFLICT statements, four times slower: BENCHMARKS.md.)
"""

import argparse
import hashlib
import hmac
import io
import json
import math
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
from psycopg2.extras import Json

from model import features

ROOT = Path(__file__).resolve().parent.parent

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


# --- features --------------------------------------------------------------------------------
# The features as a pandas user computes them: column by column, no loop over the rows; the card
# history grouped by card, its windows by time-based rolling sums. The values are
# docs/feature-spec.md's to the bit, the same as model/features.py's and fraudctl's.

# What each history feature reads: a window, and whether it reads that window's categories too.
READS = {
    **{f"card_count_{w}": (w, False) for w in ("1h", "24h", "7d", "30d")},
    **{f"card_amt_sum_{w}": (w, False) for w in ("1h", "24h", "7d")},
    **dict.fromkeys(
        ("card_amt_ratio_30d", "card_secs_since_prev", "card_km_from_prev", "card_kmh_from_prev"),
        ("30d", False),
    ),
    "card_categories_24h": ("24h", True),
    "card_new_category_30d": ("30d", True),
}
AS_GIVEN = ("amt", "zip", "lat", "long", "city_pop", "merch_lat", "merch_long")


def compute_features(spec, df):
    """The spec's feature matrix: features.compute(spec, df)'s columns and values, block by block
    over whole columns."""
    features.check_spec(spec)
    zone = features.zone_info(spec["time_zone"])
    history = [n for block in spec["blocks"] if block["type"] == "card_history" for n in block["features"]]
    values = card_history(df, history) if history else {}
    for block in spec["blocks"]:
        if block["type"] == "numeric":
            values.update(numeric_values(block["features"], df, zone))
        elif block["type"] == "one_hot":
            given = df[block["field"]].astype(str).to_numpy()
            values.update(
                {f"{block['field']}={c}": (given == c).astype(np.float64) for c in block["categories"]}
            )
        elif block["type"] == "hashing":
            values.update(hashed_values(block, df))
    return pd.DataFrame(values, index=df.index)[features.columns(spec)]


def numeric_values(names, df, zone):
    """The numeric block's features (docs/feature-spec.md) as {name: array}."""

    def given(name):
        return df[name].to_numpy(np.float64)

    local = df["trans_time"].dt.tz_convert(zone)
    born = pd.to_datetime(df["dob"], format="%Y-%m-%d")
    derived = {
        "log_amt": lambda: libm(math.log, 1.0 + given("amt")),
        "log_city_pop": lambda: libm(math.log, 1.0 + given("city_pop")),
        "gender": lambda: df["gender"].map(features.GENDER_CODES).to_numpy(np.float64),
        "hour": lambda: local.dt.hour.to_numpy(np.float64),
        "day_of_week": lambda: local.dt.weekday.to_numpy(np.float64),
        "age": lambda: (local.dt.tz_localize(None).dt.normalize() - born).dt.days.to_numpy() / 365.25,
        "distance_km": lambda: haversine_km(*(given(c) for c in ("lat", "long", "merch_lat", "merch_long"))),
    }
    return {n: given(n) if n in AS_GIVEN else derived[n]() for n in names}


def hashed_values(block, df):
    """The hashing block's columns: each distinct string's column and sign computed once."""
    n = block["n_features"]
    out = np.zeros((len(df), n))
    rows = np.arange(len(df))
    for field in block["fields"]:  # a field adds one token a row: no row twice in one +=
        tokens, distinct = pd.factorize(df[field].astype(str))
        hashed = [features.hashed_index_and_sign(t, n, block.get("alternate_sign", True)) for t in distinct]
        index_sign = np.array(hashed, dtype=np.float64).reshape(-1, 2)[tokens]
        out[rows, index_sign[:, 0].astype(np.int64)] += index_sign[:, 1]
    prefix = block.get("prefix", "hash")
    return {f"{prefix}_{i}": out[:, i] for i in range(n)}


def libm(function, values):
    """`function` (math's: the C library's, as fraudctl's) over an array. numpy's own log and
    asin, vectorised for AVX-512, differ from the C library's in the last bit for about a
    quarter of the values, and the features must equal fraudctl's to the bit."""
    return np.fromiter(map(function, values), np.float64, len(values))


def card_history(df, names):
    """The card-history features `names` of every payment of `df` (docs/feature-spec.md), as
    {name: array in df's row order}; the definitions' integers (cents, milliseconds, counts)
    stay exact. Payments at the same millisecond are not in each other's history: a card's
    payments are summed per millisecond first (its "moments", groupby card and time), each
    moment's windows are the sums over the card's moments in [t - w, t) (a time-based rolling
    window closed on the left: strictly before), and each payment reads its moment's."""
    category, kinds = pd.factorize(df["category"].astype(str))
    pays = pd.DataFrame(
        {
            "card": df["cc_num"].to_numpy(),
            "ms": df["trans_time"].astype("int64").to_numpy() // 1_000_000,
            "cents": np.rint(df["amt"].to_numpy(np.float64) * 100.0).astype(np.int64),
            "category": category,
            "merch_lat": df["merch_lat"].to_numpy(np.float64),
            "merch_long": df["merch_long"].to_numpy(np.float64),
        }
    )
    by_moment = pays.groupby(["card", "ms"], sort=True)
    moment = by_moment.ngroup().to_numpy()  # each payment's moment, numbered in the moments' order
    moments = by_moment.agg(n=("cents", "size"), cents=("cents", "sum")).reset_index()
    windows = {}  # the windows the features read: {window: whether its categories too}
    for name in names:
        w, reads_categories = READS[name]
        windows[w] = windows.get(w, False) or reads_categories
    if any(windows.values()):
        counts = np.zeros((len(moments), len(kinds)))  # each moment's payments of each category
        np.add.at(counts, (moment, category), 1.0)
    sums = {}
    for w, reads_categories in windows.items():
        values = moments[["n", "cents"]].to_numpy(np.float64)
        if reads_categories:
            values = np.hstack([values, counts])
        sums[w] = rolling_before(moments, values, features.WINDOWS_MS[w])[moment]
    prev_ms = moments.groupby("card")["ms"].shift().to_numpy()[moment]  # NaN: the card's first
    values = history_values(pays, sums, prev_ms, with_km="card_km_from_prev" in names)
    return {name: values[name] for name in names}


def rolling_before(moments, values, ms):
    """Each moment's sums of `values` (a row a moment) over its card's moments in [t - ms, t):
    groupby card, rolling by time closed on the left, so the moment itself is out. A card of a
    single moment has nothing before it (zeros) and is left out of the rolling: pandas runs a
    groupby's rolling group by group in Python (36 s a window for the benchmark's million cards
    paying once, 2026-12-06), which the cards with nothing to roll need not pay."""
    out = np.zeros(values.shape)
    several = moments["card"].duplicated(keep=False).to_numpy()
    if several.any():
        columns = [f"v{i}" for i in range(values.shape[1])]
        frame = pd.DataFrame(values[several], columns=columns).assign(
            card=moments["card"].to_numpy()[several],
            at=pd.to_datetime(moments["ms"].to_numpy()[several], unit="ms"),
        )
        window = frame.groupby("card", sort=True).rolling(
            pd.Timedelta(milliseconds=ms), on="at", closed="left"
        )
        # Sorted by card then time, the frame's rows are in the order the groups come out; the
        # columns come out sorted by name (v10 before v2).
        out[several] = window[columns].sum()[columns].fillna(0.0).to_numpy()
    return out


def history_values(pays, sums, prev_ms, with_km):
    """Every history feature the window sums give (sums[w], a row a payment: the count, the
    cents, then each category's count if read), by docs/feature-spec.md's formulas."""
    values = {}
    for w, s in sums.items():
        values[f"card_count_{w}"] = s[:, 0]
        values[f"card_amt_sum_{w}"] = s[:, 1] / 100.0
    if sums.get("24h", np.empty((0, 0))).shape[1] > 2:
        values["card_categories_24h"] = (sums["24h"][:, 2:] > 0).sum(axis=1).astype(np.float64)
    if "30d" not in sums:
        return values
    s = sums["30d"]
    none = s[:, 0] == 0  # no history in 30 days: the features below are null
    elapsed_ms = pays["ms"].to_numpy() - prev_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        values["card_amt_ratio_30d"] = (pays["cents"].to_numpy() * s[:, 0].astype(np.int64)) / s[:, 1]
        values["card_secs_since_prev"] = elapsed_ms / 1000.0
        if with_km:
            values["card_km_from_prev"] = km_from_prev(pays, prev_ms, none)
            values["card_kmh_from_prev"] = values["card_km_from_prev"] / (elapsed_ms / 3600000.0)
    if s.shape[1] > 2:
        seen = s[np.arange(len(s)), 2 + pays["category"].to_numpy()] > 0
        values["card_new_category_30d"] = np.where(seen, 0.0, 1.0)
    for name in features.NULL_WHEN_NO_HISTORY:
        if name in values:
            values[name] = np.where(none, np.nan, values[name])
    return values


def km_from_prev(pays, prev_ms, none):
    """card_km_from_prev: from the merchant of each payment with history to the nearest of the
    merchants its card was paid at, at its latest earlier millisecond (a merge on card and time)."""
    p = np.flatnonzero(~none)
    wanted = pd.DataFrame({"p": p, "card": pays["card"].to_numpy()[p], "ms": prev_ms[p].astype(np.int64)})
    pairs = wanted.merge(pays[["card", "ms", "merch_lat", "merch_long"]], on=["card", "ms"])
    i = pairs["p"].to_numpy()
    km = haversine_km(
        pairs["merch_lat"].to_numpy(),
        pairs["merch_long"].to_numpy(),
        pays["merch_lat"].to_numpy()[i],
        pays["merch_long"].to_numpy()[i],
    )
    nearest = pd.Series(km).groupby(i).min()
    out = np.full(len(pays), np.nan)
    out[nearest.index.to_numpy()] = nearest.to_numpy()
    return out


def haversine_km(lat, long, merch_lat, merch_long):
    """features.haversine_km over arrays: the same operations in the same order, asin the C
    library's (libm)."""
    rad = features.rad
    phi1, phi2 = rad(lat), rad(merch_lat)
    d_phi, d_lambda = rad(merch_lat - lat), rad(merch_long - long)
    a = np.sin(d_phi / 2.0) * np.sin(d_phi / 2.0) + np.cos(phi1) * np.cos(phi2) * np.sin(
        d_lambda / 2.0
    ) * np.sin(d_lambda / 2.0)
    return (2.0 * features.EARTH_RADIUS_KM) * libm(math.asin, np.sqrt(a))


# --- predict ---------------------------------------------------------------------------------


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
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "trans_num")
    return (
        f"INSERT INTO payments_scored ({names}) SELECT {names} FROM peer_staging "
        f"ON CONFLICT (trans_num) DO UPDATE SET {updates}, updated_at = now()"
    )


def csv_cells(rows, columns):
    """The rows as COPY's CSV reads them: JSON as its text, the arrays as PostgreSQL's array
    literals, None and NaN as NULL (an empty cell)."""
    cells = rows[columns].copy()
    cells["reasons"] = [None if r is None else json.dumps(r.adapted) for r in cells["reasons"]]
    cells["features"] = [
        "{" + ",".join("NULL" if v is None else repr(v) for v in f) + "}" for f in cells["features"]
    ]
    return cells


def upsert(url, rows, page_size):
    """All rows in one transaction: COPY'd page_size rows at a time into a temporary table,
    then upserted by one statement."""
    columns = load_columns()
    missing = sorted(set(columns) - set(rows.columns))
    if missing:
        sys.exit(f"python_peer: {UPSERT_SQL} loads columns the peer does not make: {missing}")
    names = ", ".join(columns)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMPORARY TABLE peer_staging ON COMMIT DROP AS "
            f"SELECT {names} FROM payments_scored WITH NO DATA"
        )
        for start in range(0, len(rows), page_size):
            page = csv_cells(rows.iloc[start : start + page_size], columns)
            text = io.StringIO(page.to_csv(index=False, header=False))
            cur.copy_expert(f"COPY peer_staging ({names}) FROM STDIN WITH (FORMAT csv)", text)
        cur.execute(upsert_sql(columns))
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
    parser.add_argument("--page-size", type=int, default=100_000, help="rows a COPY (default 100,000)")
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
    X = stage("features", lambda: compute_features(spec, df))
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
