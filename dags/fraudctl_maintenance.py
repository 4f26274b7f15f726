"""The commands of the digest DAG's retention tasks (airflow/README.md, "Airflow's own data" and
"Run directories"). Not a DAG file (.airflowignore). Each reads its values from its environment
(`env=`, checked Variables), none from its text.
"""

# cleanup_run_dirs: the run directories of both DAGs not modified for RETENTION_DAYS days.
CLEANUP_RUN_DIRS = (
    "set -euo pipefail; removed=0; "
    'for d in "$RUNS_ROOT/fraud_pipeline" "$RUNS_ROOT/fraud_daily_digest"; do '
    '[ -d "$d" ] || continue; '
    'n=$(find "$d" -mindepth 1 -maxdepth 1 -type d -mmin "+$((RETENTION_DAYS * 1440))" -print -exec rm -rf {} + | wc -l); '
    "removed=$((removed + n)); done; "
    'echo "{\\"stage\\": \\"cleanup\\", \\"retention_days\\": $RETENTION_DAYS, \\"removed\\": $removed}"'
)

# clean_airflow_db: Airflow's own records older than CLEAN_BEFORE (the same command on 2.8.3 and
# 3; it runs where the task runs, with the metadata database's setting of that environment).
CLEAN_AIRFLOW_DB = 'exec airflow db clean --clean-before-timestamp "$CLEAN_BEFORE" --yes --skip-archive'

# clean_airflow_logs: every file under Airflow's log folder older than RETENTION_DAYS, then the
# directories left empty (not touched for an hour: never one a starting task has just made). The
# folder is what Airflow's configuration says where the task runs (AIRFLOW__LOGGING__* included),
# asked of its CLI: Airflow 3's templates have no `conf`.
PRUNE_LOGS = (
    "set -euo pipefail; "
    "LOG_FOLDER=$(airflow config get-value logging base_log_folder); "
    '[[ $LOG_FOLDER == /* ]] || { echo "[logging] base_log_folder is not an absolute path: $LOG_FOLDER" >&2; exit 1; }; '
    'removed=0; if [ -d "$LOG_FOLDER" ]; then '
    'removed=$(find "$LOG_FOLDER" -type f -mmin "+$((RETENTION_DAYS * 1440))" -print -delete | wc -l); '
    'find "$LOG_FOLDER" -mindepth 1 -type d -empty -mmin +60 -delete; fi; '
    'echo "{\\"stage\\": \\"clean_airflow_logs\\", \\"retention_days\\": $RETENTION_DAYS, \\"removed\\": $removed}"'
)
