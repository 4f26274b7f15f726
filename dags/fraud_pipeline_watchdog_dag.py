"""
### fraud_pipeline_watchdog

Every 2 minutes: is `fraud_pipeline` still succeeding? When no run has succeeded for
`fraudctl_watchdog_minutes` (default 10), or a run has been running for longer than that, one email
to `fraudctl_ops_email` through `fraudctl_smtp` (what is wrong, since when); one more when it
succeeds again. Never more for the same incident, however often it is checked: the incident's state
is the check's XCom, read by the next check (max_active_runs=1, so checks never overlap).

And is the live path (`fraudctl live`) capturing? When its lease is let go, or its heartbeat is
older than `fraudctl_live_stale_secs`, one email ("alerts are back to minute latency"), one more
when it is back. (No email while no live path was ever deployed.)

It reads only Airflow's record of fraud_pipeline's runs (its metadata database on Airflow 2, the
execution API on 3) and the live path's lease, never fraud_pipeline's tasks
or files (logic in `fraudctl_watchdog.py`). catchup=False: a check is about now, a missed one is
not worth replaying.
"""

from fraudctl_compat import DAG, PythonOperator
from fraudctl_defaults import DAG_DEFAULTS
from fraudctl_schedule import every
from fraudctl_variables import var
from fraudctl_watchdog import check_live_path, check_pipeline

with DAG(
    dag_id="fraud_pipeline_watchdog",
    description="One email to operations when fraud_pipeline stops succeeding, one when it recovers",
    schedule=every("*/2 * * * *"),
    doc_md=__doc__,
    **DAG_DEFAULTS,
    tags=["fraudctl", "operations"],
) as dag:
    PythonOperator(
        task_id="check_pipeline",
        python_callable=check_pipeline,
        op_kwargs={"minutes": var("watchdog_minutes"), "ops_email": var("ops_email")},
    )
    PythonOperator(
        task_id="check_live_path",
        python_callable=check_live_path,
        op_kwargs={"stale_secs": var("live_stale_secs"), "ops_email": var("ops_email")},
    )
