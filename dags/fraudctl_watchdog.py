"""The watchdog of fraud_pipeline (DAG fraud_pipeline_watchdog): is the pipeline still succeeding?
One email to operations when an incident begins, one when it ends. Not a DAG file (.airflowignore).

It reads only Airflow's metadata database (the scheduler's record of fraud_pipeline's runs), so it
reports whatever state fraud_pipeline's runs are in (failing, stuck, paused, never scheduled), as
long as the scheduler still schedules the watchdog itself.

The incident's state is the check's return value (XCom): each check starts from the latest earlier
check's, so it survives restarts, and with max_active_runs=1 no two checks overlap, so one incident
gives one email however often it is checked. A check that cannot send its email fails and leaves
the state as it was: the next check sends it.
"""

import logging
from datetime import datetime, timedelta

import psycopg2
from airflow.configuration import conf
from airflow.hooks.base import BaseHook
from airflow.models import DagModel, DagRun
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from fraudctl_common import FRAUD_DB_CONN_ID, email_ops
from sqlalchemy import func, select

PIPELINE = "fraud_pipeline"
log = logging.getLogger(__name__)


def utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def latest_success(session) -> datetime | None:
    return session.scalar(
        select(func.max(DagRun.end_date)).where(
            DagRun.dag_id == PIPELINE, DagRun.state == DagRunState.SUCCESS
        )
    )


def pipeline_problems(
    session, now: datetime, limit: timedelta, last_success: datetime | None, watching_since: datetime
) -> list:
    """What is wrong with fraud_pipeline now: no success for longer than `limit` (or, if it never
    succeeded, since the watchdog's first check), a run running longer than `limit`. Empty: nothing."""
    runs = select(DagRun).where(DagRun.dag_id == PIPELINE)
    problems = []
    if last_success is None and watching_since < now - limit:
        problems.append(f"no run has succeeded since the watchdog's first check ({utc(watching_since)})")
    elif last_success is not None and last_success < now - limit:
        problems.append(f"no run has succeeded since {utc(last_success)}")
    stuck = session.scalars(
        runs.where(DagRun.state == DagRunState.RUNNING, DagRun.start_date < now - limit)
    ).first()
    if stuck is not None:
        problems.append(f"run {stuck.run_id} has been running since {utc(stuck.start_date)}")
    if problems and session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == PIPELINE)):
        problems.append("the DAG is paused")
    return problems


def track(
    ti, subject: str, problems: list, facts: dict, now: datetime, began: datetime | None = None
) -> dict:
    """One incident's emails: one to operations when `problems` appear ("<subject> ..."), one when
    they are gone; none in between. The incident began at `began` (the last time all was well,
    when known), else when it was noticed. The state (`incident_since`) is the check's return
    value (XCom), which the next check reads."""
    since = (ti.xcom_pull(task_ids=ti.task_id, include_prior_dates=True) or {}).get("incident_since")
    log.info("%s: %s; incident since: %s", subject, "; ".join(problems) or "healthy", since)
    ops_email = facts.pop("to")
    if problems and not since:
        since = (began or now).isoformat()
        email_ops(
            ops_email,
            f"[fraudctl] {subject} {facts.pop('down')}",
            {
                **facts,
                **{f"problem {i}": p for i, p in enumerate(problems, 1)},
                "incident began": utc(began or now),
                "noticed": utc(now),
            },
        )
    elif since and not problems:
        email_ops(
            ops_email,
            f"[fraudctl] {subject} {facts.pop('up')}",
            {**facts, "incident began": utc(datetime.fromisoformat(since)), "recovered": utc(now)},
        )
        since = None
    return {"incident_since": since, "problems": problems}


def check_pipeline(minutes: str, ops_email: str, ti) -> dict:
    """The watchdog's task: today's problems against the previous check's state; returns the new
    state (`incident_since`: when the incident began, None when there is none)."""
    limit, now = timedelta(minutes=int(minutes)), timezone.utcnow()
    with create_session() as session:
        watching_since = (
            session.scalar(select(func.min(DagRun.start_date)).where(DagRun.dag_id == ti.dag_id)) or now
        )
        succeeded = latest_success(session)
        problems = pipeline_problems(session, now, limit, succeeded, watching_since)
    facts = {
        "to": ops_email,
        "down": "stalled",
        "up": "recovered",
        "DAG": PIPELINE,
        "runs": f"{conf.get('webserver', 'base_url')}/dags/{PIPELINE}/grid",
        "limit": f"{minutes} minutes (Variable fraudctl_watchdog_minutes)",
    }
    return track(ti, PIPELINE, problems, facts, now, began=succeeded or watching_since)


def live_path_problems(database_uri: str, stale_secs: int) -> tuple[list, datetime | None]:
    """What is wrong with the live path (fraudctl live) now: its lease let go, or its heartbeat
    older than `stale_secs`. Empty: it captures, or no live path was ever deployed. And when it
    was last seen capturing."""
    with psycopg2.connect(database_uri) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT holder, heartbeat_at, released_at,"
            " heartbeat_at < now() - make_interval(secs => %s) FROM live_lease",
            (stale_secs,),
        )
        row = cur.fetchone()
    conn.close()
    if row is None:
        return [], None
    holder, beat, released, stale = row
    if released is not None:
        return [f"it stopped at {utc(released)} ({holder}) and no process took the lease since"], released
    if stale:
        return [f"its last heartbeat was at {utc(beat)} ({holder})"], beat
    return [], None


def check_live_path(stale_secs: str, ops_email: str, ti) -> dict:
    """The watchdog's second task: is the live path capturing? One email when it stops (alerts
    are then back to the every-minute DAG's latency), one when it is back."""
    uri = BaseHook.get_connection(FRAUD_DB_CONN_ID).get_uri()
    facts = {
        "to": ops_email,
        "down": "down: alerts are back to minute latency",
        "up": "back: alerts within seconds again",
        "what": "fraudctl live (the live path); the every-minute DAG captures meanwhile",
        "stale after": f"{stale_secs} s without a heartbeat (Variable fraudctl_live_stale_secs)",
    }
    problems, began = live_path_problems(uri, int(stale_secs))
    return track(ti, "live path", problems, facts, timezone.utcnow(), began=began)
