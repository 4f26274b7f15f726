#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, the Python suites (model parity, dashboard,
# Airflow DAGs), a bounded fuzzing run and the local stack through a database outage. Starts the private PostgreSQL cluster and builds what
# it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

export FRAUDCTL_TEST_ADMIN_URL=${FRAUDCTL_TEST_ADMIN_URL:-$(scripts/pg.sh start)}
export FRAUDCTL_BIN=$PWD/target/release/fraudctl
export FRAUDCTL_TEST_PYTHON=$PWD/.venv/bin/python

step() { printf '\n==> %s\n' "$*"; }

# The DAG suite on each Airflow the DAGs support, one after the other: 2.8.3 (airflow/requirements.txt)
# and 3 (airflow/requirements-3.txt). `scripts/test.sh dags` runs just these.
dag_suites() {
    local status=0 venv
    for venv in .venv-airflow .venv-airflow3; do
        step "on Airflow $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))') ($venv)"
        SECONDS=0
        "$venv/bin/python" -m pytest -q dags/tests || status=1
        echo "($SECONDS s)"
    done
    return "$status"
}
if [[ ${1:-} == dags ]]; then
    dag_suites
    exit
fi

# Two suites go on in the background beside the others, because they spend most of their time
# waiting: the fuzzing run (after cargo-fuzz's install and build, one core per target for a
# bounded time) and the Airflow DAG suites (schedulers and workers polling: 60 % of a core over
# 6 minutes on Airflow 2.8.3, then again on Airflow 3). Each one's output is shown, and its result counted, at the end, in start order.
# Each runs in a session of its own, so that an early exit stops it with the services it started.
names=() pids=() logs=()
stop_background() {
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    rm -f "${logs[@]}"
}
trap stop_background EXIT
background() {
    names+=("$1")
    logs+=("$(mktemp)")
    shift
    setsid "$@" >"${logs[-1]}" 2>&1 &
    pids+=($!)
}

background "Fuzz: payments-API body parser and stage-file readers (${FRAUDCTL_FUZZ_SECONDS:-60} s each)" \
    scripts/fuzz.sh

step "Rust: unit and integration tests"
cargo test --release --locked --no-run
if [[ -d dags/tests ]]; then # started once the test build no longer needs both cores
    background "Python: Airflow DAG tests, on Airflow 2.8.3 then 3" "$PWD/scripts/test.sh" dags
fi
cargo test --release --locked -- --test-threads 4

step "Python: model and parity tests"
.venv/bin/python -m pytest -q tests/python

if [[ -d dashboard/tests ]]; then
    step "Python: dashboard tests"
    .venv-dashboard/bin/python -m pytest -q dashboard/tests
fi

status=0
for i in "${!pids[@]}"; do
    step "${names[i]}"
    code=0
    wait "${pids[i]}" || code=$?
    cat "${logs[i]}"
    ((code == 0)) || { printf '\n%s: FAILED (exit %s)\n' "${names[i]}" "$code"; status=1; }
done

# Last, alone: the whole local stack (scripts/stack.sh, on ports of its own) through a two-minute
# outage of its database; about seven minutes, mostly waiting.
step "Stack: a two-minute PostgreSQL outage (tests/stack)"
.venv/bin/python -m pytest -q tests/stack || { printf '\nStack: FAILED\n'; status=1; }
exit "$status"
