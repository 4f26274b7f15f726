"""The hostname Airflow records for the tasks a worker runs (task_instance.hostname), for the
test's workers that share one machine: FRAUDCTL_TEST_WORKER_NAME, else the machine's name.
Set as AIRFLOW__CORE__HOSTNAME_CALLABLE=worker_hostname.hostname (conftest.celery_cluster)."""

import os

from airflow.utils.net import getfqdn


def hostname() -> str:
    return os.environ.get("FRAUDCTL_TEST_WORKER_NAME") or getfqdn()
