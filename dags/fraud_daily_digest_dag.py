"""
### fraud_daily_digest

Every morning at `FRAUDCTL_DIGEST_LOCAL_TIME` (default 07:00) in `FRAUDCTL_BUSINESS_TIME_ZONE`
(default UTC), whatever the season: email yesterday's fraud report (`fraudctl report`: the frauds of
the business day in the body, with the analysts' verdicts on its alerts, every payment of the day as
an attached CSV) through the SMTP Connection `fraudctl_smtp`, to the Variable `fraudctl_digest_to`
(default: `fraudctl_alert_to`). "Yesterday" is the day before the run's data_interval_end in that
zone, the one `fraudctl migrate` was given, so a re-run or backfill of a morning mails the same day.
Both settings are the environment of the Airflow processes, read when this file is parsed (the
schedule depends on them); an invalid one is an import error naming it.

Also the **retention rules**: `cleanup_run_dirs` deletes the run directories of both DAGs not
modified for more than `fraudctl_retention_days` days (default 7; a backfill can only re-score
intervals whose directory is still there); `clean_airflow_db` (`airflow db clean`) and
`clean_airflow_logs` (task and scheduler log files under `[logging] base_log_folder`) drop Airflow's
own records older than `fraudctl_airflow_retention_days` (default 30). Every Variable is checked
before its task runs a command (an invalid one fails the task, naming it): see airflow/README.md.

catchup=False: a missed morning is not mailed late; trigger it by hand (or backfill) if wanted. A
day the pipeline never saw (no run recorded, no payment captured, before it ended: the first
morning of a new stack) gets no digest: `build_report` and `send_digest` are skipped.
"""

import json
import os
import subprocess
from pathlib import Path

from airflow.providers.smtp.operators.smtp import EmailOperator
from fraudctl_compat import DAG, AirflowSkipException, BashOperator, task
from fraudctl_defaults import DAG_DEFAULTS
from fraudctl_maintenance import CLEAN_AIRFLOW_DB, CLEANUP_RUN_DIRS, PRUNE_LOGS
from fraudctl_schedule import business_time_zone, digest_timetable
from fraudctl_stage import fraudctl_bin
from fraudctl_templates import DATABASE_URL, RUNS_ROOT, SMTP_CONN_ID
from fraudctl_variables import var, variable

REPORT_DAY = (
    "{{ data_interval_end.in_timezone(%r).subtract(days=1).strftime('%%Y-%%m-%%d') }}" % business_time_zone()
)
AIRFLOW_RETENTION_DAYS = variable("airflow_retention_days")
DIGEST_TO = "{{ %s or %s or 'fraud-team@localhost' }}" % (variable("digest_to"), variable("alert_to"))
REPORT = "ti.xcom_pull(task_ids='build_report')"


@task
def build_report(database_url: str, day: str, out_dir: str) -> dict:
    """Run `fraudctl report` for the day: the frauds as a table, every payment as CSV. Skipped,
    and so is the email, for a day the pipeline never saw (a stack started after it)."""
    env = {**os.environ, "FRAUDCTL_DATABASE_URL": database_url}

    def report(*args: str) -> str:
        done = subprocess.run(
            [fraudctl_bin(), "report", "--day", day, *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"fraudctl report failed (exit {done.returncode}): {done.stderr}")
        return done.stdout

    if not json.loads(report("--format", "json"))["summary"]["seen"]:
        raise AirflowSkipException(
            f"no digest: the pipeline never saw {day} (no run recorded, no payment captured, before it ended)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"payments-{day}.csv"
    csv_path.write_text(report("--format", "csv", "--all"))
    return {"day": day, "table": report("--format", "table"), "csv": str(csv_path)}


with DAG(
    dag_id="fraud_daily_digest",
    description="Morning email of yesterday's fraud report; run-directory retention",
    schedule=digest_timetable(),
    doc_md=__doc__,
    **DAG_DEFAULTS,
    tags=["fraudctl", "fraud", "report"],
) as dag:
    report = build_report(
        database_url=DATABASE_URL,
        day=REPORT_DAY,
        out_dir=RUNS_ROOT + "/fraud_daily_digest/{{ data_interval_end | ts_nodash }}",
    )
    send_digest = EmailOperator(
        task_id="send_digest",
        conn_id=SMTP_CONN_ID,
        to=DIGEST_TO,
        subject="Fraud report for {{ %s['day'] }}" % REPORT,
        html_content="<p>Frauds of {{ %s['day'] }}; every payment of the day is attached.</p>"
        "<pre>{{ %s['table'] | e }}</pre>" % (REPORT, REPORT),
        files=["{{ %s['csv'] }}" % REPORT],
    )
    cleanup_run_dirs = BashOperator(
        task_id="cleanup_run_dirs",
        bash_command=CLEANUP_RUN_DIRS,
        # checked by fraudctl_variables before the command runs: an absolute path, a number of days
        env={"RUNS_ROOT": RUNS_ROOT, "RETENTION_DAYS": var("retention_days")},
        append_env=True,
    )
    clean_airflow_db = BashOperator(
        task_id="clean_airflow_db",
        bash_command=CLEAN_AIRFLOW_DB,
        env={
            "CLEAN_BEFORE": "{{ data_interval_end.subtract(days=%s | int).isoformat() }}"
            % AIRFLOW_RETENTION_DAYS
        },
        append_env=True,  # Airflow's own settings (its metadata database) and PATH
    )
    clean_airflow_logs = BashOperator(
        task_id="clean_airflow_logs",
        bash_command=PRUNE_LOGS,
        env={"RETENTION_DAYS": var("airflow_retention_days")},
        append_env=True,  # Airflow's own settings (its log folder) and PATH
    )
    report >> send_digest
