"""What every fraudctl DAG and task is declared with. Not a DAG file (.airflowignore)."""

from datetime import timedelta

import pendulum
from fraudctl_notify import notify_failure
from fraudctl_variables import TEMPLATE_FILTERS

# Retried with a growing delay, at most 5 minutes a try; a task that fails for good emails
# operations (a retry does not).
DEFAULT_ARGS = {
    "owner": "fraud-team",
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(minutes=5),
    "on_failure_callback": notify_failure,
}

#: One run at a time, no catch-up (backfills are asked for; explicit, as the default differs
#: between Airflow 2 and 3), the tasks' defaults above and the template filters of
#: fraudctl_variables.
DAG_DEFAULTS = {
    "start_date": pendulum.datetime(2024, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "user_defined_filters": TEMPLATE_FILTERS,
}
