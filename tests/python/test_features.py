"""features.py (the Python reference of docs/feature-spec.md) against scikit-learn and pandas."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ORIGINAL_SPEC
from sklearn.feature_extraction import FeatureHasher

from model import export_preprocess, features


def spec_of(*blocks, time_zone="UTC"):
    return {
        "schema": features.SPEC_SCHEMA,
        "version": 1,
        "name": "test",
        "time_zone": time_zone,
        "blocks": list(blocks),
    }


@pytest.mark.parametrize("n_features, alternate_sign", [(128, True), (1000, False), (7, True)])
def test_hashing_block_equals_feature_hasher(sample, n_features, alternate_sign):
    block = {
        "type": "hashing",
        "fields": ["merchant", "job"],
        "n_features": n_features,
        "alternate_sign": alternate_sign,
    }
    ours = features.compute(spec_of(block), sample).to_numpy()
    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=alternate_sign)
    theirs = hasher.transform(sample[["merchant", "job"]].astype(str).values).toarray()
    np.testing.assert_array_equal(ours, theirs)


def test_original_spec_equals_seed_preprocessing(sample, seed_transform):
    spec = features.load_spec(ORIGINAL_SPEC)
    ours = features.compute(spec, sample)
    theirs = seed_transform(sample)
    assert ours.shape == theirs.shape == (len(sample), 199)
    passthrough = spec["blocks"][-1]["features"]
    encoded = np.array([c not in passthrough for c in ours.columns])
    np.testing.assert_array_equal(ours.to_numpy()[:, encoded], theirs[:, encoded])
    np.testing.assert_allclose(ours.to_numpy()[:, ~encoded], theirs[:, ~encoded], rtol=1e-12, atol=0)


def test_export_reproduces_committed_spec(preprocess):
    assert export_preprocess.spec_of(preprocess) == json.loads(ORIGINAL_SPEC.read_text())


def test_numeric_features_match_pandas(sample):
    names = ["amt", "log_amt", "log_city_pop", "gender", "hour", "day_of_week", "age", "distance_km"]
    ours = features.compute(spec_of({"type": "numeric", "features": names}), sample)
    time = pd.to_datetime(sample["trans_date_trans_time"])
    days = (time.dt.normalize() - pd.to_datetime(sample["dob"])).dt.days
    np.testing.assert_array_equal(ours["amt"], sample["amt"])
    np.testing.assert_allclose(ours["log_amt"], np.log1p(sample["amt"]), rtol=1e-15)
    np.testing.assert_allclose(ours["log_city_pop"], np.log1p(sample["city_pop"]), rtol=1e-15)
    np.testing.assert_array_equal(ours["gender"], (sample["gender"] == "F").astype(float))
    np.testing.assert_array_equal(ours["hour"], time.dt.hour)
    np.testing.assert_array_equal(ours["day_of_week"], time.dt.dayofweek)
    np.testing.assert_array_equal(ours["age"], days / 365.25)
    lat1, lat2 = np.radians(sample["lat"]), np.radians(sample["merch_lat"])
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin(np.radians(sample["merch_long"] - sample["long"]) / 2) ** 2
    )
    np.testing.assert_allclose(ours["distance_km"], 2 * 6371.0 * np.arcsin(np.sqrt(a)), rtol=1e-9)


def test_time_zone_moves_hour_and_day(sample):
    row = sample.iloc[[0]]  # 2019-01-01 00:00:18 UTC, a Tuesday
    spec = spec_of({"type": "numeric", "features": ["hour", "day_of_week"]}, time_zone="America/New_York")
    assert features.compute(spec, row).iloc[0].tolist() == [19.0, 0.0]


@pytest.mark.parametrize(
    "block, message",
    [
        ({"type": "embedding", "field": "job"}, "unknown type 'embedding'"),
        ({"type": "numeric", "features": ["amt", "velocity_1h"]}, "'velocity_1h'"),
        ({"type": "one_hot", "field": "street", "categories": []}, "'street'"),
        ({"type": "hashing", "fields": ["job"], "n_features": 8, "seed": 1}, "unknown keys ['seed']"),
        ({"type": "one_hot", "field": "state"}, "lacks keys ['categories']"),
        ({"type": "hashing", "fields": ["job"], "n_features": 0}, "n_features 0 is not in"),
    ],
)
def test_spec_errors_name_the_problem(block, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        features.check_spec(spec_of(block))
