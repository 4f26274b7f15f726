#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory
# (/docker-entrypoint-initdb.d). Creates the business database fraud_db (owner fraudctl), the
# Airflow metadata database airflow_db (owner airflow) and the dashboard's login role, a member
# of fraud_report_reader (which the migrations grant read access to the report, nothing else) and
# of fraud_list_editor (the lists' audited functions, for a logged-in analyst: docs/rules.md).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v fraudctl_pw="$FRAUDCTL_DB_PASSWORD" -v airflow_pw="$AIRFLOW_DB_PASSWORD" \
     -v dashboard_pw="$DASHBOARD_DB_PASSWORD" <<'SQL'
CREATE ROLE fraudctl LOGIN PASSWORD :'fraudctl_pw';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE fraud_report_reader NOLOGIN;
CREATE ROLE fraud_list_editor NOLOGIN;
CREATE ROLE fraud_dashboard LOGIN PASSWORD :'dashboard_pw' IN ROLE fraud_report_reader, fraud_list_editor;
CREATE DATABASE fraud_db OWNER fraudctl;
CREATE DATABASE airflow_db OWNER airflow;
SQL
