"""Shared pieces of the fraudctl DAGs: the templates that turn Airflow Variables and Connections
into the environment of a `fraudctl` command. Not a DAG file (listed in .airflowignore).

Every value is a Jinja template rendered at run time, never at parse time, so parsing the DAG
files touches neither the metadata database nor any secret. Variables are checked as they are
rendered (fraudctl_variables.py); one left to fraudctl's default renders as "" and the command
unsets empty FRAUDCTL_* variables first. Secrets reach a command only through the environment of
that command (a Connection's password, or the worker's own environment for FRAUDCTL_PAN_HASH_KEY
and AWS_*), never its command line. The binary is the deployment's, never a Variable: FRAUDCTL_BIN
of the worker's environment (Dockerfile.airflow, scripts/stack.sh), else `fraudctl` on its PATH.
"""

import html
import json
import logging
import os
import re
from datetime import timedelta

import pendulum
from airflow.configuration import conf
from airflow.exceptions import (
    AirflowConfigException,
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
)
from airflow.models import DagRun
from airflow.models.skipmixin import SkipMixin
from airflow.operators.bash import BashOperator
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.timetables.trigger import CronTriggerTimetable
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunType
from fraudctl_variables import TEMPLATE_FILTERS, time_zone, value, var
from sqlalchemy import select

log = logging.getLogger(__name__)

FRAUD_DB_CONN_ID = "fraud_db"  # Postgres connection to the business database
SMTP_CONN_ID = "fraudctl_smtp"  # SMTP connection, shared by the alerts and the morning digest

DEFAULT_BIN = "fraudctl"  # on PATH, when the worker's environment has no FRAUDCTL_BIN

RUNS_ROOT = var("runs_root")
MODEL_DIR = var("model_dir")
DATABASE_URL = "{{ conn.%s.get_uri() }}" % FRAUD_DB_CONN_ID

# The SMTP connection's extras follow the SMTP provider's SmtpHook: SSL unless disable_ssl,
# STARTTLS unless disable_tls; from_email is the sender. fraudctl gets the same server as a URL.
_SMTP = "conn.%s" % SMTP_CONN_ID
SMTP_ENV = {
    "FRAUDCTL_SMTP_URL": (
        "{%% set x = %s.extra_dejson %%}"
        "{{ 'smtps' if not x.get('disable_ssl') else ('smtp' if x.get('disable_tls') else 'smtp+starttls') }}"
        "://{{ %s.host }}:{{ %s.port or 25 }}" % (_SMTP, _SMTP, _SMTP)
    ),
    "FRAUDCTL_SMTP_USERNAME": "{{ %s.login or '' }}" % _SMTP,
    "FRAUDCTL_SMTP_PASSWORD": "{{ %s.password or '' }}" % _SMTP,
    "FRAUDCTL_ALERT_FROM": "{{ %s.extra_dejson.get('from_email', '') }}" % _SMTP,
}

# Parse-time settings, from the environment of every Airflow process that parses the DAG files
# (scheduler, workers, webserver, the CLI): a schedule must be known when the file is parsed, so
# these cannot be Variables. FRAUDCTL_BUSINESS_TIME_ZONE is also `fraudctl migrate`'s (the day of
# v_daily_fraud_report): one setting for the database's "yesterday" and the digest's.
BUSINESS_TIME_ZONE = ("FRAUDCTL_BUSINESS_TIME_ZONE", "UTC")
DIGEST_LOCAL_TIME = ("FRAUDCTL_DIGEST_LOCAL_TIME", "07:00")


def clock_time(text: str) -> tuple:
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", text):
        raise ValueError("a time of day as HH:MM, such as 07:00")
    return int(text[:2]), int(text[3:])


def setting(name_and_default: tuple, check):
    """A parse-time setting, checked: an invalid one fails the DAG file's import, naming it."""
    name, default = name_and_default
    text = os.environ.get(name, "").strip() or default
    try:
        return check(text)
    except ValueError as exc:
        raise AirflowConfigException(
            f"{name} is {text!r}, which is not {exc}. Fix it in the environment of the Airflow "
            f"scheduler, workers and webserver, or unset it to use its default ({default}); "
            "see airflow/README.md, Business time zone."
        ) from None


def business_time_zone() -> str:
    return setting(BUSINESS_TIME_ZONE, time_zone)


def digest_timetable() -> CronTriggerTimetable:
    """Every day at FRAUDCTL_DIGEST_LOCAL_TIME in FRAUDCTL_BUSINESS_TIME_ZONE, across DST changes;
    the data interval is the day before the run (its end, the run's time, decides "yesterday")."""
    hour, minute = setting(DIGEST_LOCAL_TIME, clock_time)
    return CronTriggerTimetable(
        f"{minute} {hour} * * *", timezone=business_time_zone(), interval=timedelta(days=1)
    )


# clean_airflow_logs: every file under Airflow's log folder older than RETENTION_DAYS, then the
# directories left empty (not touched for an hour: never one a starting task has just made).
PRUNE_LOGS = (
    "set -euo pipefail; "
    '[[ $LOG_FOLDER == /* ]] || { echo "[logging] base_log_folder is not an absolute path: $LOG_FOLDER" >&2; exit 1; }; '
    'removed=0; if [ -d "$LOG_FOLDER" ]; then '
    'removed=$(find "$LOG_FOLDER" -type f -mmin "+$((RETENTION_DAYS * 1440))" -print -delete | wc -l); '
    'find "$LOG_FOLDER" -mindepth 1 -type d -empty -mmin +60 -delete; fi; '
    'echo "{\\"stage\\": \\"clean_airflow_logs\\", \\"retention_days\\": $RETENTION_DAYS, \\"removed\\": $removed}"'
)


# fraudctl's exit codes (src/error.rs's exit::CODES: its tests hold this table, PERMANENT and SKIPPED
# to it, and docs/commands.md's); the ones no retry can change fail the task at once,
# any other failure (3, a signal, a timeout) is retried.
EXIT_CODES = {
    0: "success",
    1: "unexpected error (the log's message chain says what failed)",
    2: "bad command-line usage",
    3: "a service unavailable after retries (payments API, PostgreSQL, SMTP server, SageMaker)",
    4: "unusable input (a stage file, feature spec or model)",
    5: "configuration (a missing or invalid setting, or a service refusing the request)",
    99: "skipped: nothing to do (a past interval with no captured raw data)",
}
PERMANENT_EXIT_CODES = {code: EXIT_CODES[code] for code in (4, 5)}
SKIPPED_EXIT_CODE = 99


def exit_code_meaning(code: int | None) -> str:
    if code is None:
        return (
            "none: the task failed outside a fraudctl command (a Variable's check, a timeout, "
            "a signal, another program); the log says which"
        )
    return f"{code}: " + EXIT_CODES.get(code, "not one of fraudctl's exit codes")


def email_ops(to: str, subject: str, facts: dict) -> None:
    """One email to operations through the SMTP Connection, the facts as a table (every value
    escaped, none a template). `to` is the checked Variable fraudctl_ops_email: when it is empty,
    a warning in the task's log instead."""
    if not to:
        log.warning(
            "No email to operations (%s): the Variable fraudctl_ops_email is not set "
            "(see airflow/README.md, Operations).",
            subject,
        )
        return
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(str(text))}</td></tr>"
        for name, text in facts.items()
    )
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
        smtp.send_email_smtp(to=to, subject=subject, html_content=f"<table>{rows}</table>")
    log.info("Emailed operations (%s): %s", to, subject)


def notify_failure(context) -> None:
    """on_failure_callback of every task: Airflow calls it once, when a task fails its last try
    (a retry calls on_retry_callback instead). No secret is in the email: ids, numbers, the log's URL."""
    ti = context["ti"]
    email_ops(
        value("ops_email"),
        f"[fraudctl] {ti.dag_id}.{ti.task_id} failed",
        {
            "DAG": ti.dag_id,
            "task": ti.task_id,
            "run": ti.run_id,
            "try": f"{ti.prev_attempted_tries} of {ti.max_tries + 1}",
            "exit code": exit_code_meaning(getattr(context.get("exception"), "exit_code", None)),
            "log": ti.log_url,
        },
    )


def notify_recovery(context) -> None:
    """on_success_callback of a DAG's last task: the all-clear after a failure email. When the
    run before this one (scheduled or triggered: backfills of old minutes aside) failed, its
    failed task emailed operations; this run succeeded, so say so."""
    run = context["dag_run"]
    if run.run_type == DagRunType.BACKFILL_JOB:
        return
    with create_session() as session:
        before = session.scalars(
            select(DagRun)
            .where(
                DagRun.dag_id == run.dag_id,
                DagRun.run_type != DagRunType.BACKFILL_JOB,
                DagRun.execution_date < run.execution_date,
                DagRun.state.in_([DagRunState.SUCCESS, DagRunState.FAILED]),
            )
            .order_by(DagRun.execution_date.desc())
            .limit(1)
        ).first()
        if before is None or before.state != DagRunState.FAILED:
            return
        failed = before.run_id
    email_ops(
        value("ops_email"),
        f"[fraudctl] {run.dag_id} runs again",
        {
            "DAG": run.dag_id,
            "failed run": failed,
            "succeeded": f"{run.run_id}, every task",
            "runs": f"{conf.get('webserver', 'base_url')}/dags/{run.dag_id}/grid",
        },
    )


def warn_source_errors(context) -> None:
    """on_success_callback of `extract`: a run that lost API requests succeeds all the same (what
    was captured goes on), but from `fraudctl_source_errors_warn` failed requests operations are
    told: payments the API served meanwhile may be lost at the source."""
    ti = context["ti"]
    summary = json.loads(ti.xcom_pull(task_ids=ti.task_id) or "{}")
    errors, threshold = summary.get("source_errors", 0), int(value("source_errors_warn"))
    if errors < threshold:
        return
    email_ops(
        value("ops_email"),
        f"[fraudctl] {ti.dag_id}.{ti.task_id} lost {errors} API requests",
        {
            "DAG": ti.dag_id,
            "run": ti.run_id,
            "failed requests": f"{errors} of {summary.get('requests')} (Variable fraudctl_source_errors_warn: {threshold})",
            "records captured": summary.get("records"),
            "stopped by": summary.get("stopped_by") or "-",
            "what it means": "payments the API served during the failed requests may never be seen; "
            "check the API's health and the task's log",
            "log": ti.log_url,
        },
    )


DEFAULT_ARGS = {
    "owner": "fraud-team",
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(minutes=5),
    "on_failure_callback": notify_failure,
}

#: What every fraudctl DAG is declared with: one run at a time, no catch-up (backfills are asked
#: for), the tasks' defaults above and the template filters of fraudctl_variables.
DAG_DEFAULTS = {
    "start_date": pendulum.datetime(2024, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "user_defined_filters": TEMPLATE_FILTERS,
}


def fraudctl_bin() -> str:
    """The fraudctl binary of this worker (call it at run time, in the task)."""
    return os.environ.get("FRAUDCTL_BIN") or DEFAULT_BIN


def fraudctl(subcommand: str) -> str:
    """The bash_command of a fraudctl stage: no value inline, everything comes from env."""
    return (
        'for v in "${!FRAUDCTL_@}"; do [ -n "${!v}" ] || unset "$v"; done; '
        f'exec "${{FRAUDCTL_BIN:-{DEFAULT_BIN}}}" {subcommand}'
    )


def permanent_failure(exit_code: int | None) -> AirflowFailException | None:
    """The failure to raise, without retries, for a fraudctl exit code; None when retrying may help."""
    meaning = PERMANENT_EXIT_CODES.get(exit_code)
    if meaning is None:
        return None
    return AirflowFailException(
        f"fraudctl exited {exit_code}: {meaning}. Retrying cannot help: fix what the log above "
        "names, then clear the task."
    )


class FraudctlStageOperator(BashOperator, SkipMixin):
    """A BashOperator running one fraudctl stage. When the stage is skipped (exit 99: a past
    interval with no raw data) it marks every downstream task skipped itself, like
    ShortCircuitOperator, instead of leaving that to trigger-rule propagation: Airflow 2.8's
    backfill counts tasks skipped by propagation as "not ready" and, with nothing else running
    (max_active_runs=1), stops with "BackfillJob is deadlocked". Exit 4 and 5 fail the task
    at once ([permanent_failure]); other failures are retried. The exception carries the exit
    code (`exit_code`, None after a timeout) for the failure email ([notify_failure])."""

    def __init__(self, **kwargs):
        super().__init__(skip_on_exit_code=SKIPPED_EXIT_CODE, **kwargs)

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSkipException:
            downstream = self.get_flat_relatives(upstream=False)
            if downstream:
                self.skip(context["dag_run"], context["logical_date"], downstream)
            raise
        except AirflowException as e:
            process = self.subprocess_hook.sub_process
            e.exit_code = process.returncode if process else None
            failure = permanent_failure(e.exit_code)
            if failure is None:
                raise
            failure.exit_code = e.exit_code
            raise failure from e
