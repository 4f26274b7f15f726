"""Only transient failures are retried: a fraudctl stage that exits 4 or 5 fails its task at once
(the real Airflow CLI's `tasks test`, the real fraudctl), one that exits 3 is up for retry."""
from datetime import datetime, timedelta, timezone

import pytest

from fraudctl_common import PERMANENT_EXIT_CODES, permanent_failure


def recent() -> str:
    """A logical date a few minutes ago, so extract polls the API instead of skipping, at 30 s
    past the minute, so no scheduled or backfilled run has it (`tasks test` then runs in a run of
    its own, kept in memory; the run directories go to the test's own runs root)."""
    logical = datetime.now(timezone.utc).replace(second=30, microsecond=0) - timedelta(minutes=3)
    return logical.isoformat()


@pytest.mark.parametrize("code, permanent", [(3, False), (4, True), (5, True), (-9, False),
                                             (None, False), (1, False)])
def test_exit_codes_that_no_retry_can_change_fail_at_once(code, permanent):
    failure = permanent_failure(code)
    assert (failure is not None) == permanent
    if permanent:
        assert f"exited {code}" in str(failure) and PERMANENT_EXIT_CODES[code] in str(failure)


def test_a_configuration_error_fails_the_task_without_a_retry(airflow, tmp_path):
    # No card-hash key in the worker's environment: extract exits 5.
    done = airflow("tasks", "test", "fraud_pipeline", "extract", recent(), check=False,
                   FRAUDCTL_PAN_HASH_KEY="", AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "return code 5" in output and "fraudctl exited 5: configuration" in output, output[-3000:]
    assert "Marking task as FAILED" in output and "UP_FOR_RETRY" not in output, output[-3000:]


def test_an_unavailable_service_is_retried(airflow, tmp_path):
    # The payments API on a closed port: extract exits 3 after its own retries.
    done = airflow("tasks", "test", "fraud_pipeline", "extract", recent(), check=False,
                   AIRFLOW_VAR_FRAUDCTL_API_URL="http://127.0.0.1:9/payments",
                   AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path)
    output = done.stdout + done.stderr
    assert "return code 3" in output and "fraudctl exited" not in output, output[-3000:]
    assert "Marking task as UP_FOR_RETRY" in output, output[-3000:]
