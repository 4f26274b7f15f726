"""Shared set-up of the Python tests: the data sample, the model modules, the seed artifact, and
running the `fraudctl` binary and reading its stage files (docs/stage-files.md)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from model import export_preprocess, features

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model"
SHARED = REPO.parent / "shared"
SAMPLE_CSV = SHARED / "data" / "fraud_sample.csv"
SEED_PREPROCESS = SHARED / "seed" / "preprocess.joblib"
ORIGINAL_SPEC = MODEL_DIR / "original" / "feature_spec.json"
DEFAULT_MODEL = MODEL_DIR / "default"
# Columns the original project dropped before its ColumnTransformer (shared/seed/README.md).
SEED_DROPPED = [
    "is_fraud",
    "cc_num",
    "trans_date_trans_time",
    "unix_time",
    "current_time",
    "first",
    "last",
    "street",
    "city",
    "dob",
    "trans_num",
]


def require_file(path, what):
    if not path.is_file():
        pytest.fail(f"{what} {path} is missing", pytrace=False)
    return path


@pytest.fixture(scope="session")
def sample_path():
    return require_file(SAMPLE_CSV, "data sample (shared/data/, beside the repository)")


@pytest.fixture(scope="session")
def sample(sample_path):
    """The sample as features.py reads a CSV in the data set's layout."""
    return features.read_transactions(sample_path)


@pytest.fixture(scope="session")
def preprocess():
    """The original project's fitted ColumnTransformer (its HashingEncoder: model/encoders.py)."""
    return export_preprocess.load_preprocess(require_file(SEED_PREPROCESS, "seed preprocessing artifact"))


@pytest.fixture(scope="session")
def seed_transform(preprocess):
    """preprocess.transform on transactions prepared as the original project did, dense."""

    def transform(df):
        prepared = df.assign(gender=df["gender"].map({"M": 0, "F": 1}))
        prepared = prepared.drop(columns=[c for c in SEED_DROPPED if c in prepared.columns])
        out = preprocess.transform(prepared)
        return out.toarray() if hasattr(out, "toarray") else np.asarray(out)

    return transform


@pytest.fixture(scope="session")
def run():
    """Runs a command (in `cwd`, default the current directory); fails the test with its stderr
    unless it exits 0."""

    def run_command(args, env=None, cwd=None):
        args = [str(a) for a in args]
        done = subprocess.run(
            args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}", pytrace=False)
        return done

    return run_command


@pytest.fixture(scope="session")
def fraudctl():
    """Path of the fraudctl binary (FRAUDCTL_BIN): the Rust-parity tests fail without it (a
    parity test that cannot run proves nothing, so it must not pass as skipped)."""
    path = Path(os.environ.get("FRAUDCTL_BIN", REPO / "target" / "release" / "fraudctl"))
    if not path.is_file():
        pytest.fail(
            f"fraudctl binary {path} does not exist (build it with "
            "`cargo build --release` or set FRAUDCTL_BIN)"
        )
    return path


def read_stage(path, schema):
    """Header and records of a stage file, checked as docs/stage-files.md requires."""
    lines = require_file(path, "stage file").read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["schema"] == schema and header["version"] == 1, f"{path}: header {header}"
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == header["counts"]["records"], f"{path}: record count != header counts"
    return header, records


@pytest.fixture(scope="session")
def new_database(fraudctl, run):
    """Makes new, migrated databases on the test cluster (FRAUDCTL_TEST_ADMIN_URL, which
    scripts/test.sh sets), dropped at the end of the session; returns their URLs."""
    admin = os.environ.get("FRAUDCTL_TEST_ADMIN_URL")
    if not admin:
        pytest.fail(
            "FRAUDCTL_TEST_ADMIN_URL is not set: run the tests with scripts/test.sh, or "
            "start PostgreSQL with scripts/pg.sh start and export the URL it prints",
            pytrace=False,
        )
    made = []

    def make():
        url = f"{admin.rsplit('/', 1)[0]}/fraudctl_python_{os.getpid()}_{len(made)}"
        run(
            [fraudctl, "migrate", "--create-database"],
            {"PATH": os.environ.get("PATH", ""), "FRAUDCTL_DATABASE_URL": url},
        )
        made.append(url.rsplit("/", 1)[1])
        return url

    yield make
    for name in made:
        subprocess.run(
            ["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            capture_output=True,
            check=False,
        )


@pytest.fixture(scope="session")
def database_url(new_database):
    """A database nothing is loaded into: transform finds there no earlier payment."""
    return new_database()


@pytest.fixture(scope="session")
def stage_env(database_url):
    """The environment of the stages: the test's card-hash key and database, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")}
    return {
        **env,
        "FRAUDCTL_PAN_HASH_KEY": "python-parity-tests-0123456789abcdef",
        "FRAUDCTL_DATABASE_URL": database_url,
    }


@pytest.fixture(scope="session")
def fraudctl_run(fraudctl, run, sample_path, tmp_path_factory, stage_env):
    """Runs extract (the whole sample) and transform with a feature spec, then score with a model
    directory if given, in a fresh run directory; returns that directory (one per arguments).
    Nothing is loaded: the cards' history is the sample itself."""
    env = stage_env
    done = {}

    def run_stages(feature_spec, model_dir=None):
        key = (feature_spec, model_dir)
        if key not in done:
            run_dir = tmp_path_factory.mktemp("run")
            run(
                [
                    fraudctl,
                    "extract",
                    "--from-csv",
                    sample_path,
                    "--run-dir",
                    run_dir,
                    "--run-id",
                    run_dir.name,
                ],
                env,
            )
            run([fraudctl, "transform", "--run-dir", run_dir, "--feature-spec", feature_spec], env)
            if model_dir is not None:
                run(
                    [fraudctl, "score", "--run-dir", run_dir, "--scorer", "local", "--model-dir", model_dir],
                    env,
                )
            done[key] = run_dir
        return done[key]

    return run_stages


@pytest.fixture(scope="session")
def stage_records(sample):
    """Reads a stage file's records, checks they cover every sample row once, and returns them
    in the sample's row order."""

    def records_in_sample_order(path, schema):
        _, records = read_stage(path, schema)
        by_trans_num = {r["tx"]["trans_num"]: r for r in records}
        assert len(by_trans_num) == len(records), f"{path}: duplicate trans_num"
        missing = set(sample["trans_num"]) - set(by_trans_num)
        assert not missing, f"{path}: {len(missing)} sample rows missing, e.g. {sorted(missing)[:3]}"
        return [by_trans_num[t] for t in sample["trans_num"]]

    return records_in_sample_order
