"""
### fraud_pipeline

Every minute: poll the payments API, compute the features, score, upsert into `payments_scored`,
email every new predicted fraud. One `fraudctl` stage per task; each stage reads the previous
stage's file in the run directory and prints its JSON summary as the last stdout line (→ XCom).

* **Run directory**: `{fraudctl_runs_root}/fraud_pipeline/<data_interval_end, e.g. 20261124T101500>`,
  on a volume shared by all workers. It is keyed by the *data interval*, not the run id, so any
  run of the same interval (scheduled, manual, `dags test`, cleared, backfill) finds the raw file
  that interval captured. Directories older than `fraudctl_retention_days` (default 7) are
  deleted by the `cleanup_run_dirs` task of `fraud_daily_digest`.
* **catchup=False**: the payments API only serves the present, so a catch-up run of a missed
  interval could not fetch its data; missed intervals are not replayed automatically. Re-scoring
  past intervals is an explicit backfill (`airflow dags backfill` on Airflow 2, `airflow backfill
  create` on 3): intervals whose raw file exists are
  re-processed, the others end with `extract` *skipped* (exit 99) and the rest of the run skipped.
* **max_active_runs=1**: runs of a minute never overlap (extract polls for at most
  `fraudctl_extract_max_seconds`, 45 s by default).
* **The live path** (`fraudctl live`, airflow/README.md): while it holds its lease, it has
  captured and alerted the minute already; `extract` reuses the raw file it wrote there (waiting
  at most `fraudctl_live_wait_secs`), and the run changes nothing: the system of record and the
  safety net. When its heartbeat is older than `fraudctl_live_stale_secs`, `extract` polls the
  API itself, as it did before the live path.
* **Alerts**: each fraud in exactly one email, one per card (recorded in `fraud_alerts`); frauds
  older than `fraudctl_alert_max_age_hours` (default 24), e.g. found by a backfill, are recorded, not emailed.
* **Operations**: a task that fails for good emails `fraudctl_ops_email`; the next run (not a
  backfill) that succeeds after a failed one sends the all-clear ("fraud_pipeline runs again").
  A run whose `extract` met `fraudctl_source_errors_warn` or more failed API requests (payments
  possibly lost at the source) warns operations too, though it succeeds.
* **Configuration**: Variables `fraudctl_*` (each checked before its task runs a command: an invalid
  one fails the task, naming it), Connections `fraud_db` and `fraudctl_smtp`, and the worker
  environment (`FRAUDCTL_BIN`, `FRAUDCTL_PAN_HASH_KEY`, `AWS_*`): see airflow/README.md.
"""

import pendulum
from fraudctl_compat import DAG
from fraudctl_defaults import DAG_DEFAULTS
from fraudctl_notify import notify_recovery, warn_source_errors
from fraudctl_schedule import every
from fraudctl_stage import FraudctlStageOperator, fraudctl
from fraudctl_templates import DATABASE_URL, MODEL_DIR, RUNS_ROOT, SMTP_ENV
from fraudctl_variables import var

RUN_ENV = {
    "FRAUDCTL_RUN_DIR": RUNS_ROOT + "/fraud_pipeline/{{ data_interval_end | ts_nodash }}",
    "FRAUDCTL_RUN_ID": "{{ run_id }}",
    "FRAUDCTL_LOG": var("log"),
}

# A challenger model in shadow (docs/rules.md): transform computes its features when its spec is
# not the model's, score stores its probability beside the model's.
CHALLENGER_ENV = {"FRAUDCTL_CHALLENGER_MODEL_DIR": var("challenger_model_dir")}

STAGE_ENV = {
    "extract": {
        "FRAUDCTL_INTERVAL_END": "{{ data_interval_end.isoformat() }}",
        "FRAUDCTL_API_URL": var("api_url"),
        "FRAUDCTL_MAX_SECONDS": var("extract_max_seconds"),
        "FRAUDCTL_MAX_RECORDS": var("extract_max_records"),
        "FRAUDCTL_MAX_LAG_SECS": var("extract_max_lag_secs"),
        # the live path's lease: its file of the minute is waited for while it captures
        "FRAUDCTL_LIVE_WAIT_SECS": var("live_wait_secs"),
        "FRAUDCTL_LIVE_STALE_SECS": var("live_stale_secs"),
        "FRAUDCTL_DATABASE_URL": DATABASE_URL,
    },
    # the database: the cards' earlier payments, for a spec with card history
    "transform": {
        "FRAUDCTL_FEATURE_SPEC": MODEL_DIR + "/feature_spec.json",
        **CHALLENGER_ENV,
        "FRAUDCTL_DATABASE_URL": DATABASE_URL,
    },
    "score": {
        "FRAUDCTL_MODEL_DIR": MODEL_DIR,
        "FRAUDCTL_SCORER": var("scorer"),
        "FRAUDCTL_THRESHOLD": var("threshold"),
        "FRAUDCTL_FALLBACK": var("scorer_fallback"),
        "FRAUDCTL_RULES_FILE": var("rules_file"),  # its lists: from the database
        **CHALLENGER_ENV,
        "FRAUDCTL_SAGEMAKER_ENDPOINT": var("sagemaker_endpoint"),
        "FRAUDCTL_SAGEMAKER_ENDPOINT_URL": var("sagemaker_endpoint_url"),
        "FRAUDCTL_DATABASE_URL": DATABASE_URL,
    },
    "load": {"FRAUDCTL_DATABASE_URL": DATABASE_URL},
    "alert": {
        "FRAUDCTL_DATABASE_URL": DATABASE_URL,
        **SMTP_ENV,
        "FRAUDCTL_ALERT_TO": var("alert_to"),
        "FRAUDCTL_ALERT_MAX_AGE_HOURS": var("alert_max_age_hours"),
        "FRAUDCTL_REPORT_URL": var("report_url"),
    },
}

# extract: a warning to operations after lost API requests; alert, the run's last task: the
# all-clear after a failure email.
SUCCESS_CALLBACKS = {"extract": warn_source_errors, "alert": notify_recovery}

with DAG(
    dag_id="fraud_pipeline",
    description="Payments API -> features -> fraud score -> PostgreSQL -> fraud alert emails",
    schedule=every("* * * * *"),
    dagrun_timeout=pendulum.duration(minutes=15),
    doc_md=__doc__,
    **DAG_DEFAULTS,
    tags=["fraudctl", "fraud"],
) as dag:
    tasks = [
        FraudctlStageOperator(
            task_id=stage,
            bash_command=fraudctl(stage),
            env={**RUN_ENV, **stage_env},
            append_env=True,  # keeps PATH, FRAUDCTL_BIN, FRAUDCTL_PAN_HASH_KEY, AWS_* of the worker
            on_success_callback=SUCCESS_CALLBACKS.get(stage),
        )
        for stage, stage_env in STAGE_ENV.items()
    ]
    extract, transform, score, load, alert = tasks
    extract >> transform >> score >> load >> alert
