"""model/ablation.py's dense replay, on which the choice of history features rests: it adds
legitimate payments of the same cards, only where a real payment's history can see them, at
the rate asked, and leaves the real rows as they were."""

import numpy as np
import pandas as pd

from model import ablation, recipe


def test_dense_replay_adds_legitimate_payments_in_the_30_days_before_real_ones(sample):
    _, test_idx = recipe.split(sample)
    held = sample.iloc[test_idx]
    dense = ablation.densify(held, rate=1.0)
    real, added = dense.iloc[: len(held)], dense.iloc[len(held) :]
    pd.testing.assert_frame_equal(real, held.reset_index(drop=True))
    assert (added["is_fraud"] == 0).all() and added["trans_num"].is_unique
    assert set(added["cc_num"]) <= set(held["cc_num"])
    seconds_before_next_real = []
    for card, rows in added.groupby("cc_num"):
        card_real = np.sort(ablation.epoch_seconds(real.loc[real["cc_num"] == card, "trans_date_trans_time"]))
        times = ablation.epoch_seconds(rows["trans_date_trans_time"]).to_numpy()
        seconds_before_next_real += list(card_real[np.searchsorted(card_real, times)] - times)
    assert 0 <= min(seconds_before_next_real) and max(seconds_before_next_real) <= 30 * 86400
    # 1 a day over each card's covered days: about 30 per isolated real payment, fewer when close.
    assert 0.5 * 30 * held["cc_num"].nunique() < len(added) < 30 * len(held)
