"""The watchdog of fraud_pipeline (DAG fraud_pipeline_watchdog): is the pipeline still succeeding?
One email to operations when an incident begins, one when it ends. Not a DAG file (.airflowignore).

It reads only Airflow's record of fraud_pipeline's runs (fraudctl_compat.latest_run and
dag_is_paused: the metadata database on Airflow 2, the execution API on 3, where a task may not
open the database), so it reports whatever state fraud_pipeline's runs are in (failing, stuck,
paused, never scheduled), as long as the scheduler still schedules the watchdog itself.

The incident's state is the check's return value (XCom): each check starts from the latest earlier
check's, so it survives restarts, and with max_active_runs=1 no two checks overlap, so one incident
gives one email however often it is checked. A check that cannot send its email fails and leaves
the state as it was: the next check sends it. The state also keeps when the watchdog first
checked (`watching_since`): a pipeline that never succeeded is counted from then.
"""

import logging
from datetime import UTC, datetime, timedelta

import psycopg2
from fraudctl_compat import BaseHook, dag_is_paused, dag_runs_url, latest_run
from fraudctl_notify import email_ops
from fraudctl_templates import FRAUD_DB_CONN_ID

PIPELINE = "fraud_pipeline"
log = logging.getLogger(__name__)


def utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def pipeline_problems(
    now: datetime, limit: timedelta, last_success: datetime | None, watching_since: datetime
) -> list:
    """What is wrong with fraud_pipeline now: no success for longer than `limit` (or, if it never
    succeeded, since the watchdog's first check), a run running longer than `limit`. Empty: nothing."""
    problems = []
    if last_success is None and watching_since < now - limit:
        problems.append(f"no run has succeeded since the watchdog's first check ({utc(watching_since)})")
    elif last_success is not None and last_success < now - limit:
        problems.append(f"no run has succeeded since {utc(last_success)}")
    running = latest_run(PIPELINE, now, "running")  # max_active_runs=1: the one running
    if running is not None and running.start_date is not None and running.start_date < now - limit:
        problems.append(f"run {running.run_id} has been running since {utc(running.start_date)}")
    if problems and dag_is_paused(PIPELINE):
        problems.append("the DAG is paused")
    return problems


def previous_state(ti) -> dict:
    """The latest earlier check's return value (XCom), {} before the first. (map_indexes=-1, the
    index of an unmapped task: without it Airflow 3 returns every earlier check's value.)"""
    return ti.xcom_pull(task_ids=ti.task_id, include_prior_dates=True, map_indexes=-1) or {}


def track(
    previous: dict, subject: str, problems: list, facts: dict, now: datetime, began: datetime | None = None
) -> dict:
    """One incident's emails: one to operations when `problems` appear ("<subject> ..."), one when
    they are gone; none in between. The incident began at `began` (the last time all was well,
    when known), else when it was noticed. The state (`incident_since`) is the check's return
    value (XCom), which the next check reads (`previous`)."""
    since = previous.get("incident_since")
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
    limit, now, previous = timedelta(minutes=int(minutes)), datetime.now(UTC), previous_state(ti)
    watching_since = datetime.fromisoformat(previous.get("watching_since") or now.isoformat())
    succeeded = latest_run(PIPELINE, now, "success")
    succeeded = succeeded and succeeded.end_date
    problems = pipeline_problems(now, limit, succeeded, watching_since)
    facts = {
        "to": ops_email,
        "down": "stalled",
        "up": "recovered",
        "DAG": PIPELINE,
        "runs": dag_runs_url(PIPELINE),
        "limit": f"{minutes} minutes (Variable fraudctl_watchdog_minutes)",
    }
    state = track(previous, PIPELINE, problems, facts, now, began=succeeded or watching_since)
    return {**state, "watching_since": watching_since.isoformat()}


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
    return track(previous_state(ti), "live path", problems, facts, datetime.now(UTC), began=began)
