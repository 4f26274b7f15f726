#!/usr/bin/env bash
# One-shot initialisation of the stack (service airflow-init): Airflow's metadata database, the
# admin user of the web UI, and fraud_db's migrations. Idempotent: safe on every `up` and by hand
# (`docker compose run --rm airflow-init`). It runs through the image's entrypoint, which waits for
# the metadata database. Connections and Variables need no step here: they are environment
# variables (AIRFLOW_CONN_*, AIRFLOW_VAR_* in docker-compose.yml), read afresh by every process.
set -euo pipefail

airflow db migrate
# Airflow 2.8.3's FAB login: an existing user is kept as it is (its password too: change it in the
# UI or with `airflow users reset-password`). Airflow 3's simple auth manager has no users in the
# database: the api-server writes its passwords file from .env when it starts.
if [[ $AIRFLOW_VERSION == 2.* ]] && ! airflow users list --output plain | awk '{print $2}' | grep -qx "$AIRFLOW_ADMIN_USER"; then
    airflow users create --role Admin --username "$AIRFLOW_ADMIN_USER" \
        --password "$AIRFLOW_ADMIN_PASSWORD" --firstname Fraud --lastname Admin \
        --email "$AIRFLOW_ADMIN_EMAIL"
fi
# fraudctl reads FRAUDCTL_DATABASE_URL (password included) from the environment only.
FRAUDCTL_DATABASE_URL="$AIRFLOW_CONN_FRAUD_DB" fraudctl migrate
echo "airflow-init: done"
