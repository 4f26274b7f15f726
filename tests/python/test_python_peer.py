"""The benchmark's Python peer (scripts/python_peer.py) computes what fraudctl computes: on every
row of the sample, its probabilities equal `fraudctl score`'s within 1e-6 and the rows it
upserts equal `fraudctl load`'s column by column (but the run, the times and the reasons'
words); its cleaning refuses and masks what `fraudctl extract` does."""

import csv
import importlib.util
import json
import sys

import psycopg2
import pytest
from conftest import DEFAULT_MODEL, REPO, read_stage

PEER_SCRIPT = REPO / "scripts" / "python_peer.py"
# Not the same by construction: who wrote the row and when.
RUN_COLUMNS = {"run_id", "loaded_at", "updated_at", "captured_at"}
# Compared on their own below: float32 (xgboost's output) against fraudctl's f64.
SCORE_COLUMNS = {"fraud_probability", "reasons"}
TOLERANCE = 1e-6


def load_peer_module():
    spec = importlib.util.spec_from_file_location("python_peer", PEER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    done = run([sys.executable, PEER_SCRIPT, "--csv", sample_path, "--database-url", url], stage_env)
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
    cleaned, refused = load_peer_module().read(awkward_csv, key)
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
        load_peer_module().pan_key()
