"""The benchmark's Python peer (scripts/python_peer.py) computes what fraudctl computes: on every
row of the sample, its probabilities equal `fraudctl score`'s within 1e-6 and the rows it
upserts equal `fraudctl load`'s column by column (but the run, the times and the reasons'
words); its cleaning refuses and masks what `fraudctl extract` does."""

import csv
import json
import sys
from datetime import datetime, timedelta

import numpy as np
import psycopg2
import pytest
from conftest import DEFAULT_MODEL, ORIGINAL_SPEC, REPO, read_stage

from scripts import python_peer

# Not the same by construction: who wrote the row and when.
RUN_COLUMNS = {"run_id", "loaded_at", "updated_at", "captured_at"}
# Compared on their own below: float32 (xgboost's output) against fraudctl's f64.
SCORE_COLUMNS = {"fraud_probability", "reasons"}
TOLERANCE = 1e-6
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def table(url):
    """payments_scored as {trans_num: {column: value}}."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM payments_scored")
        names = [d.name for d in cur.description]
        rows = {row[0]: dict(zip(names, row)) for row in cur.fetchall()}
    conn.close()
    assert names[0] == "trans_num"
    return rows


@pytest.fixture(scope="module")
def fraudctl_rows(fraudctl_run, fraudctl, run, new_database, stage_env):
    """fraudctl's run of the sample (extract, transform, score) loaded into a database of its own."""
    run_dir = fraudctl_run(DEFAULT_MODEL / "feature_spec.json", DEFAULT_MODEL)
    url = new_database()
    run([fraudctl, "load", "--run-dir", run_dir], {**stage_env, "FRAUDCTL_DATABASE_URL": url})
    _, scored = read_stage(run_dir / "scored.jsonl", "fraudctl.scored")
    return table(url), {r["tx"]["trans_num"]: r["score"] for r in scored}


@pytest.fixture(scope="module")
def peer(sample_path, new_database, stage_env, run):
    """The peer's run of the sample into a fresh database: its summary line and its rows."""
    url = new_database()
    done = run(
        [sys.executable, "-m", "scripts.python_peer", "--csv", sample_path, "--database-url", url],
        stage_env,
        cwd=REPO,
    )
    return json.loads(done.stdout), table(url)


def test_peer_reports_its_stages_and_keeps_every_sample_row(peer, sample):
    summary, rows = peer
    assert summary["records"] == len(sample) == len(rows) and summary["rejected"] == 0
    assert list(summary["seconds"]) == ["read", "features", "predict", "upsert"]
    assert all(s > 0 for s in summary["seconds"].values())


def test_peer_probabilities_equal_fraudctl_scores(peer, fraudctl_rows):
    _, rows = peer
    _, scores = fraudctl_rows
    assert rows.keys() == scores.keys()
    worst = max(rows, key=lambda t: abs(rows[t]["fraud_probability"] - scores[t]["probability"]))
    assert abs(rows[worst]["fraud_probability"] - scores[worst]["probability"]) <= TOLERANCE, worst
    flipped = [t for t in rows if rows[t]["predicted_fraud"] != scores[t]["predicted_fraud"]]
    assert not flipped


def test_peer_rows_equal_fraudctl_load_rows_column_by_column(peer, fraudctl_rows):
    _, rows = peer
    loaded, _ = fraudctl_rows
    assert rows.keys() == loaded.keys()
    columns = set(next(iter(loaded.values()))) - RUN_COLUMNS - SCORE_COLUMNS
    assert set(next(iter(rows.values()))) == set(next(iter(loaded.values())))
    for column in sorted(columns):
        differ = [t for t in loaded if rows[t][column] != loaded[t][column]]
        assert not differ, (
            f"{column} differs in {len(differ)} rows, e.g. {differ[0]}: "
            f"peer {rows[differ[0]][column]!r}, fraudctl {loaded[differ[0]][column]!r}"
        )


def test_peer_reasons_lead_with_fraudctls_strongest_and_only_for_frauds(peer, fraudctl_rows):
    """The strongest reason is the same feature with the same contribution (fraudctl passes over
    a later feature whose words repeat an earlier one's; the peer keeps the plain top three)."""
    _, rows = peer
    loaded, _ = fraudctl_rows
    assert {t for t in rows if rows[t]["reasons"] is not None} == {
        t for t in loaded if loaded[t]["predicted_fraud"]
    }
    for t, row in rows.items():
        if row["reasons"] is None:
            continue
        ours, theirs = row["reasons"], loaded[t]["reasons"]
        assert 1 <= len(ours) <= 3 and ours[0]["feature"] == theirs[0]["feature"], t
        assert abs(ours[0]["contribution"] - theirs[0]["contribution"]) <= 1e-5, t
        contributions = [r["contribution"] for r in ours]
        assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0, t


@pytest.fixture(scope="module")
def awkward_csv(sample_path, tmp_path_factory):
    """Twelve sample rows, some broken as extract refuses them, one merchant with a card number."""
    with open(sample_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [next(reader) for _ in range(12)]
    col = {name: i for i, name in enumerate(header)}
    edits = [
        ("amt", "4.975"),
        ("amt", "-3.00"),
        ("gender", "X"),
        ("state", "nc"),
        ("dob", "2030-01-01"),
        ("trans_num", "4497913965512794052"),
        ("merch_lat", "91.5"),
        ("merchant", "Shop 4497 9139 6551 2794 052 ref"),
    ]
    for row, (name, value) in zip(rows, edits):
        row[col[name]] = value
    rows.append(list(rows[-1]))  # a duplicate trans_num
    path = tmp_path_factory.mktemp("awkward") / "awkward.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_peer_refuses_and_masks_what_extract_does(awkward_csv, fraudctl, run, stage_env, tmp_path):
    run([fraudctl, "extract", "--from-csv", awkward_csv, "--run-dir", tmp_path / "run"], stage_env)
    _, raw = read_stage(tmp_path / "run" / "raw.jsonl", "fraudctl.raw")
    key = stage_env["FRAUDCTL_PAN_HASH_KEY"].encode()
    cleaned, refused = python_peer.read(awkward_csv, key)
    assert refused == 13 - len(raw) == 8  # seven refused, one duplicate
    by_trans_num = {r["trans_num"]: r for r in raw}
    assert set(cleaned["trans_num"]) == set(by_trans_num)
    for _, row in cleaned.iterrows():
        extracted = by_trans_num[row["trans_num"]]
        assert (row["merchant"], row["cc_last4"], row["cc_hash"]) == (
            extracted["merchant"],
            extracted["cc_last4"],
            extracted["cc_hash"],
        )
    assert "Shop ****4052 ref" in set(cleaned["merchant"])


def test_peer_refuses_a_short_card_hash_key(monkeypatch):
    monkeypatch.setenv("FRAUDCTL_PAN_HASH_KEY", "short")
    with pytest.raises(SystemExit, match="FRAUDCTL_PAN_HASH_KEY must be set"):
        python_peer.pan_key()


def shifted(when, **delta):
    """A trans_date_trans_time moved by a timedelta."""
    moved = datetime.strptime(when, TIME_FORMAT) + timedelta(**delta)
    return moved.strftime(TIME_FORMAT)


@pytest.fixture(scope="module")
def history_csv(sample_path, tmp_path_factory):
    """The sample and, for its card history's edge cases: every 7th payment again at the same
    second with another amount, category and merchant (ties, several at a card's latest
    millisecond); every 11th again exactly 1 h, 24 h, 7 d or 30 d later (a window's first
    millisecond); a card paying once. Every card's first payment has no history."""
    with open(sample_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    extra = []
    for i, row in enumerate(rows):
        if i % 7 == 0:
            tie = list(row)
            tie[col["trans_num"]] = f"tie-{i}"
            tie[col["amt"]] = f"{float(row[col['amt']]) + 1.23:.2f}"
            tie[col["category"]] = rows[i + 1][col["category"]]
            tie[col["merch_lat"]] = f"{float(row[col['merch_lat']]) + 0.5:.6f}"
            extra.append(tie)
        if i % 11 == 0:
            later = list(row)
            later[col["trans_num"]] = f"later-{i}"
            delta = [{"hours": 1}, {"hours": 24}, {"days": 7}, {"days": 30}][i // 11 % 4]
            later[col["trans_date_trans_time"]] = shifted(row[col["trans_date_trans_time"]], **delta)
            extra.append(later)
    lone = list(rows[0])
    lone[col["trans_num"]] = "lone"
    lone[col["cc_num"]] = "4000000000000002"
    path = tmp_path_factory.mktemp("history") / "history.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows, *extra, lone])
    return path


def test_peer_card_history_equals_fraudctls_bit_for_bit(history_csv, fraudctl, run, stage_env, tmp_path):
    """Every history feature, the peer's vectorised computation against `fraudctl transform`,
    on the sample with tied payments, windows' first milliseconds and first payments."""
    names = list(python_peer.features.HISTORY_FEATURES)
    spec = {
        "schema": python_peer.features.SPEC_SCHEMA,
        "version": 1,
        "name": "every-history-feature",
        "time_zone": "UTC",
        "blocks": [{"type": "numeric", "features": ["amt"]}, {"type": "card_history", "features": names}],
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    run([fraudctl, "extract", "--from-csv", history_csv, "--run-dir", run_dir], stage_env)
    run([fraudctl, "transform", "--run-dir", run_dir, "--feature-spec", spec_path], stage_env)
    _, records = read_stage(run_dir / "features.jsonl", "fraudctl.features")
    theirs = {r["tx"]["trans_num"]: r["features"] for r in records}

    df, refused = python_peer.read(history_csv, stage_env["FRAUDCTL_PAN_HASH_KEY"].encode())
    ours = python_peer.compute_features(spec, df)
    assert refused == 0 and sorted(df["trans_num"]) == sorted(theirs)
    rust = np.array([theirs[t] for t in df["trans_num"]], dtype=np.float64)  # null -> NaN
    np.testing.assert_array_equal(ours.to_numpy(), rust)
    ties = df.duplicated(["cc_num", "trans_time"], keep=False).sum()
    firsts = np.isnan(ours["card_secs_since_prev"]).sum()
    assert ties > 1000 and firsts > 600, (ties, firsts)


def every_numeric_feature_in_new_york(directory):
    """A spec of every numeric feature, in a zone that is not UTC (hour, day and age local)."""
    path = directory / "every-numeric.json"
    spec = {
        "schema": python_peer.features.SPEC_SCHEMA,
        "version": 1,
        "name": "every-numeric-feature",
        "time_zone": "America/New_York",
        "blocks": [{"type": "numeric", "features": list(python_peer.features.NUMERIC_FEATURES)}],
    }
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("which", ["original", "every numeric feature, America/New_York"])
def test_peer_per_payment_features_equal_fraudctls_bit_for_bit(
    which, fraudctl_run, stage_records, sample, sample_path, stage_env, tmp_path
):
    """The one-hot, hashing and numeric blocks, computed over whole columns, against `fraudctl
    transform` on the sample (the default spec's are held by the rows' test above)."""
    path = ORIGINAL_SPEC if which == "original" else every_numeric_feature_in_new_york(tmp_path)
    records = stage_records(fraudctl_run(path) / "features.jsonl", "fraudctl.features")
    rust = np.array([r["features"] for r in records], dtype=np.float64)
    df, _ = python_peer.read(sample_path, stage_env["FRAUDCTL_PAN_HASH_KEY"].encode())
    assert list(df["trans_num"]) == list(sample["trans_num"])
    ours = python_peer.compute_features(python_peer.features.load_spec(path), df)
    np.testing.assert_array_equal(ours.to_numpy(), rust)
