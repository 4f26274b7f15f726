"""The card_history block of features.py (docs/feature-spec.md, "card_history block"): hand-made
cases whose answers are known, point-in-time properties on the real sample, and the sample
against a direct transcription of the document's table."""

import math
import re
import time

import numpy as np
import pandas as pd
import pytest

from model import features

EVERY = list(features.HISTORY_FEATURES)
SPEC = {
    "schema": features.SPEC_SCHEMA,
    "version": 1,
    "name": "test",
    "time_zone": "UTC",
    "blocks": [{"type": "card_history", "features": EVERY}],
}
T = pd.Timestamp("2020-03-10 12:00:00")  # the time of the payment under test in hand-made cases


def pay(when, trans_num, amt=10.0, card=1, category="food_dining", merch=(40.0, -75.0)):
    """One transaction with what the history reads; `when` is a Timestamp."""
    return {
        "trans_date_trans_time": when.strftime(features.TIME_FORMAT),
        "cc_num": card,
        "trans_num": trans_num,
        "amt": amt,
        "category": category,
        "merch_lat": merch[0],
        "merch_long": merch[1],
    }


def history(*rows):
    """The history features of hand-made transactions, one row per trans_num."""
    df = pd.DataFrame(list(rows))
    return features.compute(SPEC, df).set_axis(df["trans_num"])


def bits(frame):
    """Values as their 64-bit patterns, so that equality is bit for bit (NaN equal to NaN)."""
    return frame.to_numpy(dtype=np.float64).view(np.int64)


def test_empty_history_gives_zeros_and_nulls():
    values = history(pay(T, "p")).loc["p"]
    for name in EVERY:
        if name in features.NULL_WHEN_NO_HISTORY:
            assert math.isnan(values[name]), name
        else:
            assert values[name] == 0.0, name


def test_payments_at_the_same_millisecond_are_not_in_each_others_history():
    later = T + pd.Timedelta(seconds=90)
    values = history(
        pay(T, "a1", 10.0, merch=(41.0, -75.0)),
        pay(T, "B2", 20.0, merch=(42.0, -76.0)),
        pay(later, "p", 45.0, merch=(40.0, -75.0)),
    )
    assert values.loc["a1", "card_count_30d"] == values.loc["B2", "card_count_30d"] == 0.0
    p = values.loc["p"]
    assert p["card_count_1h"] == 2.0 and p["card_secs_since_prev"] == 90.0
    # prev is the latest payment; of the two at that millisecond, the nearer merchant (a1's).
    assert p["card_km_from_prev"] == features.haversine_km(41.0, -75.0, 40.0, -75.0)
    assert p["card_km_from_prev"] < features.haversine_km(42.0, -76.0, 40.0, -75.0)
    assert p["card_kmh_from_prev"] == p["card_km_from_prev"] / (90000 / 3600000.0)
    assert p["card_amt_ratio_30d"] == float(4500 * 2) / float(3000)


@pytest.mark.parametrize("window, ms", list(features.WINDOWS_MS.items()))
def test_window_includes_its_start_and_excludes_the_payment_time(window, ms):
    edge = T - pd.Timedelta(milliseconds=ms)
    values = history(
        pay(edge - pd.Timedelta(seconds=1), "before", 1.00),
        pay(edge, "edge", 2.00),
        pay(T, "tie", 4.00),
        pay(T, "p", 8.00),
    ).loc["p"]
    assert values[f"card_count_{window}"] == 1.0
    if window != "30d":
        assert values[f"card_amt_sum_{window}"] == 2.0


def test_thirty_day_horizon_ends_history():
    just_out = T - pd.Timedelta(milliseconds=features.WINDOWS_MS["30d"]) - pd.Timedelta(seconds=1)
    values = history(pay(just_out, "old", category="travel"), pay(T, "p", category="travel")).loc["p"]
    assert values["card_count_30d"] == 0.0
    assert math.isnan(values["card_secs_since_prev"])
    assert math.isnan(values["card_new_category_30d"])


def test_amounts_are_summed_in_whole_cents():
    hour = pd.Timedelta(hours=1)
    values = history(pay(T - 2 * hour, "a", 0.10), pay(T - hour, "b", 0.20), pay(T, "p", 0.30)).loc["p"]
    assert 0.1 + 0.2 != 0.3 and values["card_amt_sum_24h"] == 0.3
    assert values["card_amt_ratio_30d"] == float(30 * 2) / float(30)


def test_categories_in_24_hours_and_new_category_in_30_days():
    hour = pd.Timedelta(hours=1)
    values = history(
        pay(T - 25 * hour, "a", category="travel"),
        pay(T - 3 * hour, "b", category="home"),
        pay(T - 2 * hour, "c", category="home"),
        pay(T - hour, "d", category="misc_pos"),
        pay(T, "p", category="travel"),
        pay(T, "q", category="kids_pets"),
    )
    assert values.loc["p", "card_categories_24h"] == 2.0
    assert values.loc["p", "card_new_category_30d"] == 0.0  # travel, 25 hours before
    assert values.loc["q", "card_new_category_30d"] == 1.0


def test_rows_out_of_order_give_the_same_features(sample):
    shuffled = sample.sample(frac=1.0, random_state=7)
    ours = features.compute(SPEC, shuffled).set_axis(shuffled["trans_num"])
    reference = features.compute(SPEC, sample).set_axis(sample["trans_num"])
    np.testing.assert_array_equal(bits(ours.loc[reference.index]), bits(reference))


def test_a_later_payment_never_changes_an_earlier_ones_features(sample):
    """Each card gets payments at its last payment's time (a tie), 1 s and 2 days after it."""
    last = sample.sort_values("trans_date_trans_time").groupby("cc_num").tail(1)
    last_time = pd.to_datetime(last["trans_date_trans_time"])
    added = [
        last.assign(
            trans_date_trans_time=(last_time + pd.Timedelta(step)).dt.strftime(features.TIME_FORMAT),
            trans_num=last["trans_num"] + "-" + step,
        )
        for step in ("0s", "1s", "2D")
    ]
    rows = pd.concat([sample, *added])
    extended = features.compute(SPEC, rows).set_axis(rows["trans_num"])
    before = features.compute(SPEC, sample)
    np.testing.assert_array_equal(bits(extended.iloc[: len(sample)]), bits(before))
    # The new payments do see history: the one a second later sees the last and the tie.
    assert (extended.loc[added[1]["trans_num"], "card_count_1h"] >= 2.0).all()


def test_other_cards_never_matter(sample):
    alone = pd.concat(
        [features.compute(SPEC, rows).set_axis(rows["trans_num"]) for _, rows in sample.groupby("cc_num")]
    )
    together = features.compute(SPEC, sample).set_axis(sample["trans_num"])
    np.testing.assert_array_equal(bits(alone.loc[together.index]), bits(together))


def spec_transcription(card_rows, p):
    """The document's table, written out directly (a scan over the card's rows): a second
    reading of the contract to check the bisecting implementation against."""
    t, window = p.time_ms, features.WINDOWS_MS
    h = sorted((q for q in card_rows if t - window["30d"] <= q.time_ms < t), key=lambda q: q.time_ms)
    within = {w: [q for q in h if q.time_ms >= t - ms] for w, ms in window.items()}
    values = {f"card_count_{w}": float(len(qs)) for w, qs in within.items()}
    values.update({f"card_amt_sum_{w}": sum(q.cents for q in within[w]) / 100.0 for w in ("1h", "24h", "7d")})
    values["card_categories_24h"] = float(len({q.category for q in within["24h"]}))
    if not h:
        return {**values, **dict.fromkeys(features.NULL_WHEN_NO_HISTORY, math.nan)}
    prev, total = h[-1], sum(q.cents for q in h)
    km = min(
        features.haversine_km(q.merch_lat, q.merch_long, p.merch_lat, p.merch_long)
        for q in h
        if q.time_ms == prev.time_ms
    )
    return {
        **values,
        "card_amt_ratio_30d": float(p.cents * len(h)) / float(total),
        "card_secs_since_prev": float(t - prev.time_ms) / 1000.0,
        "card_km_from_prev": km,
        "card_kmh_from_prev": km / (float(t - prev.time_ms) / 3600000.0),
        "card_new_category_30d": 0.0 if any(q.category == p.category for q in h) else 1.0,
    }


def test_sample_equals_the_spec_table_bit_for_bit(sample):
    records = sample.to_dict("records")
    payments = [features.payment_of(row) for row in records]
    by_card = {}
    for row, p in zip(records, payments):
        by_card.setdefault(row["cc_num"], []).append(p)
    expected = pd.DataFrame(
        [spec_transcription(by_card[row["cc_num"]], p) for row, p in zip(records, payments)], columns=EVERY
    )
    np.testing.assert_array_equal(bits(features.compute(SPEC, sample)), bits(expected))


def test_a_dense_card_takes_seconds_not_minutes():
    start = pd.Timestamp("2020-01-01")
    categories = ["home", "travel", "food_dining"]
    rows = [
        pay(start + pd.Timedelta(minutes=i), f"t{i}", 1.0 + i % 500, category=categories[i % 3])
        for i in range(30_000)
    ]
    began = time.monotonic()
    values = history(*rows)
    assert time.monotonic() - began < 30
    assert values.loc["t29999", "card_count_24h"] == 1440.0


@pytest.mark.parametrize(
    "block, message",
    [
        (
            {"type": "card_history", "features": ["card_count_2h"]},
            "unknown card_history feature 'card_count_2h'",
        ),
        ({"type": "card_history", "features": ["amt"]}, "unknown card_history feature 'amt'"),
        ({"type": "numeric", "features": ["card_count_1h"]}, "unknown numeric feature 'card_count_1h'"),
        ({"type": "card_history", "features": [], "window": "1h"}, "unknown keys ['window']"),
        ({"type": "card_history"}, "lacks keys ['features']"),
    ],
)
def test_card_history_spec_errors_name_the_problem(block, message):
    spec = {**SPEC, "blocks": [block]}
    with pytest.raises(ValueError, match=re.escape(message)):
        features.check_spec(spec)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([pay(T, "a"), pay(T, "a", card=2)], "trans_num ['a'] appear more than once"),
        ([pay(T, "a", amt=1.005)], "amt 1.005 is not a positive amount in whole cents"),
        ([pay(T, "a", amt=0.0)], "amt 0.0 is not a positive amount"),
    ],
)
def test_history_refuses_what_extract_refuses(rows, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        features.compute(SPEC, pd.DataFrame(rows))


def test_columns_follow_the_block_order():
    history_block = {"type": "card_history", "features": ["card_secs_since_prev", "card_count_1h"]}
    spec = {**SPEC, "blocks": [{"type": "numeric", "features": ["amt"]}, history_block]}
    assert features.columns(spec) == ["amt", "card_secs_since_prev", "card_count_1h"]
