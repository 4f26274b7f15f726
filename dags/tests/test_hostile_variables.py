"""Airflow Variables are values, never code: a hostile Variable runs nothing on the worker and
deletes nothing (the real Airflow CLI's `tasks test`, the real fraudctl)."""

import os
import time

import pytest
from conftest import tasks_test_state

LOGICAL = "2024-06-01T06:00:00+00:00"  # a morning no other test uses


@pytest.mark.parametrize("retention_days", ["removed[$(touch {marker})]", "0"])
def test_bad_retention_days_runs_nothing_and_deletes_nothing(airflow, tmp_path, retention_days):
    marker = tmp_path / "command-ran"
    runs_root = tmp_path / "runs"
    fresh = runs_root / "fraud_pipeline" / "20240601T055900"
    old = runs_root / "fraud_daily_digest" / "20200101T060000"
    for d in (fresh, old):
        d.mkdir(parents=True)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))

    done = airflow(
        "tasks",
        "test",
        "fraud_daily_digest",
        "cleanup_run_dirs",
        LOGICAL,
        check=False,
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=runs_root,
        AIRFLOW_VAR_FRAUDCTL_RETENTION_DAYS=retention_days.format(marker=marker),
    )

    output = done.stdout + done.stderr
    assert not marker.exists(), "the Variable's value ran as a command"
    assert fresh.exists() and old.exists(), "no command may run with an invalid Variable"
    assert tasks_test_state(done) == "failed", output[-3000:]
    assert "Variable fraudctl_retention_days is" in output, output[-3000:]
    assert "a whole number from 1 to 3650" in output


@pytest.mark.parametrize(
    "dag_id, task_id", [("fraud_pipeline", "extract"), ("fraud_daily_digest", "build_report")]
)
def test_variable_fraudctl_bin_is_not_executed(airflow, tmp_path, dag_id, task_id):
    """The binary comes from the deployment (FRAUDCTL_BIN of the worker), not from a Variable."""
    marker = tmp_path / "impostor-ran"
    impostor = tmp_path / "impostor"
    impostor.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    impostor.chmod(0o755)
    runs_root = tmp_path / "runs"

    done = airflow(
        "tasks",
        "test",
        dag_id,
        task_id,
        LOGICAL,
        check=False,
        AIRFLOW_VAR_FRAUDCTL_BIN=impostor,
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=runs_root,
    )

    output = done.stdout + done.stderr
    assert not marker.exists(), "the program named by the Variable fraudctl_bin ran"
    assert tasks_test_state(done) in ("success", "skipped"), output[-3000:]
    assert done.returncode == 0, output[-3000:]
    if task_id == "extract":  # the real fraudctl ran: a past interval without raw file is skipped
        assert "skipped: no raw file was captured" in output, output[-3000:]
    else:  # the real fraudctl's report: a day before any run, so no digest
        assert "no digest: the pipeline never saw 2024-05-31" in output, output[-3000:]
