"""End to end with a real Airflow (2.8.3 or 3): `dags test`, a clear + re-run, a backfill, the digest.

One logical date L (the current minute) is run first; the later tests build on its run directory.
"""

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import ProcessWatch, sql, xcom_value

STAGES = ["extract", "transform", "score", "load", "alert"]


def counts(airflow, mailbox) -> dict:
    rows = sql(
        airflow.fraud_db,
        "select (select count(*) from payments_scored),"
        " (select count(*) from payments_scored where predicted_fraud),"
        " (select count(*) from fraud_alerts where status = 'sent'),"
        " (select count(distinct cc_hash) from payments_scored where predicted_fraud)",
    )[0]
    return {
        "payments": rows[0],
        "frauds": rows[1],
        "alerts_sent": rows[2],
        "cards": rows[3],
        "emails": len(mailbox.messages()),
    }


@pytest.fixture(scope="module")
def watched_first_run(airflow, mailbox):
    """The first run, with the command lines of every process that ran meanwhile."""
    logical = datetime.now(UTC).replace(second=0, microsecond=0)
    with ProcessWatch() as watch:
        airflow("dags", "test", "fraud_pipeline", logical.isoformat())
    return logical, watch.cmdlines


@pytest.fixture(scope="module")
def first_run(watched_first_run):
    return watched_first_run[0]


def test_dags_test_runs_every_stage(airflow, mailbox, first_run):
    assert airflow.task_states("fraud_pipeline", first_run) == {s: "success" for s in STAGES}
    xcoms = airflow.xcoms("fraud_pipeline", first_run)
    assert sorted(xcoms) == sorted(STAGES)  # each stage's JSON summary reached XCom
    now = counts(airflow, mailbox)
    assert now["payments"] > 0 and now["frauds"] > 0, now
    assert now["alerts_sent"] == now["frauds"], now  # every predicted fraud alerted
    shadowed = sql(
        airflow.fraud_db,
        "select count(*) from payments_scored where challenger_model_version like %s",
        "challenger-v1@%",
    )[0][0]
    assert shadowed == now["payments"]  # the challenger scored each, none of it alerted
    assert now["emails"] == now["cards"], now  # in one email per card (a first run: no thread)
    run_dir = airflow.runs_root / "fraud_pipeline" / first_run.strftime("%Y%m%dT%H%M%S")
    assert (run_dir / "raw.jsonl").is_file() and (run_dir / "scored.jsonl").is_file()
    subjects = [m["Subject"] for m in mailbox.messages()]
    assert all(s for s in subjects), subjects


def test_rerun_of_same_logical_date_changes_nothing(airflow, mailbox, first_run):
    before = counts(airflow, mailbox)
    iso = first_run.isoformat()
    airflow("tasks", "clear", "fraud_pipeline", "-s", iso, "-e", iso, "-y")
    airflow("dags", "test", "fraud_pipeline", iso)
    assert airflow.task_states("fraud_pipeline", first_run) == {s: "success" for s in STAGES}
    assert counts(airflow, mailbox) == before


def test_backfill_rescores_captured_intervals_and_skips_the_others(airflow, mailbox, first_run):
    before = counts(airflow, mailbox)
    start, end = first_run - timedelta(minutes=3), first_run - timedelta(minutes=1)
    # Logical date L-1m covers the interval ending at L: its raw file exists. L-2m and L-3m were
    # never captured; with a 1 s lag allowance they are "past" whatever the test's speed.
    done = airflow.backfill("fraud_pipeline", start, end, AIRFLOW_VAR_FRAUDCTL_EXTRACT_MAX_LAG_SECS=1)
    assert airflow.task_states("fraud_pipeline", end) == {s: "success" for s in STAGES}, done.stderr
    for missing in (start, start + timedelta(minutes=1)):
        assert airflow.task_states("fraud_pipeline", missing) == {s: "skipped" for s in STAGES}
    assert counts(airflow, mailbox) == before  # re-scored in place, nothing mailed again
    load = json.loads(airflow.xcoms("fraud_pipeline", end)["load"])  # the stage's summary
    assert load["run_id"].startswith("backfill__") and load["inserted"] == 0
    assert load["updated"] + load["unchanged"] == before["payments"], load
    assert "skipped: no raw file was captured" in airflow.logs()


def test_no_secret_in_rendered_fields_or_logs(airflow, secrets_in_play, first_run):
    rendered = sql(airflow.metadata_url, "select rendered_fields::text from rendered_task_instance_fields")
    assert rendered, "no rendered fields recorded"
    xcoms = sql(airflow.metadata_url, "select value from xcom")
    assert xcoms, "no XCom recorded"
    text = "\n".join(r[0] for r in rendered) + airflow.logs()
    text += "\n".join(json.dumps(xcom_value(v)) for (v,) in xcoms)
    for name, secret in secrets_in_play.items():
        assert secret not in text, f"{name} leaked"
    commands = sql(
        airflow.metadata_url,
        "select rendered_fields->>'bash_command' from"
        " rendered_task_instance_fields where dag_id = 'fraud_pipeline'",
    )
    assert all("://" not in c for (c,) in commands)


def test_no_secret_on_the_command_line_of_any_process_the_run_started(
    airflow, secrets_in_play, watched_first_run
):
    """What the stages really ran with: every command line seen on the machine during the run
    (each stage's fraudctl process after the task's bash exec'd it; the bash command itself is
    the rendered bash_command, checked above)."""
    _, cmdlines = watched_first_run
    stages = {s for s in STAGES for c in cmdlines if c.startswith(f"{airflow.env['FRAUDCTL_BIN']} {s}")}
    assert stages == set(STAGES), f"every stage's fraudctl process was seen: {stages}"
    for name, secret in secrets_in_play.items():
        leaked = [c for c in cmdlines if secret in c]
        assert not leaked, f"{name} on a command line: {leaked}"


def test_daily_digest_mails_the_report_and_applies_retention(airflow, mailbox, first_run):
    pipeline_dirs = airflow.runs_root / "fraud_pipeline"
    old, recent = pipeline_dirs / "20200101T000000", pipeline_dirs / "20200102T000000"
    for d in (old, recent):
        d.mkdir(parents=True)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    emails = len(mailbox.messages())
    # The morning after L (07:00, the digest's time in UTC, the default zone): its report day is L's day.
    morning = (first_run + timedelta(days=1)).replace(hour=7, minute=0)
    airflow("dags", "test", "fraud_daily_digest", morning.isoformat())
    states = airflow.task_states("fraud_daily_digest", morning)
    assert states == {
        task: "success"
        for task in (
            "build_report",
            "send_digest",
            "cleanup_run_dirs",
            "clean_airflow_db",
            "clean_airflow_logs",
        )
    }
    digest = mailbox.messages()[emails:]
    assert len(digest) == 1 and first_run.strftime("%Y-%m-%d") in digest[0]["Subject"]
    attachments = [p.get_filename() for p in digest[0].iter_attachments()]
    assert attachments == [f"payments-{first_run:%Y-%m-%d}.csv"]
    assert not old.exists() and recent.exists()
    assert (pipeline_dirs / first_run.strftime("%Y%m%dT%H%M%S")).exists()


def test_no_digest_for_a_day_before_the_stack_ran(airflow, mailbox, first_run):
    emails = len(mailbox.messages())
    morning = (first_run - timedelta(days=1)).replace(hour=7, minute=0)  # reports L's day - 1
    airflow("dags", "test", "fraud_daily_digest", morning.isoformat())
    states = airflow.task_states("fraud_daily_digest", morning)
    assert states["build_report"] == "skipped" and states["send_digest"] == "skipped", states
    assert states["cleanup_run_dirs"] == "success", states  # retention runs all the same
    assert len(mailbox.messages()) == emails
