# fraudctl — the two commands that matter: `make up` (the whole local stack) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3

.PHONY: build venv test lint check fuzz bench bench-live up down status pg clean

build: ## the fraudctl binary (target/release/fraudctl)
	cargo build --release --locked

# One pinned virtualenv per Python component; rebuilt when its requirements change.
.venv/.installed: requirements-dev.txt model/requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

.venv-dashboard/.installed: dashboard/requirements.txt
	$(PYTHON) -m venv .venv-dashboard
	.venv-dashboard/bin/pip install -q --disable-pip-version-check -r dashboard/requirements.txt
	touch $@

.venv-airflow/.installed: airflow/requirements.txt airflow/requirements-test.txt
	$(PYTHON) -m venv .venv-airflow
	.venv-airflow/bin/pip install -q --disable-pip-version-check -r airflow/requirements-test.txt
	touch $@

# Airflow 3 beside 2.8.3 (the default): the DAG tests run on both; FRAUDCTL_AIRFLOW_MAJOR=3 make up
# runs the stack on it (airflow/README.md, airflow/UPGRADING.md).
.venv-airflow3/.installed: airflow/requirements-3.txt airflow/requirements-3-test.txt
	$(PYTHON) -m venv .venv-airflow3
	.venv-airflow3/bin/pip install -q --disable-pip-version-check -r airflow/requirements-3-test.txt
	touch $@

VENVS := .venv/.installed .venv-dashboard/.installed .venv-airflow/.installed .venv-airflow3/.installed

venv: $(VENVS) ## the pinned Python environments

pg: ## start the private PostgreSQL cluster (.local/pg, port 55432)
	scripts/pg.sh start

test: build venv ## every test (starts PostgreSQL itself)
	scripts/test.sh

PY_FILES = $$(git ls-files '*.py')
lint: .venv/.installed ## the style gate CI runs: rustfmt, clippy (warnings are errors), src/'s layout, ruff check and format
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings
	.venv/bin/python scripts/check_layout.py
	.venv/bin/ruff check $(PY_FILES)
	.venv/bin/ruff format --check $(PY_FILES)

check: lint ## the fast loop: the lint gate, then the unit tests (seconds)
	cargo test --release --locked --lib

N ?= 1000000
RUNS ?= 3
BENCH_FLAGS ?= # e.g. --no-peer (skip the Python peer, scripts/python_peer.py)
bench: build .venv/.installed ## the benchmark against the Python peer (N transactions, median of RUNS runs; BENCHMARKS.md), then cargo bench
	$(PYTHON) scripts/bench.py --n $(N) --runs $(RUNS) $(BENCH_FLAGS)
	cargo bench --locked --bench hot_paths

bench-live: build .venv/.installed ## the live path's latency at 10, 100 and 1000 payments/s against the DAG alone, and its ceiling (BENCHMARKS.md)
	.venv/bin/python scripts/bench_live.py

fuzz: build ## fuzz the API body parser and the stage-file readers, 60 s each (FRAUDCTL_FUZZ_SECONDS)
	scripts/fuzz.sh

up: build venv ## the whole local stack: PostgreSQL, simulator, SMTP sink, Airflow (FRAUDCTL_AIRFLOW_MAJOR=3: Airflow 3), dashboard
	scripts/stack.sh up

down: ## stop the local stack
	scripts/stack.sh down

status:
	@scripts/stack.sh status

clean:
	scripts/pg.sh stop
	rm -rf .local .venv .venv-dashboard .venv-airflow .venv-airflow3 target
