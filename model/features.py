"""Pure-Python implementation of docs/feature-spec.md.

Every value is computed row by row with Python floats and the `math` module, in the order the
document writes the formulas, so that `fraudctl transform` (Rust, same libm operations) gives
bit-identical features.
"""
import json
import math
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sklearn.utils import murmurhash3_32

SPEC_SCHEMA = "fraudctl.feature_spec"
NUMERIC_FEATURES = (
    "amt", "log_amt", "zip", "lat", "long", "city_pop", "log_city_pop", "merch_lat",
    "merch_long", "gender", "hour", "day_of_week", "age", "distance_km",
)
FIELDS = ("category", "state", "gender", "merchant", "job", "city")
EARTH_RADIUS_KM = 6371.0
GENDER_CODES = {"M": 0.0, "F": 1.0}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BLOCK_KEYS = {  # type -> (required keys, optional keys)
    "numeric": ({"features"}, set()),
    "one_hot": ({"field", "categories"}, set()),
    "hashing": ({"fields", "n_features"}, {"alternate_sign", "prefix"}),
}
INPUT_COLUMNS = ("trans_date_trans_time", "dob", "amt", "zip", "lat", "long", "city_pop",
                 "merch_lat", "merch_long", *FIELDS)


def read_transactions(path):
    """Reads a CSV in the data set's layout. Floats are parsed correctly rounded (as Rust's
    `str::parse::<f64>` does) and strings are kept as written (no "NA" → NaN guessing)."""
    return pd.read_csv(path, index_col=0, float_precision="round_trip", keep_default_na=False,
                       na_values=[""], dtype={"trans_num": str, "zip": "int64"})


def load_spec(path):
    """Reads and checks a feature spec file; raises ValueError naming the file on any problem."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        check_spec(spec)
    except ValueError as e:
        raise ValueError(f"feature spec {path}: {e}") from None
    return spec


def check_spec(spec):
    """Raises ValueError on anything docs/feature-spec.md does not define."""
    if spec.get("schema") != SPEC_SCHEMA or spec.get("version") != 1:
        raise ValueError(f"is not {SPEC_SCHEMA} version 1")
    if set(spec) != {"schema", "version", "name", "time_zone", "blocks"}:
        raise ValueError("needs exactly the keys schema, version, name, time_zone, blocks")
    try:
        ZoneInfo(spec["time_zone"])
    except (KeyError, ValueError):
        raise ValueError(f"time_zone {spec['time_zone']!r} is not an IANA time zone") from None
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
            if name not in NUMERIC_FEATURES:
                raise ValueError(f"block {i} has unknown numeric feature {name!r}")
        for field in block.get("fields", []) + [block.get("field", "category")]:
            if field not in FIELDS:
                raise ValueError(f"block {i} has unknown field {field!r}")
        if kind == "hashing" and not (isinstance(block["n_features"], int)
                                      and 1 <= block["n_features"] <= 2**20):
            raise ValueError(f"block {i} n_features {block['n_features']!r} is not in 1..=1048576")
        if kind == "one_hot" and len(set(block["categories"])) != len(block["categories"]):
            raise ValueError(f"block {i} lists a category twice")


def columns(spec):
    """The spec's column names, in model order."""
    names = []
    for block in spec["blocks"]:
        if block["type"] == "numeric":
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
    a = (math.sin(d_phi / 2.0) * math.sin(d_phi / 2.0)
         + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2.0) * math.sin(d_lambda / 2.0))
    return (2.0 * EARTH_RADIUS_KM) * math.asin(math.sqrt(a))


def hashed_index_and_sign(token, n_features, alternate_sign):
    """Column and ±1 that scikit-learn's FeatureHasher gives one string token."""
    h = murmurhash3_32(token, seed=0, positive=False)
    if h == -2**31:
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
    return haversine_km(float(row["lat"]), float(row["long"]),
                        float(row["merch_lat"]), float(row["merch_long"]))


def row_features(spec, row, zone):
    """The spec's feature vector (list of floats) for one transaction (a mapping of the CSV's
    columns); the transaction time is trans_date_trans_time read as UTC."""
    utc = datetime.strptime(row["trans_date_trans_time"], TIME_FORMAT).replace(tzinfo=timezone.utc)
    local_time = utc.astimezone(zone)
    out = []
    for block in spec["blocks"]:
        if block["type"] == "numeric":
            out += [numeric_value(name, row, local_time) for name in block["features"]]
        elif block["type"] == "one_hot":
            value = str(row[block["field"]])
            out += [1.0 if value == c else 0.0 for c in block["categories"]]
        else:
            n = block["n_features"]
            hashed = [0.0] * n
            for field in block["fields"]:
                index, sign = hashed_index_and_sign(str(row[field]), n,
                                                    block.get("alternate_sign", True))
                hashed[index] += sign
            out += hashed
    return out


def compute(spec, df):
    """Feature matrix (float64, one row per transaction of `df`) with the spec's columns, as a
    DataFrame indexed like `df`."""
    check_spec(spec)
    inputs = [c for c in INPUT_COLUMNS if c in df.columns]
    missing = [c for c in inputs if df[c].isna().any()]
    if missing:
        raise ValueError(f"transactions have missing values in {missing} "
                         "(extract rejects such records; drop them first)")
    zone = ZoneInfo(spec["time_zone"])
    rows = [row_features(spec, row, zone) for row in df.to_dict("records")]
    return pd.DataFrame(np.array(rows, dtype=np.float64).reshape(len(rows), -1),
                        index=df.index, columns=columns(spec))
