"""`fraud_pipeline` on CeleryExecutor: real Redis, two real `airflow celery worker`s and the
scheduler (conftest.celery_cluster), real PostgreSQL, payments simulator and SMTP sink.

Three runs are triggered (distinct minutes, so three run directories); their tasks land on both
workers. While the last run's `extract` executes, its worker is SIGKILLed with every process it
started (a machine lost): the scheduler finds the task a zombie and it is retried on the other
worker. Then every captured payment is one row of payments_scored and every predicted fraud is
in exactly one email, as with LocalExecutor.
"""

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from conftest import VENV_BIN, on_airflow_2_only, sql

pytestmark = on_airflow_2_only(
    "not ported yet: Airflow 3's Celery workers run tasks through the api-server's execution API, "
    "and a lost worker's task is a heartbeat timeout with no task_fail row (airflow/UPGRADING.md)"
)

STAGES = ["extract", "transform", "score", "load", "alert"]
RUNS = 3
DEADLINE_SECS = 300  # a bound on waiting, never an assertion on speed


def logical_dates() -> list[datetime]:
    """The last RUNS minutes, at 20 s past each: manual runs of their own (no scheduled or
    backfilled run has such a date), each covering a distinct interval, all young enough to be
    fetched from the API."""
    now = datetime.now(UTC).replace(second=20, microsecond=0)
    return [now - timedelta(minutes=k) for k in range(RUNS, 0, -1)]


def trigger(cluster, dates: list[datetime]) -> dict[datetime, str]:
    """`airflow dags trigger` for each date, side by side; the run ids by date."""
    procs = [
        subprocess.Popen(
            [VENV_BIN / "airflow", "dags", "trigger", "fraud_pipeline", "-e", d.isoformat()],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in dates
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"airflow dags trigger failed:\n{out}\n{err}"
    rows = sql(
        cluster.metadata_url,
        "select execution_date, run_id from dag_run where"
        " dag_id = 'fraud_pipeline' and execution_date = any(%s)",
        dates,
    )
    return {d: run_id for d, run_id in rows}


def task_rows(cluster, run_ids) -> list[tuple]:
    return sql(
        cluster.metadata_url,
        "select run_id, task_id, state, hostname, try_number from task_instance"
        " where dag_id = 'fraud_pipeline' and run_id = any(%s)",
        list(run_ids),
    )


def worker_running(cluster, run_id: str, task_id: str, program: str) -> str | None:
    """The worker whose process tree is executing `program task_id` for this task, if any."""
    rows = [r for r in task_rows(cluster, [run_id]) if r[1] == task_id and r[2] == "running"]
    if not rows or rows[0][3] not in cluster.workers:
        return None
    worker = rows[0][3]
    for p in cluster.procs.tree(worker):
        try:
            if p.cmdline()[:2] == [program, task_id]:
                return worker
        except psutil.NoSuchProcess:
            continue  # ended meanwhile
    return None


def wait_until(condition, what: str, cluster):
    deadline = time.monotonic() + DEADLINE_SECS
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what} after {DEADLINE_SECS} s:\n{cluster.procs.diagnostics()}")


@pytest.fixture(scope="module")
def runs(celery_cluster):
    """Trigger the runs, kill the worker executing the last run's extract, wait for the end."""
    cluster = celery_cluster
    run_ids = trigger(cluster, logical_dates())
    assert len(run_ids) == RUNS, run_ids
    last = run_ids[max(run_ids)]
    program = cluster.env["FRAUDCTL_BIN"]
    killed = wait_until(
        lambda: worker_running(cluster, last, "extract", program),
        "the last run's extract to execute",
        cluster,
    )
    cluster.procs.kill(killed)

    def finished():
        states = dict(
            sql(
                cluster.metadata_url,
                "select run_id, state from dag_run where run_id = any(%s)",
                list(run_ids.values()),
            )
        )
        return all(s in ("success", "failed") for s in states.values()) and states

    states = wait_until(finished, "every run to finish", cluster)
    return {"run_ids": run_ids, "last": last, "killed": killed, "states": states}


def explain(cluster) -> str:
    return "\n" + cluster.procs.diagnostics()


def attempts_by_worker(cluster) -> dict[str, int]:
    """Task attempts each worker ran, killed ones included (task_instance keeps only a task's last
    attempt; every attempt is a LocalTaskJob of the worker's hostname)."""
    return dict(
        sql(
            cluster.metadata_url,
            "select hostname, count(*) from job where job_type ="
            " 'LocalTaskJob' and dag_id = 'fraud_pipeline' and hostname = any(%s)"
            " group by hostname",
            list(cluster.workers),
        )
    )


def test_every_run_succeeds_with_tasks_on_both_workers(celery_cluster, runs):
    rows = task_rows(celery_cluster, runs["run_ids"].values())
    assert set(runs["states"].values()) == {"success"}, (runs["states"], rows, explain(celery_cluster))
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        (run_id, task, "success") for run_id in runs["run_ids"].values() for task in STAGES
    ), rows
    assert {r[3] for r in rows} <= set(celery_cluster.workers), rows
    attempts = attempts_by_worker(celery_cluster)
    assert set(attempts) == set(celery_cluster.workers), (attempts, rows)
    assert sum(attempts.values()) == len(rows) + 1, "one attempt a task, and the killed one"


def test_the_killed_task_was_retried_once_on_the_other_worker(celery_cluster, runs):
    rows = {r[1]: r for r in task_rows(celery_cluster, [runs["last"]])}
    survivor = next(w for w in celery_cluster.workers if w != runs["killed"])
    _, _, state, hostname, try_number = rows["extract"]
    assert (state, hostname, try_number) == ("success", survivor, 2), (rows, explain(celery_cluster))
    failures = sql(
        celery_cluster.metadata_url,
        "select count(*) from task_fail where run_id = %s and task_id = 'extract'",
        runs["last"],
    )[0][0]
    assert failures == 1, "the killed attempt is recorded as one failure (the zombie)"
    assert all(r[4] == 1 for task, r in rows.items() if task != "extract"), rows


def captured(cluster, run_ids) -> dict[str, str]:
    """trans_num -> run id of every payment in the runs' raw files (what extract captured)."""
    out = {}
    for run_id in run_ids:
        end = sql(cluster.metadata_url, "select data_interval_end from dag_run where run_id = %s", run_id)[0][
            0
        ]
        raw = cluster.runs_root / "fraud_pipeline" / end.strftime("%Y%m%dT%H%M%S") / "raw.jsonl"
        for line in raw.read_text().splitlines()[1:]:
            trans_num = json.loads(line)["trans_num"]
            assert trans_num not in out, f"{trans_num} captured twice"
            out[trans_num] = run_id
    return out


def test_every_captured_payment_is_one_row(celery_cluster, runs):
    expected = captured(celery_cluster, runs["run_ids"].values())
    rows = sql(celery_cluster.fraud_db, "select trans_num, run_id from payments_scored")
    assert len(rows) == len({t for t, _ in rows})  # the primary key, stated
    assert dict(rows) == expected
    assert set(runs["run_ids"].values()) == set(expected.values()), "every run captured payments"


def test_every_predicted_fraud_is_in_exactly_one_email(celery_cluster, runs):
    frauds = sql(
        celery_cluster.fraud_db,
        "select p.trans_num, a.status, a.message_id from payments_scored p left join"
        " fraud_alerts a using (trans_num) where p.predicted_fraud",
    )
    assert frauds, "no predicted fraud: the runs prove nothing about alerts"
    assert {status for _, status, _ in frauds} == {"sent"}, frauds
    mailed = [m["Message-ID"].strip("<>") for m in celery_cluster.mailbox.messages()]
    assert len(mailed) == len(set(mailed)), f"an email sent twice: {mailed}"
    assert set(mailed) == {message_id.strip("<>") for _, _, message_id in frauds}
