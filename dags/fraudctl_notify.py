"""What the fraudctl DAGs email operations (airflow/README.md, Operations): a task that failed for
good, the all-clear after it, lost API requests; and email_ops, which the watchdog uses too.
Not a DAG file (.airflowignore). Every email holds ids, numbers and URLs only (no Variable's
value, no exception text, no secret); every value is HTML-escaped, none is a template.
"""

import html
import json
import logging

from airflow.providers.smtp.hooks.smtp import SmtpHook
from fraudctl_compat import BACKFILL, attempt, dag_runs_url, latest_run
from fraudctl_exit_codes import exit_code_meaning
from fraudctl_templates import SMTP_CONN_ID
from fraudctl_variables import value

log = logging.getLogger(__name__)


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
            "try": f"{attempt(ti)} of {ti.max_tries + 1}",
            "exit code": exit_code_meaning(getattr(context.get("exception"), "exit_code", None)),
            "log": ti.log_url,
        },
    )


def notify_recovery(context) -> None:
    """on_success_callback of a DAG's last task: the all-clear after a failure email. When the
    latest finished run before this one failed (scheduled or triggered: backfills of old minutes
    aside), its failed task emailed operations; this run succeeded, so say so."""
    run = context["dag_run"]
    if run.run_type == BACKFILL:
        return
    when = run.logical_date or run.run_after  # Airflow 3: a run triggered without a logical date
    failed, succeeded = (latest_run(run.dag_id, when, state) for state in ("failed", "success"))
    if failed is None or failed.run_type == BACKFILL:
        return
    if succeeded is not None and succeeded.logical_date > failed.logical_date:
        return
    email_ops(
        value("ops_email"),
        f"[fraudctl] {run.dag_id} runs again",
        {
            "DAG": run.dag_id,
            "failed run": failed.run_id,
            "succeeded": f"{run.run_id}, every task",
            "runs": dag_runs_url(run.dag_id),
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
