#!/usr/bin/env bash
# The whole stack on this machine, without Docker (`make up`, `make down`, `make status`):
# PostgreSQL (fraud_db + Airflow's metadata), the payments simulator, the SMTP sink, the live
# path (fraudctl live: a fraud emailed within about a second), the Airflow scheduler
# (LocalExecutor) and webserver running the fraud_pipeline DAG every minute (the system of
# record and the safety net), and the dashboard. Offline defaults: simulator, local model, local
# SMTP sink.
#
# Airflow 2.8.3 by default; FRAUDCTL_AIRFLOW_MAJOR=3 runs Airflow 3 instead (.venv-airflow3, its
# own home .local/airflow3 and metadata database airflow3_db, so either can be started without
# touching the other's; airflow/UPGRADING.md moves one stack's database from 2 to 3): its
# api-server in place of the webserver, and the dag-processor, which Airflow 3 runs apart from the
# scheduler. (No triggerer: no task defers, on either version.)
#
# The long-running processes run under supervisord (.venv's supervisor, .local/supervisord.conf
# written here): each is restarted when it exits (waiting longer after each start that fails,
# so a database outage does not make them spin), its log appended to .local/logs/NAME.log and
# rotated at 10 MB (5 kept). PostgreSQL is pg.sh's (pg_ctl).
#
# Everything lives under .local/ (git-ignored): data, logs (.local/logs), received mail
# (.local/mail) and the generated secrets (.local/stack.env, mode 0600).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOCAL=$ROOT/.local
LOGS=$LOCAL/logs
SUPERVISOR_CONF=$LOCAL/supervisord.conf
SIM_PORT=${FRAUDCTL_SIM_PORT:-8000}
SMTP_PORT=${FRAUDCTL_SMTP_PORT:-1025}
MAIL_WEB_PORT=${FRAUDCTL_MAIL_WEB_PORT:-8025}  # the sink's web inbox (compose's Mailpit: 8025 too)
AIRFLOW_PORT=${FRAUDCTL_AIRFLOW_PORT:-8080}
DASHBOARD_PORT=${FRAUDCTL_DASHBOARD_PORT:-8501}
LIVE_METRICS_PORT=${FRAUDCTL_LIVE_METRICS_PORT:-9464}  # fraudctl live's /metrics and /healthz
SCHEDULER_HEALTH_PORT=${FRAUDCTL_SCHEDULER_HEALTH_PORT:-8974}  # the Airflow scheduler's /health
OPS_EMAIL=${FRAUDCTL_OPS_EMAIL:-ops@localhost}
BUSINESS_TIME_ZONE=${FRAUDCTL_BUSINESS_TIME_ZONE:-UTC}  # fraudctl migrate's and the digest DAG's
FRAUDCTL=$ROOT/target/release/fraudctl
AIRFLOW_MAJOR=${FRAUDCTL_AIRFLOW_MAJOR:-2}
case $AIRFLOW_MAJOR in
    2) AIRFLOW_VENV=$ROOT/.venv-airflow AIRFLOW_DB=airflow_db AIRFLOW_HOME=$LOCAL/airflow AIRFLOW_UI=airflow-webserver ;;
    3) AIRFLOW_VENV=$ROOT/.venv-airflow3 AIRFLOW_DB=airflow3_db AIRFLOW_HOME=$LOCAL/airflow3 AIRFLOW_UI=airflow-api-server ;;
    *) echo "stack.sh: FRAUDCTL_AIRFLOW_MAJOR is '$AIRFLOW_MAJOR': 2 (the default) or 3" >&2; exit 2 ;;
esac

log() { printf '==> %s\n' "$*"; }

# program NAME COMMAND...: a [program] section of supervisord.conf running COMMAND (each word
# quoted for supervisord's shell-like parser), restarted whenever it exits.
program() {
    local name=$1; shift
    local words=() word
    for word in "$@"; do words+=("\"${word//\"/\\\"}\""); done
    cat <<EOF

[program:$name]
command=${words[*]}
directory=$ROOT
autorestart=true
startsecs=3
startretries=1000000
stopasgroup=true
killasgroup=true
stopwaitsecs=30
redirect_stderr=true
stdout_logfile=$LOGS/$name.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5
EOF
}

supervisorctl() { "$ROOT/.venv/bin/supervisorctl" -c "$SUPERVISOR_CONF" "$@"; }

# Whether supervisord runs (its socket answers).
supervised() { [[ -f $SUPERVISOR_CONF ]] && supervisorctl pid >/dev/null 2>&1; }

wait_port() {
    local name=$1 port=$2
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        sleep 1
    done
    echo "stack.sh: $name did not open port $port; see .local/logs/$name.log" >&2
    tail -n 20 "$LOGS/$name.log" >&2 || true
    exit 1
}

# secret NAME PYTHON_EXPRESSION: NAME=value appended to .local/stack.env (0600) unless it holds NAME
# already: a stack.env from an earlier version keeps its secrets and gets the new ones.
secret() {
    grep -qs "^$1=" "$LOCAL/stack.env" \
        || (umask 077; echo "$1=$(python3 -c "import base64, secrets; print($2)")" >>"$LOCAL/stack.env")
}

secrets() {
    secret FRAUDCTL_PAN_HASH_KEY 'secrets.token_hex(32)'
    secret FRAUDCTL_DASHBOARD_DB_PASSWORD 'secrets.token_urlsafe(24)'
    secret FRAUDCTL_VERDICT_KEY 'secrets.token_hex(32)'
    # Airflow encrypts Variables and Connections stored in its database with it (2.8.3 writes an
    # empty fernet_key into the airflow.cfg it generates: stored in clear).
    secret AIRFLOW__CORE__FERNET_KEY 'base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()'
    secret AIRFLOW_ADMIN_PASSWORD 'secrets.token_urlsafe(12)'  # the UI's user admin
    # Airflow 3: the key of the tokens the api-server issues to tasks and users (one for every process).
    secret AIRFLOW__API_AUTH__JWT_SECRET 'secrets.token_urlsafe(32)'
    set -a; source "$LOCAL/stack.env"; set +a
}

# airflow_settings PG_PORT: Airflow's environment on this stack, as lines of NAME=value for bash's
# `source` (the secrets stay in .local/stack.env, which scripts/airflow sources too).
airflow_settings() {
    local pg_port=$1
    printf 'PATH=%q:"$PATH"\n' "$AIRFLOW_VENV/bin"  # the `airflow` of the tasks (db clean) and of the CLI
    printf '%s=%q\n' \
        AIRFLOW_HOME "$AIRFLOW_HOME" \
        AIRFLOW__CORE__DAGS_FOLDER "$ROOT/dags" \
        AIRFLOW__CORE__LOAD_EXAMPLES False \
        AIRFLOW__CORE__EXECUTOR LocalExecutor \
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION False \
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN "postgresql+psycopg2://postgres@127.0.0.1:$pg_port/$AIRFLOW_DB" \
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK True \
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST 127.0.0.1 \
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT "$SCHEDULER_HEALTH_PORT" \
        AIRFLOW_CONN_FRAUD_DB "postgres://postgres@127.0.0.1:$pg_port/fraud_db" \
        AIRFLOW_CONN_FRAUDCTL_SMTP "{\"conn_type\": \"smtp\", \"host\": \"127.0.0.1\", \"port\": $SMTP_PORT, \"extra\": {\"disable_ssl\": true, \"disable_tls\": true, \"from_email\": \"fraudctl@localhost\"}}" \
        FRAUDCTL_BIN "$FRAUDCTL" \
        FRAUDCTL_BUSINESS_TIME_ZONE "$BUSINESS_TIME_ZONE" \
        FRAUDCTL_DIGEST_LOCAL_TIME "${FRAUDCTL_DIGEST_LOCAL_TIME:-07:00}" \
        FRAUDCTL_POLL_INTERVAL_MS "${FRAUDCTL_POLL_INTERVAL_MS:-200}"
    if ((AIRFLOW_MAJOR == 2)); then
        printf '%s=%q\n' \
            AIRFLOW__WEBSERVER__WEB_SERVER_HOST 127.0.0.1 \
            AIRFLOW__WEBSERVER__WEB_SERVER_PORT "$AIRFLOW_PORT" \
            AIRFLOW__WEBSERVER__BASE_URL "http://127.0.0.1:$AIRFLOW_PORT" \
            AIRFLOW__API__AUTH_BACKENDS "airflow.api.auth.backend.session,airflow.api.auth.backend.basic_auth"
    else
        # The api-server serves the UI, the REST API and the tasks' execution API; the simple auth
        # manager's user admin takes the password of the file written by airflow_login.
        printf '%s=%q\n' \
            AIRFLOW__API__HOST 127.0.0.1 \
            AIRFLOW__API__PORT "$AIRFLOW_PORT" \
            AIRFLOW__API__WORKERS 1 \
            AIRFLOW__API__BASE_URL "http://127.0.0.1:$AIRFLOW_PORT" \
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL "http://127.0.0.1:$AIRFLOW_PORT/execution/" \
            AIRFLOW__CORE__AUTH_MANAGER airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager \
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS admin:admin \
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE "$AIRFLOW_HOME/simple_auth_manager_passwords.json"
    fi
}

# The UI's user admin with the password AIRFLOW_ADMIN_PASSWORD (.local/stack.env): Airflow 2.8.3's
# FAB login (scripts/airflow_admin.py, in the metadata database), Airflow 3's simple auth manager
# (its passwords file, 0600).
airflow_login() {
    if ((AIRFLOW_MAJOR == 2)); then
        printf 'from flask_appbuilder.const import AUTH_DB\nAUTH_TYPE = AUTH_DB\n' >"$AIRFLOW_HOME/webserver_config.py"
        "$AIRFLOW_VENV/bin/python" scripts/airflow_admin.py >>"$LOGS/airflow-db.log" 2>&1 \
            || { tail -n 20 "$LOGS/airflow-db.log" >&2; exit 1; }
    else
        (umask 077; ADMIN_PASSWORD=$AIRFLOW_ADMIN_PASSWORD python3 -c \
            'import json, os; print(json.dumps({"admin": os.environ["ADMIN_PASSWORD"]}))' \
            >"$AIRFLOW_HOME/simple_auth_manager_passwords.json")
    fi
}

# The Airflow processes of the major version: supervisord programs.
airflow_programs() {
    # Without its log server (Airflow 2.8 binds it to every interface): the webserver, on this
    # machine, reads the task logs from their files.
    program airflow-scheduler airflow scheduler --skip-serve-logs
    if ((AIRFLOW_MAJOR == 2)); then
        program airflow-webserver airflow webserver
    else
        program airflow-api-server airflow api-server
        program airflow-dag-processor airflow dag-processor
    fi
}

up() {
    mkdir -p "$LOGS" "$LOCAL/runs" "$LOCAL/mail"
    secrets
    local admin base
    admin=$(scripts/pg.sh start)
    base=${admin%/postgres}
    log "PostgreSQL on ${base#postgres://postgres@}"
    export FRAUDCTL_DATABASE_URL=$base/fraud_db
    "$FRAUDCTL" migrate --create-database --business-time-zone "$BUSINESS_TIME_ZONE" >/dev/null
    psql -qAt "$admin" -c "SELECT 1 FROM pg_database WHERE datname = '$AIRFLOW_DB'" | grep -q 1 \
        || psql -q "$admin" -c "CREATE DATABASE $AIRFLOW_DB"
    # The dashboard's login role: a member of the read-only fraud_report_reader (V5 migration)
    # and of fraud_list_editor (V23: the lists' audited functions, docs/rules.md).
    psql -q "$FRAUDCTL_DATABASE_URL" -v pw="$FRAUDCTL_DASHBOARD_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE fraud_dashboard LOGIN IN ROLE fraud_report_reader PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fraud_dashboard') \gexec
SELECT format('ALTER ROLE fraud_dashboard PASSWORD %L', :'pw') \gexec
GRANT fraud_list_editor TO fraud_dashboard;
SQL

    export AIRFLOW_HOME
    mkdir -p "$AIRFLOW_HOME"
    # Which Airflow this stack runs, for scripts/airflow: its settings' file.
    echo "$AIRFLOW_HOME/airflow.env" >"$LOCAL/airflow-settings"
    log "Airflow $AIRFLOW_MAJOR ($("$AIRFLOW_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))'))"
    # One home for Airflow's settings: the scheduler and webserver below and scripts/airflow (the
    # CLI an operator runs: backfill, tasks clear, dags test) read the same file.
    (umask 077; airflow_settings "${base##*:}" >"$AIRFLOW_HOME/airflow.env")
    set -a; source "$AIRFLOW_HOME/airflow.env"; set +a
    unset FRAUDCTL_DATABASE_URL
    log "Airflow metadata database (airflow db migrate)"
    # airflow.cfg, which Airflow writes on first use, holds the secret_key and fernet_key it
    # generated: mode 0600 (not the directory's: Airflow's task logs make their parents 0775).
    (umask 077; airflow db migrate >"$LOGS/airflow-db.log" 2>&1) \
        || { tail -n 20 "$LOGS/airflow-db.log" >&2; exit 1; }
    # A login (user admin, AIRFLOW_ADMIN_PASSWORD): the grid's REST API refuses anonymous users.
    airflow_login
    chmod 600 "$AIRFLOW_HOME/airflow.cfg"
    # The stack's Variables live in the metadata database, where Admin > Variables and
    # `scripts/airflow variables set` change them (a value an operator set there is kept).
    # FRAUDCTL_RULES_FILE (docs/rules.md), when set, is the DAG's rules and the live path's;
    # FRAUDCTL_CHALLENGER_MODEL_DIR their challenger in shadow (model/challenger unless set empty).
    local rules_file="" rules=() challenger
    if [[ -n ${FRAUDCTL_RULES_FILE:-} ]]; then
        rules_file=$(realpath "$FRAUDCTL_RULES_FILE")
        rules=(fraudctl_rules_file="$rules_file")
    fi
    challenger=${FRAUDCTL_CHALLENGER_MODEL_DIR-$ROOT/model/challenger}
    [[ -z $challenger ]] || challenger=$(realpath "$challenger")
    "$AIRFLOW_VENV/bin/python" scripts/seed_variables.py "$AIRFLOW_HOME/seeded-variables.json" \
        "${rules[@]}" fraudctl_challenger_model_dir="$challenger" fraudctl_runs_root="$LOCAL/runs" fraudctl_model_dir="$ROOT/model/default" \
        fraudctl_api_url="http://127.0.0.1:$SIM_PORT/current-transactions" \
        fraudctl_report_url="http://127.0.0.1:$DASHBOARD_PORT" fraudctl_ops_email="$OPS_EMAIL" \
        2>>"$LOGS/airflow-db.log" | sed -n 's/^seed_variables: kept /==> Variable kept as set in Airflow: /p' \
        || { tail -n 20 "$LOGS/airflow-db.log" >&2; exit 1; }

    # supervisord, and every process it starts, run with this environment (the secrets, Airflow's
    # settings); fraudctl live is given its own settings below.
    local pg_port=${base##*:}
    {
        cat <<EOF
; Written by scripts/stack.sh up (each time): the local stack's long-running processes.
[supervisord]
logfile=$LOGS/supervisord.log
logfile_maxbytes=10MB
logfile_backups=5
pidfile=$LOCAL/supervisord.pid
directory=$ROOT

[unix_http_server]
file=$LOCAL/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://$LOCAL/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
EOF
        # Payments on the wall clock, stamped when they happen (about 2 a second: --cards 50000);
        # a response holds up to 50, so that a backlog drains fast after a pause.
        program simulator "$FRAUDCTL" serve-payments --listen "127.0.0.1:$SIM_PORT" --fraud-rate "${FRAUDCTL_SIM_FRAUD_RATE:-0.02}" --rows-per-response 50
        program smtp-sink "$ROOT/.venv/bin/python" scripts/smtp_sink.py serve --listen "127.0.0.1:$SMTP_PORT" \
            --web-listen "127.0.0.1:$MAIL_WEB_PORT" --maildir "$LOCAL/mail"
        program fraudctl-live env FRAUDCTL_DATABASE_URL="$base/fraud_db" \
            FRAUDCTL_API_URL="http://127.0.0.1:$SIM_PORT/current-transactions" \
            FRAUDCTL_SMTP_URL="smtp://127.0.0.1:$SMTP_PORT" FRAUDCTL_REPORT_URL="http://127.0.0.1:$DASHBOARD_PORT" \
            FRAUDCTL_LIVE_METRICS_LISTEN="127.0.0.1:$LIVE_METRICS_PORT" \
            ${rules_file:+"FRAUDCTL_RULES_FILE=$rules_file"} FRAUDCTL_CHALLENGER_MODEL_DIR="$challenger" \
            "$FRAUDCTL" live --runs-root "$LOCAL/runs"
        airflow_programs
        # Outside the scheduler, so it can say when the scheduler (and with it the watchdog DAG)
        # is down: an email after a minute without a healthy answer, another when it is back.
        program scheduler-watch "$ROOT/.venv/bin/python" scripts/scheduler_watch.py \
            --health-url "http://127.0.0.1:$SCHEDULER_HEALTH_PORT/health" --smtp "127.0.0.1:$SMTP_PORT" \
            --to "$OPS_EMAIL" --state "$LOCAL/scheduler-watch.json"
        # On 127.0.0.1 (dashboard/.streamlit/config.toml): the local stack's dashboard needs no login.
        program dashboard env FRAUDCTL_DASHBOARD_DATABASE_URL="postgres://fraud_dashboard:$FRAUDCTL_DASHBOARD_DB_PASSWORD@127.0.0.1:$pg_port/fraud_db" \
            PATH="$ROOT/.venv-dashboard/bin:$PATH" dashboard/run.sh --server.port "$DASHBOARD_PORT"
    } >"$SUPERVISOR_CONF.new"
    mv "$SUPERVISOR_CONF.new" "$SUPERVISOR_CONF"
    if supervised; then
        supervisorctl update >/dev/null
        supervisorctl start all >/dev/null || true
        log "supervisord: configuration reloaded, every process running"
    else
        "$ROOT/.venv/bin/supervisord" -c "$SUPERVISOR_CONF"
        log "supervisord started (logs: .local/logs/; make status)"
    fi

    wait_port simulator "$SIM_PORT"; wait_port smtp-sink "$SMTP_PORT"; wait_port smtp-sink "$MAIL_WEB_PORT"
    wait_port dashboard "$DASHBOARD_PORT"; wait_port "$AIRFLOW_UI" "$AIRFLOW_PORT"
    wait_port fraudctl-live "$LIVE_METRICS_PORT"
    cat <<EOF

fraudctl stack is up (the live path emails frauds within seconds; fraud_pipeline runs every minute):
  Airflow UI          http://127.0.0.1:$AIRFLOW_PORT   user admin, password $AIRFLOW_ADMIN_PASSWORD
                      (.local/stack.env; the REST API takes it too: curl -u admin:…)
  live path metrics   http://127.0.0.1:$LIVE_METRICS_PORT/metrics   (its log: .local/logs/fraudctl-live.log)
  dashboard           http://127.0.0.1:$DASHBOARD_PORT
  payments simulator  http://127.0.0.1:$SIM_PORT/current-transactions
  emails received     http://127.0.0.1:$MAIL_WEB_PORT   (or: .venv/bin/python scripts/smtp_sink.py list)
  Airflow CLI         scripts/airflow dags list   (this stack's settings, then airflow)
  daily report        FRAUDCTL_DATABASE_URL=$base/fraud_db target/release/fraudctl report
  processes           make status         logs: .local/logs/        stop with: make down
EOF
}

down() {
    if supervised; then
        supervisorctl shutdown >/dev/null
        # supervisord stops each process group (TERM, then KILL after 30 s), then exits.
        for _ in $(seq 1 40); do [[ -S $LOCAL/supervisor.sock ]] || break; sleep 1; done
        log "supervisord and its processes stopped"
    fi
    scripts/pg.sh stop
    log "PostgreSQL stopped"
}

# Each process: its state (supervisord's) and how many times it was restarted since supervisord
# started (the starts its log holds since then, less the first); PostgreSQL's state.
status() {
    if scripts/pg.sh status >/dev/null 2>&1; then
        echo "postgresql                       RUNNING   $(scripts/pg.sh url | sed 's#/postgres$##')"
    else
        echo "postgresql                       STOPPED"
    fi
    if ! supervised; then
        echo "supervisord is not running: make up"
        return
    fi
    local line name starts
    while read -r line; do
        name=${line%% *}
        starts=$(awk -v s="spawned: '$name'" '/supervisord started with pid/ { n = 0 } index($0, s) { n++ } END { print n + 0 }' "$LOGS/supervisord.log" 2>/dev/null || echo 0)
        printf '%s   restarts: %s\n' "$line" "$(( starts > 0 ? starts - 1 : 0 ))"
    done < <(supervisorctl status)
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: scripts/stack.sh up|down|status" >&2; exit 2 ;;
esac
