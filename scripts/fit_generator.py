#!/usr/bin/env python3
"""Fits the parameters of `fraudctl serve-payments`' synthetic generator to a sample of the data
set, and writes them as the small JSON file the binary embeds:

    .venv/bin/python scripts/fit_generator.py --csv ../shared/data/fraud_sample.csv \
        --out src/simulator/params.json

The generator follows the data set's own generative process (the Sparkov simulator): customers
with an age, a gender and a home city; each card lives one simulated day, either a day of
legitimate spending or, for a compromised card, a burst of frauds (Sparkov emits no legitimate
payment of a card on its fraud days); every payment draws a category from its kind (and, when
legitimate, the customer's age band and gender), an amount from that category's distribution,
a half of the day coupled to the category (Sparkov draws both from one random number) and an
hour within it; merchants lie uniformly within a square around the customer's home.

What is fitted, and from what (the sample's legitimate payments all fall on six dense days, its
frauds mostly on other days, so each statistic is taken where the sample shows it faithfully):

* `legit_day_payments`: how many payments a card's day holds, per profile (age band x gender:
  older customers pay less often). The model reads a card's spending in the 24 hours before a
  payment; over the profile's legitimate payments in the sample, q_j is the share with j earlier
  payments of their card in those 24 hours. A card that starts its day without history
  reproduces exactly that table when P(n > j) = q_j / q_0 (its k-th payment has k - 1 before it).
* `burst_frauds`: frauds per compromised card.
* per kind (`legit`, `fraud`): category weights per profile (age band x gender, shrunk towards
  the kind's overall weights by SHRINK pseudo-payments), each category's share of afternoon
  (12-23 h) payments, the hour weights within each half of the day, and QUANTILES amount
  quantiles per category (the generator interpolates between them in log scale, which keeps the
  few very large amounts as rare as in the sample) and, for legitimate payments, per age band
  too where the band has MIN_BAND_ROWS rows (the sample's 91 compromised cards are too few).
* `customers`: gender share, ages by gender (years at the card's first payment), home cities with
  their coordinates and population (weighted by the sample's cards), card-number prefixes and
  lengths, and the most frequent names, street suffixes and jobs (not model inputs).
* `merchants` (the most frequent per category) and `merchant_radius_degrees`, the largest
  merchant-to-home offset in latitude or longitude.

The output holds statistics and short lists, never the sample's rows: about 70 KB, half of it the
home cities.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA, VERSION = "fraudctl.generator_params", 1
AGE_BANDS = (25, 50)  # Sparkov's profiles: young adults, adults 25-50, 50 and over
QUANTILES = 65  # amount quantiles per cell: every 1/64 of the distribution
MIN_BAND_ROWS = 40
SHRINK = 30.0
TOP_NAMES, TOP_LAST_NAMES, TOP_JOBS, TOP_MERCHANTS, TOP_SUFFIXES = 40, 80, 60, 12, 40
DAY_MS = 86_400_000


def read(path):
    df = pd.read_csv(path, index_col=0, keep_default_na=False, na_values=[""])
    df["time"] = pd.to_datetime(df["trans_date_trans_time"])
    df["ms"] = df["time"].astype("int64") // 1_000_000
    df["hour"] = df["time"].dt.hour
    df["age"] = (df["time"] - pd.to_datetime(df["dob"])).dt.days / 365.25
    df["band"] = np.select([df["age"] < AGE_BANDS[0], df["age"] < AGE_BANDS[1]], ["young", "adult"], "senior")
    df["profile"] = df["band"] + "_" + df["gender"]
    return df.sort_values("ms", kind="stable").reset_index(drop=True)


def earlier_in_24h(df):
    """For each payment, the number of its card's payments in the 24 hours before it."""
    counts = pd.Series(0, index=df.index)
    for _, card in df.groupby("cc_num"):
        ms = card["ms"].to_numpy()
        counts[card.index] = np.searchsorted(ms, ms, side="left") - np.searchsorted(
            ms, ms - DAY_MS, side="left"
        )
    return counts


def legit_day_payments(df, profiles):
    """Per profile, P(n = 1), P(n = 2), …: the payments of a card's legitimate day (see the
    module doc)."""
    earlier = earlier_in_24h(df)[df["is_fraud"] == 0]
    return {p: day_payments(earlier[df["profile"] == p]) for p in profiles}


def day_payments(earlier):
    q = earlier.value_counts(normalize=True).sort_index()
    q = q.reindex(range(int(q.index.max()) + 2), fill_value=0.0)
    survival = np.minimum.accumulate(q.to_numpy() / q.iloc[0])  # P(n > j), non-increasing
    return rounded(survival[:-1] - survival[1:], 5)


def burst_frauds(frauds):
    sizes = frauds.groupby("cc_num").size()
    return [int((sizes == k).sum()) for k in range(1, int(sizes.max()) + 1)]


def shares(series, index):
    return series.value_counts().reindex(index, fill_value=0)


def kind_params(rows, categories, profiles, by_band):
    """Category weights per profile, afternoon shares, hour weights and amount quantiles (per
    category, and per age band too if `by_band`)."""
    overall = shares(rows["category"], categories)
    prior = overall / overall.sum() * SHRINK
    by_profile = {
        p: rounded(shares(rows.loc[rows["profile"] == p, "category"], categories) + prior, 2)
        for p in profiles
    }
    pm_share = {
        c: round(float((rows.loc[rows["category"] == c, "hour"] >= 12).mean()), 4)
        for c in categories
        if (rows["category"] == c).any()
    }
    return {
        "categories": {p: dict(zip(categories, w)) for p, w in by_profile.items()},
        "pm_share": pm_share,
        "hour_weights": [int(n) for n in shares(rows["hour"], range(24))],
        "amounts": {c: amount_quantiles(rows[rows["category"] == c], by_band) for c in pm_share},
    }


def amount_quantiles(rows, by_band):
    levels = np.linspace(0, 1, QUANTILES)
    cells = {"all": rounded(np.quantile(rows["amt"], levels), 2)}
    for band, group in rows.groupby("band") if by_band else ():
        if len(group) >= MIN_BAND_ROWS:
            cells[band] = rounded(np.quantile(group["amt"], levels), 2)
    return cells


def customers(df):
    cards = df.drop_duplicates("cc_num")  # the first payment of each card (df is in time order)
    digits = cards["cc_num"].astype(str)
    numbers = pd.DataFrame({"prefix": digits.str[:2], "length": digits.str.len()})
    numbers = numbers.value_counts().sort_index()
    ages = cards["age"].astype(int)
    youngest, oldest = int(ages.min()), int(ages.max())
    place = ["city", "state", "zip", "lat", "long", "city_pop"]
    cities = cards.groupby(place).size().reset_index(name="cards")
    return {
        "female_share": round(float((cards["gender"] == "F").mean()), 4),
        "youngest": youngest,
        "ages": {
            g: [int(n) for n in shares(ages[cards["gender"] == g], range(youngest, oldest + 1))]
            for g in ("F", "M")
        },
        "cities": [
            [r.city, r.state, int(r.zip), float(r.lat), float(r.long), int(r.city_pop), int(r.cards)]
            for r in cities.itertuples()
        ],
        "card_numbers": [[prefix, int(length), int(n)] for (prefix, length), n in numbers.items()],
        "first_names": {g: top(cards.loc[cards["gender"] == g, "first"], TOP_NAMES) for g in ("F", "M")},
        "last_names": top(cards["last"], TOP_LAST_NAMES),
        "street_suffixes": top(
            cards["street"].str.replace(r" (Suite|Apt\.) \d+$", "", regex=True).str.split().str[-1],
            TOP_SUFFIXES,
        ),
        "jobs": top(cards["job"], TOP_JOBS),
    }


def top(series, n):
    """The n most frequent values (ties broken by value, so the file is the same every time)."""
    counts = series.value_counts().rename_axis("value").reset_index(name="n")
    return sorted(counts.sort_values(["n", "value"], ascending=[False, True]).head(n)["value"])


def rounded(values, digits):
    return [round(float(v), digits) for v in values]


def fit(df):
    legit, frauds = df[df["is_fraud"] == 0], df[df["is_fraud"] == 1]
    categories = sorted(df["category"].unique())
    profiles = sorted(df["profile"].unique())
    offsets = np.maximum((df["merch_lat"] - df["lat"]).abs(), (df["merch_long"] - df["long"]).abs())
    return {
        "legit_day_payments": legit_day_payments(df, profiles),
        "burst_frauds": burst_frauds(frauds),
        "age_bands": {"young_below": AGE_BANDS[0], "adult_below": AGE_BANDS[1]},
        "legit": kind_params(legit, categories, profiles, by_band=True),
        "fraud": kind_params(frauds, categories, profiles, by_band=False),
        "customers": customers(df),
        "merchants": {c: top(df.loc[df["category"] == c, "merchant"], TOP_MERCHANTS) for c in categories},
        "merchant_radius_degrees": float(np.ceil(offsets.max() * 100) / 100),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", type=Path, required=True, help="a sample in the data set's CSV layout")
    parser.add_argument("--out", type=Path, required=True, help="the parameter file to write")
    args = parser.parse_args()
    df = read(args.csv)
    params = {
        "schema": SCHEMA,
        "version": VERSION,
        "fitted_from": {
            "file": args.csv.name,
            "sha256": hashlib.sha256(args.csv.read_bytes()).hexdigest(),
            "rows": len(df),
            "frauds": int(df["is_fraud"].sum()),
            "cards": int(df["cc_num"].nunique()),
            "by": "scripts/fit_generator.py",
        },
        **fit(df),
    }
    text = json.dumps(params, separators=(",", ":"), ensure_ascii=False) + "\n"
    args.out.write_text(text)
    days = {p: round(mean_count(w), 2) for p, w in params["legit_day_payments"].items()}
    print(
        f"wrote {args.out} ({len(text.encode()) / 1024:.1f} KB): a legitimate day holds on average "
        f"{days} payments, a burst {mean_count(params['burst_frauds']):.2f} frauds"
    )


def mean_count(weights):
    """The mean of a distribution of counts given by the weights of 1, 2, 3, …"""
    weights = np.asarray(weights, dtype=float)
    return float((weights * np.arange(1, len(weights) + 1)).sum() / weights.sum())


if __name__ == "__main__":
    main()
