"""Everything the fraudctl DAGs take from Airflow whose home or form differs between Airflow 2.8.3
and Airflow 3, chosen by the Airflow installed: the one module that knows there are two. Not a
DAG file (.airflowignore). Every other DAG module imports these names from here, never the
version-specific ones (ruff's AIR3 rules then have nothing to say about them).

Airflow 3 moved the operators to apache-airflow-providers-standard and the authoring API to the
Task SDK (`airflow.sdk`), and a task there no longer reaches the metadata database: the reads of
DAG runs go through the Task SDK's execution API instead (`latest_run`, `dag_is_paused`), which
answers the same questions the 2.8.3 code asks the database.
"""

from dataclasses import dataclass
from datetime import datetime

from airflow.configuration import conf

import airflow

AIRFLOW_MAJOR = int(airflow.__version__.split(".")[0])

if AIRFLOW_MAJOR >= 3:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, BaseHook, CronDataIntervalTimetable, CronTriggerTimetable, Variable, task
    from airflow.sdk.bases.skipmixin import SkipMixin
    from airflow.sdk.exceptions import (
        AirflowConfigException,
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )
else:
    from airflow.decorators import task
    from airflow.exceptions import (
        AirflowConfigException,
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )
    from airflow.hooks.base import BaseHook
    from airflow.models import Variable
    from airflow.models.skipmixin import SkipMixin
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator
    from airflow.timetables.interval import CronDataIntervalTimetable
    from airflow.timetables.trigger import CronTriggerTimetable

    from airflow import DAG

__all__ = [
    "AIRFLOW_MAJOR",
    "DAG",
    "AirflowConfigException",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "BaseHook",
    "BashOperator",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "PythonOperator",
    "SkipMixin",
    "task",
]

BACKFILL = "backfill"  # a DAG run's run_type for a backfill, on both


def variable_value(key: str) -> str | None:
    """The Variable `key` (metadata database or AIRFLOW_VAR_*), None when it is not set."""
    if AIRFLOW_MAJOR >= 3:
        return Variable.get(key, default=None)
    return Variable.get(key, default_var=None)


def dag_runs_url(dag_id: str) -> str:
    """The UI's page of a DAG's runs, on the address the UI is configured with ([webserver]
    base_url on 2.8.3, [api] base_url on 3)."""
    if AIRFLOW_MAJOR >= 3:
        return f"{conf.get('api', 'base_url', fallback='http://localhost:8080')}/dags/{dag_id}/runs"
    return f"{conf.get('webserver', 'base_url')}/dags/{dag_id}/grid"


def attempt(ti) -> int:
    """Which try of the task instance this is (1, 2, …), in its failure callback too."""
    return ti.try_number if AIRFLOW_MAJOR >= 3 else ti.prev_attempted_tries


def skip_downstream(operator, context, tasks) -> None:
    """Before a task that skips itself: mark `tasks` (its downstream) skipped at once, on Airflow
    2.8.3 (SkipMixin.skip), whose backfill would otherwise deadlock (FraudctlStageOperator). On
    Airflow 3 nothing: its scheduler, which runs backfills too, skips them by trigger rule, and
    SkipMixin.skip there would end the task as a success instead of skipped."""
    if AIRFLOW_MAJOR < 3:
        operator.skip(context["dag_run"], context["logical_date"], tasks)


@dataclass(frozen=True)
class Run:
    """What the DAGs read of a DAG run: the same fields on both versions."""

    run_id: str
    run_type: str
    logical_date: datetime
    start_date: datetime | None
    end_date: datetime | None


def latest_run(dag_id: str, before: datetime, state: str) -> Run | None:
    """The DAG run of `dag_id` in `state` (success, failed, running) with the latest logical date
    before `before`, or None. Airflow 3: the execution API (GetPreviousDagRun), as a task may not
    open the metadata database; 2.8.3: the metadata database, the same query."""
    if AIRFLOW_MAJOR >= 3:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetPreviousDagRun

        found = task_runner.SUPERVISOR_COMMS.send(
            GetPreviousDagRun(dag_id=dag_id, logical_date=before, state=state)
        ).dag_run
        if found is None:
            return None
        return Run(
            found.run_id, str(found.run_type.value), found.logical_date, found.start_date, found.end_date
        )
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.execution_date < before, DagRun.state == state)
            .order_by(DagRun.execution_date.desc())
            .limit(1)
        ).first()
        if found is None:
            return None
        return Run(found.run_id, str(found.run_type), found.execution_date, found.start_date, found.end_date)


def dag_is_paused(dag_id: str) -> bool:
    if AIRFLOW_MAJOR >= 3:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        return RuntimeTaskInstance.get_dag(dag_id).is_paused
    from airflow.models import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return bool(session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id)))
