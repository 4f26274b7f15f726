"""The dashboard against a real PostgreSQL: known rows in, figures on screen checked."""

import csv
import datetime as dt
import os
import re
import socket
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from conftest import ADMIN_URL, FRAUDCTL_BIN, ROOT, with_url
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

UTC = dt.UTC
DAY = dt.date(2026, 3, 9)


def at_utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_headline_figures_for_a_chosen_day(fraud_db, dashboard):
    fraud_db.payment("t-legit-1", at_utc(DAY, 8), amt=20.00)
    fraud_db.payment("t-legit-2", at_utc(DAY, 12), amt=35.50)
    fraud_db.payment("t-fraud-1", at_utc(DAY, 1, 30), amt=950.25, category="shopping_net", probability=0.97)
    fraud_db.payment("t-fraud-2", at_utc(DAY, 23, 59), amt=300.25, category="grocery_pos", probability=0.81)
    fraud_db.alert("t-fraud-1", "sent")
    fraud_db.alert("t-fraud-2", "suppressed")
    fraud_db.payment("t-next-day", at_utc(DAY + dt.timedelta(days=1), 0, 1), amt=5000, probability=0.99)
    fraud_db.pipeline_run("run-1", minutes_ago=1)

    at = dashboard(day=DAY)

    assert metrics(at) == {
        "Payments": "4",
        "Predicted frauds": "2",
        "Fraud rate": "50.00%",
        "Amount at risk": "$1,250.50",
        "Alerts sent": "1",
        "Payment to email": "—",  # the alert has no acceptance time
        "Analyst-confirmed precision": "—",
        "Verdicts pending": "1",
        "Median time to verdict": "—",
    }
    assert not at.error
    frauds = at.dataframe[0].value
    assert list(frauds.trans_num) == ["t-fraud-1", "t-fraud-2"]
    assert set(frauds.card) == {"**** 4242"}
    assert list(frauds.alert_status) == ["sent", "suppressed"]


def test_frauds_table_filters(fraud_db, dashboard):
    fraud_db.payment("t-net", at_utc(DAY, 9), category="shopping_net", probability=0.95)
    fraud_db.payment("t-pos-high", at_utc(DAY, 10), category="grocery_pos", probability=0.90)
    fraud_db.payment("t-pos-low", at_utc(DAY, 11), category="grocery_pos", probability=0.55)

    at = dashboard(day=DAY)
    assert len(at.dataframe[0].value) == 3

    at.multiselect[0].set_value(["grocery_pos"]).run()
    assert list(at.dataframe[0].value.trans_num) == ["t-pos-high", "t-pos-low"]

    at.slider[0].set_value(0.6).run()
    assert list(at.dataframe[0].value.trans_num) == ["t-pos-high"]


def test_each_fraud_shows_why_it_fired(fraud_db, dashboard):
    fraud_db.payment("t-why", at_utc(DAY, 9), probability=0.95)
    fraud_db.payment("t-unexplained", at_utc(DAY, 10), probability=0.9)
    fraud_db.execute("""UPDATE payments_scored SET reasons = '[{"text": "amount 841.89"},
                        {"text": "02:14 at night"}]' WHERE trans_num = 't-why'""")

    table = dashboard(day=DAY).dataframe[0].value.set_index("trans_num")

    assert table.loc["t-why", "why"] == "amount 841.89; 02:14 at night"
    assert table.isna().loc["t-unexplained", "why"]


def test_model_performance_where_labels_exist(fraud_db, dashboard):
    outcomes = {  # (predicted fraud, labelled fraud): how many
        (True, True): 3,
        (True, False): 1,
        (False, True): 2,
        (False, False): 4,
    }
    for (predicted, label), count in outcomes.items():
        for i in range(count):
            fraud_db.payment(
                f"t-{predicted}-{label}-{i}",
                at_utc(DAY, 10, i),
                probability=0.9 if predicted else 0.1,
                label=label,
            )
    fraud_db.payment("t-unlabelled", at_utc(DAY, 11), probability=0.9)

    shown = metrics(dashboard(day=DAY))

    assert shown["Precision"] == "75.0%"
    assert shown["Recall"] == "60.0%"
    assert shown["Labelled payments"] == "10"


def test_model_performance_without_labels(fraud_db, dashboard):
    fraud_db.payment("t-1", at_utc(DAY, 10), probability=0.9)

    at = dashboard(day=DAY)

    assert "Precision" not in metrics(at)
    assert any("precision and recall need labels" in i.value for i in at.info)


def test_payment_to_email_latency_of_the_day(fraud_db, dashboard):
    for i, seconds in enumerate([1.0, 2.0, 30.0]):
        fraud_db.payment(f"t-fraud-{i}", at_utc(DAY, 10, i), probability=0.9)
        fraud_db.alert(f"t-fraud-{i}", accepted_after=seconds)
    fraud_db.payment("t-suppressed", at_utc(DAY, 11), probability=0.9)
    fraud_db.alert("t-suppressed", "suppressed", accepted_after=500.0)  # not sent: not counted

    shown = metrics(dashboard(day=DAY))

    # percentile_cont over 1, 2 and 30 s: the median 2 s, the 95th 2 + 0.9 × 28 = 27.2 s.
    assert shown["Payment to email"] == "2.0 s · p95 27.2 s", shown


def test_empty_day(fraud_db, dashboard):
    fraud_db.payment("t-other-day", at_utc(DAY - dt.timedelta(days=1), 12), probability=0.9)

    at = dashboard(day=DAY)

    assert metrics(at) == {
        "Payments": "0",
        "Predicted frauds": "0",
        "Fraud rate": "—",
        "Amount at risk": "$0.00",
        "Alerts sent": "0",
        "Payment to email": "—",
    }
    assert [i.value for i in at.info] == [  # then the detection controls, not tied to a day
        "No payments on 2026-03-09 (UTC).",
        "No backtest has run yet: `fraudctl backtest --from … --to … --rules FILE` records one "
        '(docs/rules.md, "Backtests").',
        "No list has an entry.",
        "No list was ever changed.",
    ]
    assert not at.dataframe


def test_day_across_a_time_zone_boundary(fraud_db, dashboard):
    # 03:00 UTC on 10 March 2026 is 23:00 on 9 March in New York (EDT, UTC-4).
    fraud_db.set_time_zone("America/New_York")
    fraud_db.payment("t-late-evening", at_utc(dt.date(2026, 3, 10), 3), amt=410.00, probability=0.9)
    fraud_db.payment("t-next-morning", at_utc(dt.date(2026, 3, 10), 4, 30), amt=12.00)

    at = dashboard(day=dt.date(2026, 3, 9))
    assert metrics(at)["Payments"] == "1"
    assert metrics(at)["Amount at risk"] == "$410.00"
    assert at.dataframe[0].value.local_time.iloc[0] == dt.datetime(2026, 3, 9, 23, 0)

    at.date_input(key="day").set_value(dt.date(2026, 3, 10)).run()
    assert metrics(at)["Payments"] == "1"
    assert metrics(at)["Predicted frauds"] == "0"


def test_defaults_to_yesterday_in_the_business_time_zone(fraud_db, dashboard):
    zone = "Pacific/Auckland"
    fraud_db.set_time_zone(zone)
    yesterday = fraud_db.yesterday()
    fraud_db.payment("t-yesterday-noon", dt.datetime.combine(yesterday, dt.time(12), ZoneInfo(zone)))

    at = dashboard()

    assert at.date_input(key="day").value == yesterday
    assert metrics(at)["Payments"] == "1"


@pytest.mark.parametrize(
    ("minutes_ago", "stale_minutes", "error"),
    [
        (None, None, "The pipeline has never run"),
        (30, None, "The pipeline has stopped: its last successful run was run-2, at "),
        (30, 60, None),
        (2, None, None),
    ],
)
def test_data_freshness(fraud_db, dashboard, minutes_ago, stale_minutes, error):
    if minutes_ago is not None:
        fraud_db.pipeline_run("run-1", minutes_ago=minutes_ago + 1)
        fraud_db.pipeline_run("run-2", minutes_ago=minutes_ago)

    at = dashboard(day=DAY, stale_minutes=stale_minutes)

    if error:
        assert len(at.error) == 1 and error in at.error[0].value
    else:
        assert not at.error
        fresh = [c.value for c in at.caption if "Data is fresh" in c.value]
        assert len(fresh) == 1 and "last successful run run-2, at" in fresh[0]
        assert "last payment: none yet. Capturing: the every-minute DAG" in fresh[0]


@pytest.mark.parametrize(
    ("heartbeat_seconds_ago", "released", "capturing"),
    [(2, False, "the live path"), (60, False, "the every-minute DAG"), (2, True, "the every-minute DAG")],
)
def test_the_freshness_line_says_which_path_captures(
    fraud_db, dashboard, heartbeat_seconds_ago, released, capturing
):
    """The live path captures while its lease is held and its heartbeat fresh; its micro-batches
    (its minute's `live` row) count as a successful run."""
    fraud_db.execute(
        """INSERT INTO live_lease (holder, acquired_at, heartbeat_at, released_at)
           VALUES ('pid 7 on test', now(), now() - make_interval(secs => %s),
                   CASE WHEN %s THEN now() END)""",
        (heartbeat_seconds_ago, released),
    )
    fraud_db.execute("INSERT INTO pipeline_runs (run_id, stage, records) VALUES ('live__x', 'live', 3)")
    at = dashboard(day=DAY)
    fresh = [c.value for c in at.caption if "Data is fresh" in c.value]
    assert len(fresh) == 1 and "last successful run live__x" in fresh[0], at.caption
    assert f"Capturing: {capturing}" in fresh[0]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO payments_scored SELECT * FROM payments_scored",
        "UPDATE payments_scored SET amt = 0",
        "DELETE FROM payments_scored",
        "SELECT * FROM payments_scored",
        "SELECT * FROM pipeline_runs",
        "SELECT * FROM fraud_alerts",
        "SELECT * FROM fraudctl_settings",
        "UPDATE fraudctl_settings SET value = 'UTC'",
        "CREATE TABLE dashboard_scratch (x int)",
    ],
)
def test_reader_role_is_refused_tables_and_writes(reader_url, statement):
    with psycopg.connect(reader_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_reader_role_reads_the_report(fraud_db, reader_url):
    fraud_db.payment("t-yesterday", dt.datetime.combine(fraud_db.yesterday(), dt.time(12), UTC))
    with psycopg.connect(reader_url, autocommit=True) as conn:
        assert conn.execute("SELECT trans_num, card FROM v_daily_fraud_report").fetchall() == [
            ("t-yesterday", "**** 4242")
        ]
        assert conn.execute("SELECT count(*) FROM v_pipeline_freshness").fetchone() == (1,)


def test_unset_database_url_is_named(run_dashboard):
    at = run_dashboard(None)

    assert len(at.error) == 1
    assert at.error[0].value.startswith("FRAUDCTL_DASHBOARD_DATABASE_URL is not set")


def test_unreachable_database_is_named(run_dashboard):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    at = run_dashboard(f"postgres://dashboard:secret@127.0.0.1:{port}/fraud_db")

    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith(
        f"Cannot reach fraud_db at postgres://dashboard:***@127.0.0.1:{port}/fraud_db "
        "(FRAUDCTL_DASHBOARD_DATABASE_URL)"
    )
    assert "secret" not in message


def test_a_role_outside_fraud_report_reader_is_told_what_to_grant(fraud_db, run_dashboard):
    fraud_db.execute("CREATE ROLE fraud_dashboard_test_outsider LOGIN")
    try:
        at = run_dashboard(with_url(fraud_db.url, user="fraud_dashboard_test_outsider"))
    finally:
        fraud_db.execute("DROP ROLE fraud_dashboard_test_outsider")

    assert len(at.error) == 1
    assert at.error[0].value.startswith("The role in FRAUDCTL_DASHBOARD_DATABASE_URL may not read the report")
    assert "make it a member of fraud_report_reader" in at.error[0].value


def test_a_database_without_the_migrations_is_told_to_migrate(run_dashboard):
    at = run_dashboard(ADMIN_URL)  # the cluster's postgres database: never migrated

    assert len(at.error) == 1
    assert "lacks the report's views or functions" in at.error[0].value
    assert "run `fraudctl migrate` against it" in at.error[0].value


SHARED = Path(os.environ.get("FRAUDCTL_SHARED_DIR", ROOT.parent / "shared"))


def card_numbers_in(text: str, pans: set[str]) -> list[str]:
    """The card numbers of `pans` in `text`, whole or in groups split by single spaces or dashes
    (a card number inside a longer run of digits does not count)."""
    found = []
    for run in re.finditer(r"\d+(?:[ -]\d+)*", text):
        groups = re.split(r"[ -]", run.group())
        for first in range(len(groups)):
            joined = ""
            for group in groups[first:]:
                joined += group
                if joined in pans:
                    found.append(f"{joined} in {run.group()!r}")
    return found


def test_no_card_number_in_clear_on_screen_or_in_the_download(fraud_db, dashboard, monkeypatch, tmp_path):
    """A day of the real sample loaded by the real pipeline: no element of the page, nor the CSV
    offered for download, holds a card number."""
    rows = list(csv.reader((SHARED / "data" / "fraud_sample.csv").open()))
    header, body = rows[0], rows[1:]
    day = next(r[1] for r in body if r[-1] == "1")[:10]  # the day of the sample's first fraud
    chosen = [r for r in body if r[1].startswith(day)]
    pans = {r[header.index("cc_num")] for r in chosen}
    source = tmp_path / "day.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([header, *chosen])
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "FRAUDCTL_PAN_HASH_KEY": "dashboard-test-key-0123456789abcdef",
        "FRAUDCTL_DATABASE_URL": fraud_db.url,
    }
    for stage in (
        ["extract", "--from-csv", str(source)],
        ["transform", "--feature-spec", str(ROOT / "model/default/feature_spec.json")],
        ["score", "--model-dir", str(ROOT / "model/default")],
        ["load"],
    ):
        done = subprocess.run(
            [FRAUDCTL_BIN, *stage, "--run-dir", str(run_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"fraudctl {stage[0]}: {done.stderr}"

    downloads = []
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        downloads.append(path_or_data if isinstance(path_or_data, str) else path_or_data.decode())
        return load(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    at = dashboard(day=dt.date.fromisoformat(day))

    frauds = at.dataframe[0].value
    assert len(frauds) > 0 and frauds.card.str.fullmatch(r"\*\*\*\* \d{4}").all()
    assert downloads and "trans_num" in downloads[0], "the frauds' CSV is offered"

    def protos(node):
        yield str(getattr(node, "proto", ""))
        for child in getattr(node, "children", {}).values():
            yield from protos(child)

    shown = "\n".join([*protos(at._tree), *(d.value.to_csv() for d in at.dataframe), *downloads])
    assert card_numbers_in(f"x {sorted(pans)[0]} y", pans), "the scan finds a card number"
    leaked = card_numbers_in(shown, pans)
    assert not leaked, f"card numbers in clear on the dashboard: {leaked[:5]}"
