"""Pure-Python implementation of docs/feature-spec.md.

Every value is computed row by row with Python floats and the `math` module, in the order the
document writes the formulas, so that `fraudctl transform` (Rust, same libm operations) gives
bit-identical features. The `card_history` block's integers (cents, milliseconds, counts) are
exact Python ints, converted to float once where the document says so.
"""

import json
import math
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import tzdata
from sklearn.utils import murmurhash3_32

SPEC_SCHEMA = "fraudctl.feature_spec"
NUMERIC_FEATURES = (
    "amt",
    "log_amt",
    "zip",
    "lat",
    "long",
    "city_pop",
    "log_city_pop",
    "merch_lat",
    "merch_long",
    "gender",
    "hour",
    "day_of_week",
    "age",
    "distance_km",
)
FIELDS = ("category", "state", "gender", "merchant", "job", "city")
EARTH_RADIUS_KM = 6371.0
GENDER_CODES = {"M": 0.0, "F": 1.0}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
HISTORY_FEATURES = (
    "card_count_1h",
    "card_count_24h",
    "card_count_7d",
    "card_count_30d",
    "card_amt_sum_1h",
    "card_amt_sum_24h",
    "card_amt_sum_7d",
    "card_amt_ratio_30d",
    "card_secs_since_prev",
    "card_km_from_prev",
    "card_kmh_from_prev",
    "card_categories_24h",
    "card_new_category_30d",
)
# Null (NaN) when the payment has no history; the other history features are then 0.
NULL_WHEN_NO_HISTORY = (
    "card_amt_ratio_30d",
    "card_secs_since_prev",
    "card_km_from_prev",
    "card_kmh_from_prev",
    "card_new_category_30d",
)
TZDATA_ZONES = frozenset(resources.files("tzdata").joinpath("zones").read_text().split())
WINDOWS_MS = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000}
BLOCK_KEYS = {  # type -> (required keys, optional keys)
    "numeric": ({"features"}, set()),
    "one_hot": ({"field", "categories"}, set()),
    "hashing": ({"fields", "n_features"}, {"alternate_sign", "prefix"}),
    "card_history": ({"features"}, set()),
}
FEATURE_NAMES = {"numeric": NUMERIC_FEATURES, "card_history": HISTORY_FEATURES}
INPUT_COLUMNS = (
    "trans_date_trans_time",
    "dob",
    "amt",
    "zip",
    "lat",
    "long",
    "city_pop",
    "merch_lat",
    "merch_long",
    "cc_num",
    "trans_num",
    *FIELDS,
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_transactions(path):
    """Reads a CSV in the data set's layout. Floats are parsed correctly rounded (as Rust's
    `str::parse::<f64>` does) and strings are kept as written (no "NA" → NaN guessing)."""
    return pd.read_csv(
        path,
        index_col=0,
        float_precision="round_trip",
        keep_default_na=False,
        na_values=[""],
        dtype={"trans_num": str, "zip": "int64"},
    )


def load_spec(path):
    """Reads and checks a feature spec file; raises ValueError naming the file on any problem."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        check_spec(spec)
    except ValueError as e:
        raise ValueError(f"feature spec {path}: {e}") from None
    return spec


THRESHOLD_FILE = "threshold.json"  # in a model directory, written by model/train.py
DEFAULT_THRESHOLD = 0.5  # a model directory without one, as `fraudctl score` reads it


def load_threshold(model_dir):
    """The probability from which `fraudctl score` predicts a fraud with the model of
    `model_dir`: its threshold.json (model/train.py), else DEFAULT_THRESHOLD."""
    path = Path(model_dir) / THRESHOLD_FILE
    if not path.exists():
        return DEFAULT_THRESHOLD
    threshold = json.loads(path.read_text(encoding="utf-8"))["threshold"]
    if not 0 <= threshold <= 1:
        raise ValueError(f"{path}: threshold {threshold} is not between 0 and 1")
    return threshold


@lru_cache
def zone_info(name):
    """The IANA zone of this exact name from the pinned tzdata package, not the machine's
    zoneinfo: the release fraudctl compiles in (src/zone.rs; a Rust test holds the two equal)."""
    if not isinstance(name, str) or name not in TZDATA_ZONES:
        raise ValueError(f"time_zone {name!r} is not an IANA time zone (tzdata {tzdata.IANA_VERSION})")
    with resources.files("tzdata.zoneinfo").joinpath(name).open("rb") as f:
        return ZoneInfo.from_file(f, key=name)


def check_spec(spec):
    """Raises ValueError on anything docs/feature-spec.md does not define."""
    if spec.get("schema") != SPEC_SCHEMA or spec.get("version") != 1:
        raise ValueError(f"is not {SPEC_SCHEMA} version 1")
    if set(spec) != {"schema", "version", "name", "time_zone", "blocks"}:
        raise ValueError("needs exactly the keys schema, version, name, time_zone, blocks")
    zone_info(spec["time_zone"])
    for i, block in enumerate(spec["blocks"]):
        kind = block.get("type")
        if kind not in BLOCK_KEYS:
            raise ValueError(f"block {i} has unknown type {kind!r}")
        required, optional = BLOCK_KEYS[kind]
        keys = set(block) - {"type"}
        unknown = keys - required - optional
        if unknown:
            raise ValueError(f"block {i} ({kind}) has unknown keys {sorted(unknown)}")
        if required - keys:
            raise ValueError(f"block {i} ({kind}) lacks keys {sorted(required - keys)}")
        for name in block.get("features", []):
            if name not in FEATURE_NAMES[kind]:
                raise ValueError(f"block {i} has unknown {kind} feature {name!r}")
        for field in block.get("fields", []) + [block.get("field", "category")]:
            if field not in FIELDS:
                raise ValueError(f"block {i} has unknown field {field!r}")
        if kind == "hashing" and not (
            isinstance(block["n_features"], int) and 1 <= block["n_features"] <= 2**20
        ):
            raise ValueError(f"block {i} n_features {block['n_features']!r} is not in 1..=1048576")
        if kind == "one_hot" and len(set(block["categories"])) != len(block["categories"]):
            raise ValueError(f"block {i} lists a category twice")


def columns(spec):
    """The spec's column names, in model order."""
    names = []
    for block in spec["blocks"]:
        if block["type"] in FEATURE_NAMES:
            names += block["features"]
        elif block["type"] == "one_hot":
            names += [f"{block['field']}={c}" for c in block["categories"]]
        else:
            prefix = block.get("prefix", "hash")
            names += [f"{prefix}_{i}" for i in range(block["n_features"])]
    return names


def rad(degrees):
    return degrees * math.pi / 180.0


def haversine_km(lat, long, merch_lat, merch_long):
    phi1, phi2 = rad(lat), rad(merch_lat)
    d_phi = rad(merch_lat - lat)
    d_lambda = rad(merch_long - long)
    a = math.sin(d_phi / 2.0) * math.sin(d_phi / 2.0) + math.cos(phi1) * math.cos(phi2) * math.sin(
        d_lambda / 2.0
    ) * math.sin(d_lambda / 2.0)
    return (2.0 * EARTH_RADIUS_KM) * math.asin(math.sqrt(a))


def hashed_index_and_sign(token, n_features, alternate_sign):
    """Column and ±1 that scikit-learn's FeatureHasher gives one string token."""
    h = murmurhash3_32(token, seed=0, positive=False)
    if h == -(2**31):
        index = (2**31 - 1 - (n_features - 1)) % n_features
    else:
        index = abs(h) % n_features
    return index, (-1.0 if alternate_sign and h < 0 else 1.0)


def numeric_value(name, row, local_time):
    if name in ("amt", "zip", "lat", "long", "city_pop", "merch_lat", "merch_long"):
        return float(row[name])
    if name == "log_amt":
        return math.log(1.0 + float(row["amt"]))
    if name == "log_city_pop":
        return math.log(1.0 + float(row["city_pop"]))
    if name == "gender":
        return GENDER_CODES[row["gender"]]
    if name == "hour":
        return float(local_time.hour)
    if name == "day_of_week":
        return float(local_time.weekday())
    if name == "age":
        return (local_time.date() - date.fromisoformat(row["dob"])).days / 365.25
    return haversine_km(
        float(row["lat"]), float(row["long"]), float(row["merch_lat"]), float(row["merch_long"])
    )


def utc_time(text):
    """A trans_date_trans_time, read as UTC."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def row_features(spec, row, zone, history=None):
    """The spec's feature vector (list of floats) for one transaction (a mapping of the CSV's
    columns) and, for `card_history` blocks, its card's history values (`CardHistory.features`)."""
    local_time = utc_time(row["trans_date_trans_time"]).astimezone(zone)
    out = []
    for block in spec["blocks"]:
        if block["type"] == "numeric":
            out += [numeric_value(name, row, local_time) for name in block["features"]]
        elif block["type"] == "card_history":
            out += [history[name] for name in block["features"]]
        elif block["type"] == "one_hot":
            value = str(row[block["field"]])
            out += [1.0 if value == c else 0.0 for c in block["categories"]]
        else:
            n = block["n_features"]
            hashed = [0.0] * n
            for field in block["fields"]:
                index, sign = hashed_index_and_sign(str(row[field]), n, block.get("alternate_sign", True))
                hashed[index] += sign
            out += hashed
    return out


class Payment(NamedTuple):
    """What the history features read of one payment: time (epoch ms), amount in whole cents."""

    time_ms: int
    trans_num: str
    cents: int
    category: str
    merch_lat: float
    merch_long: float


def payment_of(row):
    """The Payment of a transaction row. Refuses amounts that are not positive whole cents, as
    extract does: only then is A = round(amt × 100) the same integer in Rust and Python (never
    a tie at .5, where Python rounds half to even and Rust half away from zero)."""
    amt = float(row["amt"])
    cents = round(amt * 100.0)
    if amt <= 0.0 or abs(cents - amt * 100.0) > 1e-6:
        raise ValueError(
            f"transaction {row['trans_num']}: amt {amt} is not a positive amount "
            "in whole cents (extract rejects such records)"
        )
    elapsed = utc_time(row["trans_date_trans_time"]) - EPOCH
    return Payment(
        elapsed // timedelta(milliseconds=1),
        str(row["trans_num"]),
        cents,
        str(row["category"]),
        float(row["merch_lat"]),
        float(row["merch_long"]),
    )


def count_between(times, start_ms, end_ms):
    """How many of the sorted `times` are in [start_ms, end_ms)."""
    return bisect_left(times, end_ms) - bisect_left(times, start_ms)


class CardHistory:
    """One card's payments sorted by time, and what answers each window question
    by bisection rather than by a scan: the times, the running sum of cents, each category's
    times. A payment's history is then a few O(log n) lookups (a pair per category the card
    uses), whatever the card's volume."""

    def __init__(self, payments):
        self.payments = sorted(payments, key=lambda q: q.time_ms)
        self.times = [q.time_ms for q in self.payments]
        self.cents_before = list(accumulate((q.cents for q in self.payments), initial=0))
        self.category_times = defaultdict(list)
        for q in self.payments:
            self.category_times[q.category].append(q.time_ms)

    def features(self, p):
        """Every HISTORY_FEATURES value (a dict) of payment `p` of this card, from the card's
        payments strictly before p.time_ms and at most 30 days before (docs/feature-spec.md)."""
        t = p.time_ms
        end = bisect_left(self.times, t)  # payments at t itself (p, ties) are excluded
        start = {w: bisect_left(self.times, t - ms) for w, ms in WINDOWS_MS.items()}
        values = {f"card_count_{w}": float(end - start[w]) for w in WINDOWS_MS}
        for w in ("1h", "24h", "7d"):
            cents = self.cents_before[end] - self.cents_before[start[w]]
            values[f"card_amt_sum_{w}"] = float(cents) / 100.0
        values["card_categories_24h"] = float(
            sum(
                1
                for times in self.category_times.values()
                if count_between(times, t - WINDOWS_MS["24h"], t) > 0
            )
        )
        n = end - start["30d"]
        if n == 0:
            return {**values, **dict.fromkeys(NULL_WHEN_NO_HISTORY, math.nan)}
        total_cents = self.cents_before[end] - self.cents_before[start["30d"]]
        # prev: the latest payment; of several at that millisecond, the nearest merchant.
        latest = self.times[end - 1]
        elapsed_ms = t - latest
        km = min(
            haversine_km(q.merch_lat, q.merch_long, p.merch_lat, p.merch_long)
            for q in self.payments[bisect_left(self.times, latest) : end]
        )
        seen = count_between(self.category_times[p.category], t - WINDOWS_MS["30d"], t) > 0
        return {
            **values,
            "card_amt_ratio_30d": float(p.cents * n) / float(total_cents),
            "card_secs_since_prev": float(elapsed_ms) / 1000.0,
            "card_km_from_prev": km,
            "card_kmh_from_prev": km / (float(elapsed_ms) / 3600000.0),
            "card_new_category_30d": 0.0 if seen else 1.0,
        }


def card_histories(records):
    """The history values of every transaction (a list of dicts, in the order of `records`):
    a card's history is its rows among `records` (card = cc_num), which is what replaying them
    in time order through the pipeline gives."""
    counts = Counter(str(row["trans_num"]) for row in records)
    twice = sorted(t for t, n in counts.items() if n > 1)
    if twice:
        raise ValueError(
            f"trans_num {twice[:3]} appear more than once (the pipeline counts a "
            "payment once; drop the duplicates first)"
        )
    payments = [payment_of(row) for row in records]
    by_card = defaultdict(list)
    for row, p in zip(records, payments):
        by_card[row["cc_num"]].append(p)
    histories = {card: CardHistory(ps) for card, ps in by_card.items()}
    return [histories[row["cc_num"]].features(p) for row, p in zip(records, payments)]


def compute(spec, df):
    """Feature matrix (float64, one row per transaction of `df`, NaN where the spec says null)
    with the spec's columns, as a DataFrame indexed like `df`."""
    check_spec(spec)
    inputs = [c for c in INPUT_COLUMNS if c in df.columns]
    missing = [c for c in inputs if df[c].isna().any()]
    if missing:
        raise ValueError(
            f"transactions have missing values in {missing} (extract rejects such records; drop them first)"
        )
    zone = zone_info(spec["time_zone"])
    records = df.to_dict("records")
    if any(block["type"] == "card_history" for block in spec["blocks"]):
        histories = card_histories(records)
    else:
        histories = [None] * len(records)
    rows = [row_features(spec, row, zone, history) for row, history in zip(records, histories)]
    return pd.DataFrame(
        np.array(rows, dtype=np.float64).reshape(len(rows), -1), index=df.index, columns=columns(spec)
    )
