#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the Python suites (model parity,
# dashboard, Airflow DAGs), then a bounded fuzzing run. Starts the private PostgreSQL cluster and
# builds what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

export FRAUDCTL_TEST_ADMIN_URL=${FRAUDCTL_TEST_ADMIN_URL:-$(scripts/pg.sh start)}
export FRAUDCTL_BIN=$PWD/target/release/fraudctl
export FRAUDCTL_TEST_PYTHON=$PWD/.venv/bin/python

step() { printf '\n==> %s\n' "$*"; }

# The fuzzing run (cargo-fuzz's install and build, then one core per target for a bounded time)
# goes on beside the suites below, which spend much of their time waiting on services; its
# output is shown, and its result counted, at the end.
fuzz_log=$(mktemp)
scripts/fuzz.sh >"$fuzz_log" 2>&1 &
fuzz=$!
trap 'kill $fuzz 2>/dev/null || true; rm -f "$fuzz_log"' EXIT

step "Rust: unit and integration tests"
cargo test --release --locked -- --test-threads 4

step "Python: model and parity tests"
.venv/bin/python -m pytest -q tests/python

if [[ -d dashboard/tests ]]; then
    step "Python: dashboard tests"
    .venv-dashboard/bin/python -m pytest -q dashboard/tests
fi

if [[ -d dags/tests ]]; then
    step "Python: Airflow DAG tests"
    .venv-airflow/bin/python -m pytest -q dags/tests
fi

step "Fuzz: payments-API body parser and stage-file readers (${FRAUDCTL_FUZZ_SECONDS:-60} s each)"
fuzz_status=0
wait "$fuzz" || fuzz_status=$?
cat "$fuzz_log"
exit "$fuzz_status"
