"""The local stack's Variables (scripts/seed_variables.py, run by `make up`) in a real metadata
database: set when absent, following the stack while nobody changed them, an operator's value
(Admin > Variables, `airflow variables set`) kept."""

import subprocess

from conftest import ROOT, VENV_BIN

NAME = "fraudctl_seed_test_url"  # no other test, nor the environment, has it


def seed(airflow, state, value: str) -> str:
    done = subprocess.run(
        [VENV_BIN / "python", ROOT / "scripts" / "seed_variables.py", state, f"{NAME}={value}"],
        env=airflow.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return "".join(
        line
        for line in done.stdout.splitlines(keepends=True)  # Airflow logs to stdout too
        if line.startswith("seed_variables: ")
    )


def current(airflow) -> str:
    return airflow("variables", "get", NAME).stdout.strip()


def test_the_stack_seeds_its_variables_and_keeps_an_operators(airflow, tmp_path):
    state = tmp_path / "seeded.json"
    assert (
        seed(airflow, state, "http://127.0.0.1:8000/a")
        == f"seed_variables: set {NAME}='http://127.0.0.1:8000/a'\n"
    )
    assert seed(airflow, state, "http://127.0.0.1:8000/a") == f"seed_variables: unchanged {NAME}\n"
    seed(airflow, state, "http://127.0.0.1:9000/a")  # the stack's port changed: the Variable follows
    assert current(airflow) == "http://127.0.0.1:9000/a"

    airflow("variables", "set", NAME, "http://payments.example.test/current")  # an operator's
    out = seed(airflow, state, "http://127.0.0.1:9001/a")
    assert out.startswith(f"seed_variables: kept {NAME}='http://payments.example.test/current'"), out
    assert current(airflow) == "http://payments.example.test/current"

    airflow("variables", "delete", NAME)  # deleted: the stack's value again
    seed(airflow, state, "http://127.0.0.1:9001/a")
    assert current(airflow) == "http://127.0.0.1:9001/a"
