"""Airflow's own data is kept for fraudctl_airflow_retention_days (default 30): the digest DAG's
clean_airflow_db (`airflow db clean`) and clean_airflow_logs tasks, run by the real Airflow CLI
against the tests' metadata database and a log folder named by Airflow's configuration."""

import os
import time
from datetime import UTC, datetime, timedelta

from conftest import sql


def now_logical() -> str:
    """A logical date for `tasks test` of the digest: its data_interval_end, so "30 days ago"
    is counted from (about) now. A minute ago: `tasks test` refuses a logical date in the future
    ("Dependencies not met") and runs nothing."""
    return (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()


def runs_of(airflow, run_id: str) -> tuple:
    dag_runs = sql(airflow.metadata_url, "select count(*) from dag_run where run_id = %s", run_id)
    tis = sql(airflow.metadata_url, "select count(*) from task_instance where run_id = %s", run_id)
    return dag_runs[0][0], tis[0][0]


def test_clean_airflow_db_drops_old_runs_and_keeps_recent_ones(airflow):
    # Two runs of past minutes (skipped: no raw data), one started 60 days ago, one yesterday.
    old, recent = datetime(2024, 4, 1, 0, 0, tzinfo=UTC), datetime(2024, 4, 1, 0, 1, tzinfo=UTC)
    run_ids = {}
    for logical, age in ((old, "60 days"), (recent, "1 day")):
        airflow("dags", "test", "fraud_pipeline", logical.isoformat())
        run_ids[logical] = airflow.run_id("fraud_pipeline", logical)
        for table in ("dag_run", "task_instance"):
            sql(
                airflow.metadata_url,
                f"update {table} set start_date = now() - interval '{age}',"
                f" end_date = now() - interval '{age}' where run_id = %s",
                run_ids[logical],
            )
    assert runs_of(airflow, run_ids[old]) == (1, 5)
    starts = sql(
        airflow.metadata_url,
        "select run_id, now() - start_date > interval '30 days'"
        " from dag_run where dag_id = 'fraud_pipeline' order by start_date",
    )
    assert starts[:1] == [(run_ids[old], True)] and starts[-1] == (run_ids[recent], False), starts

    done = airflow("tasks", "test", "fraud_daily_digest", "clean_airflow_db", now_logical())

    assert runs_of(airflow, run_ids[old]) == (0, 0), done.stdout[-5000:]
    assert runs_of(airflow, run_ids[recent]) == (1, 5)


def test_clean_airflow_logs_deletes_old_files_and_keeps_new_ones(airflow, tmp_path):
    folder = tmp_path / "logs"  # the log folder is Airflow's setting, not a path in the DAG
    old = folder / "dag_id=fraud_pipeline/run_id=old/task_id=extract/attempt=1.log"
    new = folder / "dag_id=fraud_pipeline/run_id=new/task_id=extract/attempt=1.log"
    left_empty = folder / "dag_id=fraud_pipeline/run_id=emptied"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_text("log\n")
    left_empty.mkdir()
    sixty_days_ago, two_hours_ago = time.time() - 60 * 86400, time.time() - 7200
    os.utime(old, (sixty_days_ago, sixty_days_ago))
    os.utime(left_empty, (two_hours_ago, two_hours_ago))

    done = airflow(
        "tasks",
        "test",
        "fraud_daily_digest",
        "clean_airflow_logs",
        now_logical(),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=folder,
    )

    assert not old.exists() and new.exists() and not left_empty.exists()
    assert '"removed": 1' in done.stdout + done.stderr
