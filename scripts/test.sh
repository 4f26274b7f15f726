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

# Three suites go on in the background beside the others, because they spend most of their time
# waiting: the fuzzing run (after cargo-fuzz's install and build, one core per target for a
# bounded time) and the Airflow DAG suite, once on Airflow 2.8.3 (airflow/requirements.txt) and
# once on Airflow 3 (airflow/requirements-3.txt), side by side (schedulers and workers polling:
# 60 % of a core each; side by side, 9 and 12.5 minutes on a shared 2-core machine). Each one's output is shown, and its result
# counted, at the end, in start order. Each runs in a session of its own, so that an early exit
# stops it with the services it started. `scripts/test.sh dags` runs the two DAG suites alone.
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
dag_suites() {
    background "Python: Airflow DAG tests on Airflow 2.8.3" .venv-airflow/bin/python -m pytest -q dags/tests
    background "Python: Airflow DAG tests on Airflow 3" .venv-airflow3/bin/python -m pytest -q -rs dags/tests
}
# Waits for each background suite in turn, shows its output; status=1 if one failed.
status=0
report_background() {
    local i code
    for i in "${!pids[@]}"; do
        step "${names[i]}"
        code=0
        wait "${pids[i]}" || code=$?
        cat "${logs[i]}"
        ((code == 0)) || { printf '\n%s: FAILED (exit %s)\n' "${names[i]}" "$code"; status=1; }
    done
}

if [[ ${1:-} == dags ]]; then
    dag_suites
    report_background
    exit "$status"
fi

background "Fuzz: payments-API body parser and stage-file readers (${FRAUDCTL_FUZZ_SECONDS:-60} s each)" \
    scripts/fuzz.sh

step "Rust: unit and integration tests"
cargo test --release --locked --no-run
if [[ -d dags/tests ]]; then # started once the test build no longer needs both cores
    dag_suites
fi
cargo test --release --locked -- --test-threads 4

step "Python: model and parity tests"
.venv/bin/python -m pytest -q tests/python

if [[ -d dashboard/tests ]]; then
    step "Python: dashboard tests"
    .venv-dashboard/bin/python -m pytest -q dashboard/tests
fi

report_background

# Last, alone: the whole local stack (scripts/stack.sh, on ports of its own) through a two-minute
# outage of its database; about seven minutes, mostly waiting.
step "Stack: a two-minute PostgreSQL outage (tests/stack)"
.venv/bin/python -m pytest -q tests/stack || { printf '\nStack: FAILED\n'; status=1; }
exit "$status"
