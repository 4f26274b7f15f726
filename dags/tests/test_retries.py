"""Only transient failures are retried: a fraudctl stage that exits 4 or 5 fails its task at once
(the real Airflow CLI's `tasks test`, the real fraudctl), one that exits 3 is up for retry."""

import pytest
from conftest import recent, tasks_test_state
from fraudctl_exit_codes import PERMANENT_EXIT_CODES, permanent_failure


@pytest.mark.parametrize(
    "code, permanent", [(3, False), (4, True), (5, True), (-9, False), (None, False), (1, False)]
)
def test_exit_codes_that_no_retry_can_change_fail_at_once(code, permanent):
    failure = permanent_failure(code)
    assert (failure is not None) == permanent
    if permanent:
        assert f"exited {code}" in str(failure) and PERMANENT_EXIT_CODES[code] in str(failure)


def test_a_configuration_error_fails_the_task_without_a_retry(airflow, tmp_path):
    # No card-hash key in the worker's environment: extract exits 5.
    done = airflow(
        "tasks",
        "test",
        "fraud_pipeline",
        "extract",
        recent(),
        check=False,
        FRAUDCTL_PAN_HASH_KEY="",
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path,
    )
    output = done.stdout + done.stderr
    assert tasks_test_state(done) == "failed", output[-3000:]
    assert "return code 5" in output and "fraudctl exited 5: configuration" in output, output[-3000:]
    assert "up_for_retry" not in output.lower(), output[-3000:]


def test_an_unavailable_service_is_retried(airflow, tmp_path, ops_mailbox):
    # The payments API on a closed port: extract exits 3 after its own retries.
    emails = len(ops_mailbox.messages())
    done = airflow(
        "tasks",
        "test",
        "fraud_pipeline",
        "extract",
        recent(),
        check=False,
        AIRFLOW_VAR_FRAUDCTL_API_URL="http://127.0.0.1:9/payments",
        AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT=tmp_path,
        AIRFLOW_VAR_FRAUDCTL_OPS_EMAIL="ops@example.test",
        AIRFLOW_CONN_FRAUDCTL_SMTP=ops_mailbox.connection,
    )
    output = done.stdout + done.stderr
    assert "return code 3" in output and "fraudctl exited" not in output, output[-3000:]
    assert tasks_test_state(done) == "up_for_retry", output[-3000:]
    assert len(ops_mailbox.messages()) == emails  # a retry is not a failure for good: no email
