"""The pipeline tells operations when it breaks (real Airflow CLI, real SMTP sink, real fraudctl):
a task that fails for good sends one email; the watchdog sends one when fraud_pipeline stops
succeeding, however often it checks, and one when it recovers."""

import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from conftest import AIRFLOW_MAJOR, LOGICAL_DATE, _payments_simulator, recent, sql, with_db

OPS = "ops@example.test"


def body(message) -> str:
    return html.unescape(message.get_body(("html",)).get_content())


@pytest.fixture
def to_ops(ops_mailbox):
    """The environment of a task that mails operations into ops_mailbox."""
    return {"AIRFLOW_VAR_FRAUDCTL_OPS_EMAIL": OPS, "AIRFLOW_CONN_FRAUDCTL_SMTP": ops_mailbox.connection}


def test_a_task_that_fails_for_good_emails_operations_once(
    airflow, ops_mailbox, to_ops, secrets_in_play, tmp_path
):
    """A real task instance (a backfill through the LocalExecutor counts its tries, where `tasks
    test` does not), on a minute no other test runs; no card-hash key in the worker's environment:
    extract exits 5, which no retry can change."""
    logical = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    emails = len(ops_mailbox.messages())
    airflow.backfill(
        "fraud_pipeline",
        logical,
        logical,
        check=False,
        FRAUDCTL_PAN_HASH_KEY="",
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path,
        **to_ops,
    )
    assert airflow.task_states("fraud_pipeline", logical)["extract"] == "failed"
    run_id = airflow.run_id("fraud_pipeline", logical)
    assert run_id.startswith("backfill__"), run_id
    tries = sql(
        airflow.metadata_url,
        "select try_number from task_instance where dag_id ="
        " 'fraud_pipeline' and task_id = 'extract' and run_id = %s",
        run_id,
    )
    assert tries == [(1,)]  # failed at once, no retry
    sent = ops_mailbox.messages()[emails:]
    assert len(sent) == 1
    mail, text = sent[0], body(sent[0])
    assert mail["To"] == OPS and mail["Subject"] == "[fraudctl] fraud_pipeline.extract failed"
    log_url = (  # the task's log in the UI (its address on each version)
        [f"http://localhost:8080/dags/fraud_pipeline/runs/{quote(run_id, safe='')}/tasks/extract"]
        if AIRFLOW_MAJOR >= 3
        else ["http://localhost:8080/log?execution_date=", "task_id=extract&dag_id=fraud_pipeline"]
    )
    for fact in (
        "fraud_pipeline",
        "extract",
        run_id,
        "1 of 4",
        "5: configuration (a missing or invalid setting",
        *log_url,
    ):
        assert fact in text, (fact, text)
    for secret in secrets_in_play.values():
        assert secret not in mail.as_string()


@pytest.fixture(scope="module")
def flaky_payments_api(fraudctl_bin, tmp_path_factory):
    """A payments simulator of the module's own answering 500 to half the requests."""
    yield from _payments_simulator(fraudctl_bin, tmp_path_factory, 0.2, "--error-rate", "0.5")


@pytest.fixture
def own_data(airflow, own_fraud_db, tmp_path):
    """The environment of runs that capture and load payments into a database of the module's own
    (the session's is counted by the other modules), their alerts mailed to ops_mailbox (to_ops)."""
    return {
        "AIRFLOW_CONN_FRAUD_DB": with_db(
            airflow.env["AIRFLOW_CONN_FRAUD_DB"], urlsplit(own_fraud_db).path[1:]
        ),
        "AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT": tmp_path,
    }


def test_a_run_that_lost_api_requests_warns_operations(
    airflow, ops_mailbox, to_ops, own_data, flaky_payments_api
):
    def extract(**env) -> list:
        emails = len(ops_mailbox.messages())
        airflow(
            "tasks",
            "test",
            "fraud_pipeline",
            "extract",
            recent(),
            AIRFLOW_VAR_FRAUDCTL_API_URL=flaky_payments_api,
            **own_data,
            **to_ops,
            **env,
        )
        return ops_mailbox.messages()[emails:]

    sent = extract()
    assert len(sent) == 1, [m["Subject"] for m in sent]
    assert re.fullmatch(r"\[fraudctl\] fraud_pipeline\.extract lost \d+ API requests", sent[0]["Subject"])
    assert "(Variable fraudctl_source_errors_warn: 5)" in body(sent[0]), body(sent[0])
    assert extract(AIRFLOW_VAR_FRAUDCTL_SOURCE_ERRORS_WARN="1000000") == []


def test_after_a_failed_run_the_next_success_sends_the_all_clear(
    airflow, ops_mailbox, to_ops, own_data, own_payments_api
):
    """Real runs a few minutes ago (extract polls the module's own API), at seconds past the minute
    no other test uses: the first fails for good (no card-hash key), the next two succeed."""
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=6)
    env = {**own_data, **to_ops, "AIRFLOW_VAR_FRAUDCTL_API_URL": own_payments_api}
    emails = len(ops_mailbox.messages())
    airflow(
        "dags",
        "test",
        "fraud_pipeline",
        (minute + timedelta(seconds=10)).isoformat(),
        check=False,
        FRAUDCTL_PAN_HASH_KEY="",
        **env,
    )
    for seconds in (20, 40):
        airflow("dags", "test", "fraud_pipeline", (minute + timedelta(seconds=seconds)).isoformat(), **env)
    subjects = [m["Subject"] for m in ops_mailbox.messages()[emails:] if "[fraudctl]" in m["Subject"]]
    assert subjects == ["[fraudctl] fraud_pipeline.extract failed", "[fraudctl] fraud_pipeline runs again"]
    text = body([m for m in ops_mailbox.messages() if m["Subject"].endswith("runs again")][-1])
    assert airflow.run_id("fraud_pipeline", minute + timedelta(seconds=10)) in text, text


def test_without_an_operations_address_no_email_and_a_warning(airflow, ops_mailbox, tmp_path):
    emails = len(ops_mailbox.messages())
    done = airflow(
        "tasks",
        "test",
        "fraud_pipeline",
        "extract",
        recent(),
        check=False,
        FRAUDCTL_PAN_HASH_KEY="",
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path,
        AIRFLOW_CONN_FRAUDCTL_SMTP=ops_mailbox.connection,
    )
    output = done.stdout + done.stderr
    assert "the Variable fraudctl_ops_email is not set" in output, output[-3000:]
    assert len(ops_mailbox.messages()) == emails


PIPELINE_RUNS = "from dag_run where dag_id = 'fraud_pipeline'"
NEWEST_RUN = f"(select max(id) {PIPELINE_RUNS})"


def test_watchdog_one_email_per_incident_and_one_on_recovery(airflow, ops_mailbox, to_ops, tmp_path):
    checks = iter(f"2024-03-01T01:{minute:02d}:00+00:00" for minute in range(0, 60, 2))

    def check() -> list:
        before = len(ops_mailbox.messages())
        airflow("dags", "test", "fraud_pipeline_watchdog", next(checks), **to_ops)
        return ops_mailbox.messages()[before:]

    # A success (a past interval without raw data: skipped), then a stalled pipeline: every run of
    # it a day older than it was, the newest stuck in "running".
    airflow("dags", "test", "fraud_pipeline", "2024-02-29T23:59:00+00:00")
    airflow("dags", "test", "fraud_pipeline", "2024-03-01T00:00:00+00:00")
    sql(
        airflow.metadata_url,
        "update dag_run set queued_at = queued_at - interval '1 day',"
        " start_date = start_date - interval '1 day', end_date = end_date - interval '1 day'"
        " where dag_id = 'fraud_pipeline'",
    )
    sql(
        airflow.metadata_url, f"update dag_run set state = 'running', end_date = null where id = {NEWEST_RUN}"
    )

    stalled = check()
    assert [m["Subject"] for m in stalled] == ["[fraudctl] fraud_pipeline stalled"]
    assert stalled[0]["To"] == OPS
    text = body(stalled[0])
    # The incident began with the last success (the latest minute that succeeded), a day before
    # the check that noticed it.
    last_success = sql(
        airflow.metadata_url,
        "select to_char(end_date at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
        f" {PIPELINE_RUNS} and state = 'success' order by {LOGICAL_DATE} desc limit 1",
    )[0][0]
    assert f"incident began</th><td>{last_success} UTC" in text, text
    assert "no run has succeeded since" in text and "has been running since" in text, text
    assert "10 minutes (Variable fraudctl_watchdog_minutes)" in text, text
    assert check() == []  # the same incident: no second email
    sql(
        airflow.metadata_url,
        "update dag_run set state = 'success', end_date = start_date"
        f" + interval '1 minute' where id = {NEWEST_RUN}",
    )
    assert check() == []  # no longer stuck, still no success for a day: the same incident

    # A success now: the latest minute (a minute ago, no raw file for it and no lag allowed, so
    # extract skips at once and the run succeeds).
    minute = (datetime.now(UTC) - timedelta(minutes=1)).replace(second=50, microsecond=0)
    airflow(
        "dags",
        "test",
        "fraud_pipeline",
        minute.isoformat(),
        AIRFLOW_VAR_FRAUDCTL_EXTRACT_MAX_LAG_SECS=0,
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path,
    )
    recovered = check()
    assert [m["Subject"] for m in recovered] == ["[fraudctl] fraud_pipeline recovered"]
    assert f"incident began</th><td>{last_success} UTC" in body(recovered[0]), body(recovered[0])
    assert check() == []


def test_watchdog_tells_operations_when_the_live_path_stops_and_when_it_is_back(airflow, ops_mailbox, to_ops):
    checks = iter(f"2024-03-02T01:{minute:02d}:00+00:00" for minute in range(0, 60, 2))

    def check() -> list:
        """A check that takes a heartbeat of the last 10 minutes as fresh (an hour-old one is
        stale): a check's own run (20 s on Airflow 3) never makes a fresh heartbeat stale."""
        before = len(ops_mailbox.messages())
        airflow(
            "dags",
            "test",
            "fraud_pipeline_watchdog",
            next(checks),
            AIRFLOW_VAR_FRAUDCTL_LIVE_STALE_SECS=600,
            **to_ops,
        )
        return [m for m in ops_mailbox.messages()[before:] if "live path" in m["Subject"]]

    sql(airflow.fraud_db, "delete from live_lease")
    assert check() == []  # no live path deployed: nothing to say
    sql(
        airflow.fraud_db,
        "insert into live_lease (holder, acquired_at, heartbeat_at)"
        " values ('pid 42 on test', now() - interval '1 hour', now() - interval '1 hour')",
    )
    down = check()
    assert [m["Subject"] for m in down] == ["[fraudctl] live path down: alerts are back to minute latency"]
    assert "its last heartbeat was at" in body(down[0]) and "pid 42 on test" in body(down[0])
    assert check() == []  # the same incident
    sql(airflow.fraud_db, "update live_lease set heartbeat_at = now()")
    back = check()
    assert [m["Subject"] for m in back] == ["[fraudctl] live path back: alerts within seconds again"]
    assert check() == []
    sql(airflow.fraud_db, "delete from live_lease")
