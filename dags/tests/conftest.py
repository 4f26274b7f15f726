"""Shared set-up of the DAG tests: a throwaway Airflow home, real services, helpers.

Real components only: the private PostgreSQL (scripts/pg.sh start; FRAUDCTL_TEST_PG_URL to use
another server), the fraudctl binary (FRAUDCTL_BIN, default target/release/fraudctl) and its
payments simulator, the SMTP sink (scripts/smtp_sink.py), the Airflow of the venv running the tests
(Airflow 2.8.3, airflow/requirements.txt; or Airflow 3, airflow/requirements-3.txt) run through its
own CLI with LocalExecutor and a PostgreSQL metadata database. `dags/` and this folder are on
sys.path through pytest.ini (`pythonpath`), as Airflow puts its dags folder there.
"""

import email
import email.policy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
VENV_BIN = Path(sys.executable).parent  # the venv of airflow/requirements.txt (or -3.txt)
AIRFLOW_MAJOR = int(version("apache-airflow").split(".")[0])  # without importing airflow (below)
# dag_run's logical date column: renamed by Airflow 3.
LOGICAL_DATE = "logical_date" if AIRFLOW_MAJOR >= 3 else "execution_date"


def on_airflow_2_only(why: str):
    """A test of something Airflow 3 does not have or does otherwise: skipped there, saying why."""
    return pytest.mark.skipif(AIRFLOW_MAJOR >= 3, reason=f"Airflow 2 only: {why}")


# In-process Airflow (DagBag tests) gets a throwaway home before any test module imports airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="fraudctl-airflow-home-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The digest's parse-time settings at their defaults (UTC, 07:00) whatever the developer's shell
# says; the tests that need others set them (test_dag_structure.py).
for _setting in ("FRAUDCTL_BUSINESS_TIME_ZONE", "FRAUDCTL_DIGEST_LOCAL_TIME"):
    os.environ.pop(_setting, None)

# The cluster scripts/test.sh started (FRAUDCTL_TEST_ADMIN_URL), as the other suites use.
PG_URL = os.environ.get("FRAUDCTL_TEST_PG_URL") or os.environ.get(
    "FRAUDCTL_TEST_ADMIN_URL", "postgres://postgres@127.0.0.1:55432/postgres"
)


def recent() -> str:
    """A logical date a few minutes ago, so extract polls the API instead of skipping, at 30 s
    past the minute, so no scheduled or backfilled run has it (`tasks test` then runs in a run of
    its own, kept in memory; the run directories go to the test's own runs root)."""
    logical = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=3)
    return logical.isoformat()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def with_db(url: str, dbname: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':')[0]}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, "", ""))


def sql(url: str, query: str, *params):
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture(scope="session")
def fraudctl_bin() -> Path:
    path = Path(os.environ.get("FRAUDCTL_BIN", ROOT / "target/release/fraudctl"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no fraudctl binary at {path}: build it (cargo build --release) or set FRAUDCTL_BIN")
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(os.environ.get("FRAUDCTL_MODEL_DIR", ROOT / "model/default"))
    if not (path / "model.json").is_file() or not (path / "feature_spec.json").is_file():
        pytest.fail(f"no model in {path} (model.json, feature_spec.json): set FRAUDCTL_MODEL_DIR")
    return path


@pytest.fixture(scope="session")
def databases(fraudctl_bin):
    """A fresh business database (fraudctl migrate --create-database) and Airflow metadata DB."""
    try:
        sql(PG_URL, "select 1")
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} unreachable ({exc}): run scripts/pg.sh start")
    suffix = secrets.token_hex(4)
    fraud_db, airflow_db = f"fraud_db_dagtest_{suffix}", f"airflow_db_dagtest_{suffix}"
    subprocess.run(
        [fraudctl_bin, "migrate", "--create-database"],
        check=True,
        env={**os.environ, "FRAUDCTL_DATABASE_URL": with_db(PG_URL, fraud_db)},
    )
    sql(PG_URL, f"create database {airflow_db}")
    yield {"fraud": with_db(PG_URL, fraud_db), "airflow": with_db(PG_URL, airflow_db)}
    for db in (fraud_db, airflow_db):
        sql(PG_URL, f"drop database if exists {db} with (force)")


def _service(cmd: list, port: int, what: str, log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, what)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(f"{exc}; log: {log.read_text()[-2000:]}")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _payments_simulator(fraudctl_bin, tmp_path_factory, fraud_rate: float = 0.2, *args: str):
    """A payments simulator with many frauds, so that a short run has some, as fast as it is
    polled (`last-day`; `args`: more of serve-payments' options): yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("simulator") / "simulator.log"
    proc = _service(
        [
            fraudctl_bin,
            "serve-payments",
            "--listen",
            f"127.0.0.1:{port}",
            "--time-mode",
            "last-day",
            "--fraud-rate",
            str(fraud_rate),
            *args,
        ],
        port,
        "payments simulator",
        log,
    )
    yield f"http://127.0.0.1:{port}/current-transactions"
    _stop(proc)


@pytest.fixture(scope="session")
def payments_api(fraudctl_bin, tmp_path_factory):
    """The session's payments simulator."""
    yield from _payments_simulator(fraudctl_bin, tmp_path_factory)


class Mailbox:
    def __init__(self, maildir: Path):
        self.maildir = maildir

    def messages(self) -> list:
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(self.maildir.glob("*.eml"))
        ]


def _smtp_sink(tmp_path_factory):
    """The SMTP sink (scripts/smtp_sink.py): every accepted message is a file in its maildir."""
    port = free_port()
    base = tmp_path_factory.mktemp("smtp")
    proc = _service(
        [
            sys.executable,
            ROOT / "scripts/smtp_sink.py",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--maildir",
            base / "mail",
        ],
        port,
        "SMTP sink",
        base / "sink.log",
    )
    box = Mailbox(base / "mail")
    box.port = port
    box.connection = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "fraudctl@example.test"},
        }
    )
    yield box
    _stop(proc)


@pytest.fixture(scope="session")
def mailbox(tmp_path_factory):
    """The sink of the session's Connection fraudctl_smtp: fraud alerts and digests."""
    yield from _smtp_sink(tmp_path_factory)


@pytest.fixture(scope="session")
def ops_mailbox(tmp_path_factory):
    """Another sink, for the operations tests: a task run with AIRFLOW_CONN_FRAUDCTL_SMTP=
    ops_mailbox.connection mails here, leaving the alert tests' mailbox as they expect it."""
    yield from _smtp_sink(tmp_path_factory)


@pytest.fixture(scope="session")
def secrets_in_play() -> dict:
    """Secret values the tests hand to Airflow and then look for where they must not be."""
    return {"db_password": "dbpw-" + secrets.token_hex(8), "pan_key": "pan-" + secrets.token_hex(16)}


class ProcessWatch:
    """Reads the command line of every process on the machine, every few milliseconds, while it
    is entered: what the processes of a DAG run really ran with (the task's bash, then fraudctl
    after its exec), not what the test meant them to run with."""

    def __enter__(self):
        self.cmdlines, self._stop = set(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.wait(0.003):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    raw = cmdline.read_bytes()
                except OSError:
                    continue  # the process ended meanwhile
                if raw:
                    self.cmdlines.add(raw.replace(b"\0", b" ").decode(errors="replace"))


def tasks_test_state(done: subprocess.CompletedProcess) -> str:
    """The state `airflow tasks test` ended its task in (success, failed, up_for_retry, skipped),
    as its output says: Airflow 2.8.3 logs "Marking task as FAILED" and exits non-zero on a
    failure, Airflow 3 logs "new_state=failed" and exits 0."""
    pattern = r"new_state=(\w+)" if AIRFLOW_MAJOR >= 3 else r"Marking task as (\w+)"
    said = re.findall(pattern, done.stdout + done.stderr)
    return said[-1].lower() if said else ("success" if done.returncode == 0 else "failed")


def xcom_value(stored):
    """An XCom's value as its row holds it: JSON as bytes on Airflow 2, jsonb (decoded) on 3."""
    return stored if AIRFLOW_MAJOR >= 3 else json.loads(bytes(stored))


def parse_dags(folder: Path):
    """The DAG files of `folder` parsed in this process, as the scheduler parses them."""
    if AIRFLOW_MAJOR >= 3:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(folder))
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(folder), include_examples=False)


def core_timetable(dag):
    """The DAG's timetable as the scheduler computes runs with it (Airflow 3: the Task SDK's
    declaration, turned into the core class)."""
    if AIRFLOW_MAJOR >= 3:
        from airflow.serialization.encoders import coerce_to_core_timetable

        return coerce_to_core_timetable(dag.timetable)
    return dag.timetable


class Airflow:
    """The airflow CLI of the pinned venv, with one AIRFLOW_HOME and environment."""

    def __init__(self, env: dict, home: Path, metadata_url: str):
        self.env, self.home, self.metadata_url = env, home, metadata_url

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, **env_overrides):
        env = {**self.env, **{k: str(v) for k, v in env_overrides.items()}}
        done = subprocess.run(
            [VENV_BIN / "airflow", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        return done

    def backfill(self, dag_id: str, start: datetime, end: datetime, check: bool = True, **env):
        """`airflow dags backfill` on Airflow 2 (it runs the runs itself); on 3, `airflow backfill
        create`, which the scheduler runs (beside an api-server, whose execution API its tasks
        talk to), waited for until the backfill completes. `env`: the tasks' environment too."""
        first, last = start.isoformat(), end.isoformat()
        if AIRFLOW_MAJOR < 3:
            return self("dags", "backfill", dag_id, "-s", first, "-e", last, check=check, **env)
        self("dags", "reserialize")  # the DAGs in the database, as the dag-processor puts them
        # A paused DAG's queued runs, a backfill's too, are not started (no scheduled run is made
        # meanwhile: the scheduler runs without its job schedule).
        self("dags", "unpause", dag_id)
        with Airflow3Services(self, env):
            done = self(
                "backfill", "create", "--dag-id", dag_id, "--from-date", first, "--to-date", last, **env
            )
            deadline = time.monotonic() + 300
            while not sql(
                self.metadata_url,
                "select 1 from backfill where completed_at is not null"
                " and dag_id = %s and from_date = %s and to_date = %s",
                dag_id,
                start,
                end,
            ):
                assert time.monotonic() < deadline, "the backfill did not complete within 300 s"
                time.sleep(1)
        self("dags", "pause", dag_id)
        return done

    def run_id(self, dag_id: str, logical_date: datetime) -> str:
        """The run id of the DAG's run of that logical date (Airflow 3 names a backfill's run by
        the end of its interval, 2.8.3 by its logical date)."""
        rows = sql(
            self.metadata_url,
            f"select run_id from dag_run where dag_id = %s and {LOGICAL_DATE} = %s",
            dag_id,
            logical_date,
        )
        assert len(rows) == 1, rows
        return rows[0][0]

    def task_states(self, dag_id: str, logical_date: str) -> dict:
        rows = sql(
            self.metadata_url,
            "select ti.task_id, ti.state from task_instance ti join dag_run dr"
            " on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id"
            f" where dr.dag_id = %s and dr.{LOGICAL_DATE} = %s",
            dag_id,
            logical_date,
        )
        return dict(rows)

    def xcoms(self, dag_id: str, logical_date: str) -> dict:
        rows = sql(
            self.metadata_url,
            "select x.task_id, x.value from xcom x join dag_run dr on dr.id = x.dag_run_id"
            f" where dr.dag_id = %s and dr.{LOGICAL_DATE} = %s and x.key = 'return_value'",
            dag_id,
            logical_date,
        )
        return {task: xcom_value(value) for task, value in rows}

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in (self.home / "logs").rglob("*.log"))


class Airflow3Services:
    """What runs a backfill on Airflow 3: the api-server (the tasks' execution API) and the
    scheduler (LocalExecutor; no scheduled runs, only the backfill's), with the test's
    environment and `env`; stopped afterwards, with every task they started."""

    def __init__(self, af: Airflow, env: dict):
        port = free_port()
        self.env = {
            **af.env,
            **{k: str(v) for k, v in env.items()},
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor's processes (32 by default)
        }
        self.port, self.procs = port, ProcessTrees(Path(tempfile.mkdtemp(prefix="airflow3-services-")))

    def __enter__(self):
        cmd = [VENV_BIN / "airflow", "api-server", "--host", "127.0.0.1", "--port", str(self.port)]
        self.procs.start("api-server", cmd, self.env)
        # Without its log server (port 8793 on every interface, which another Airflow may hold).
        self.procs.start("scheduler", [VENV_BIN / "airflow", "scheduler", "--skip-serve-logs"], self.env)
        try:
            wait_for_port(self.port, self.procs.procs["api-server"], "airflow api-server", timeout=120)
        except RuntimeError as exc:
            self.procs.stop_all()
            pytest.fail(f"{exc}\n{self.procs.diagnostics()}")
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            print(self.procs.diagnostics())
        self.procs.stop_all()


@pytest.fixture(scope="session")
def airflow(
    tmp_path_factory, databases, fraudctl_bin, model_dir, payments_api, mailbox, secrets_in_play
) -> Airflow:
    """Airflow configured as in production (Variables and Connections from the environment),
    its metadata database created by `airflow db migrate`."""
    home = tmp_path_factory.mktemp("airflow-home")
    runs_root = tmp_path_factory.mktemp("runs")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": databases["airflow"].replace(
            "postgres://", "postgresql+psycopg2://", 1
        ),
        # Connections and Variables from the environment, as docker-compose sets them.
        "AIRFLOW_CONN_FRAUD_DB": with_db(
            databases["fraud"], urlsplit(databases["fraud"]).path[1:], password=secrets_in_play["db_password"]
        ),
        "AIRFLOW_CONN_FRAUDCTL_SMTP": mailbox.connection,
        "AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT": str(runs_root),
        "AIRFLOW_VAR_FRAUDCTL_MODEL_DIR": str(model_dir),
        # A challenger in shadow (another feature spec): stored, never alerted on.
        "AIRFLOW_VAR_FRAUDCTL_CHALLENGER_MODEL_DIR": str(ROOT / "model/challenger"),
        "AIRFLOW_VAR_FRAUDCTL_API_URL": payments_api,
        "AIRFLOW_VAR_FRAUDCTL_EXTRACT_MAX_SECONDS": "4",
        "AIRFLOW_VAR_FRAUDCTL_EXTRACT_MAX_RECORDS": "40",
        "AIRFLOW_VAR_FRAUDCTL_EXTRACT_MAX_LAG_SECS": "3600",
        "AIRFLOW_VAR_FRAUDCTL_ALERT_TO": "fraud-team@example.test",
        # The worker's environment, as the deployment sets it.
        "FRAUDCTL_BIN": str(fraudctl_bin),
        "FRAUDCTL_PAN_HASH_KEY": secrets_in_play["pan_key"],
    }
    af = Airflow(env, home, databases["airflow"])
    af.runs_root = runs_root
    af.fraud_db = databases["fraud"]
    af("db", "migrate")
    return af


# --- CeleryExecutor (test_celery.py): a broker, a module's own business data, workers ---------


@pytest.fixture(scope="module")
def redis_broker(tmp_path_factory) -> str:
    """Debian's redis-server on a free loopback port, with a password and no persistence (Airflow
    keeps the state; the broker only carries task messages): the Celery broker's URL."""
    if not shutil.which("redis-server"):
        pytest.fail("no redis-server on PATH: apt-get install redis-server")
    port, password, base = free_port(), secrets.token_hex(12), tmp_path_factory.mktemp("redis")
    conf = base / "redis.conf"  # the password in a file of the test's, never on a command line
    conf.write_text(
        f'bind 127.0.0.1\nport {port}\nrequirepass {password}\nsave ""\nappendonly no\ndir {base}\n'
    )
    conf.chmod(0o600)
    proc = _service(["redis-server", conf], port, "redis-server", base / "redis.log")
    yield f"redis://:{password}@127.0.0.1:{port}/0"
    _stop(proc)


@pytest.fixture(scope="module")
def own_fraud_db(fraudctl_bin):
    """A business database of the module's own (the session's `databases` one is counted by the
    other modules): fraudctl migrate --create-database, dropped afterwards."""
    name = f"fraud_db_dagtest_{secrets.token_hex(4)}"
    url = with_db(PG_URL, name)
    subprocess.run(
        [fraudctl_bin, "migrate", "--create-database"],
        check=True,
        env={**os.environ, "FRAUDCTL_DATABASE_URL": url},
    )
    yield url
    sql(PG_URL, f"drop database if exists {name} with (force)")


@pytest.fixture(scope="module")
def own_payments_api(fraudctl_bin, tmp_path_factory):
    """A payments simulator of the module's own (the generator's stream is one, so a module
    polling the session's would change what the others receive). Mostly frauds: the payments a
    killed extract had polled are lost (the API serves each once), and with them, at the
    session's 0.2, may go every fraud the default model catches in the three runs (the stream's
    first 40 payments hold most of them); at 0.9 every 40 of the first 400 hold four or more."""
    yield from _payments_simulator(fraudctl_bin, tmp_path_factory, fraud_rate=0.9)


@pytest.fixture(scope="module")
def own_mailbox(tmp_path_factory):
    """An SMTP sink of the module's own (the session's `mailbox` is counted by the other modules)."""
    yield from _smtp_sink(tmp_path_factory)


def _signal(procs, sig) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass  # ended meanwhile


class ProcessTrees:
    """Long-running processes of a test (scheduler, workers), each in a session of its own with
    its output in a log file; `kill` SIGKILLs a process with every descendant (a machine lost),
    `stop_all` ends whatever is left, descendants included (Airflow's task runner moves each task
    into a process group of its own, so a group signal would miss them)."""

    def __init__(self, logs: Path):
        self.logs, self.procs = logs, {}

    def start(self, name: str, cmd: list, env: dict) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.procs[name]

    def tree(self, name: str) -> list:
        try:
            root = psutil.Process(self.procs[name].pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self, name: str) -> None:
        """SIGKILL the whole tree at once: frozen first (SIGSTOP) until no new process appears,
        so that none forks away or is orphaned out of reach in between."""
        frozen: set = set()
        while new := [p for p in self.tree(name) if p not in frozen]:  # a frozen one forks no more
            _signal(new, signal.SIGSTOP)
            frozen.update(new)
        _signal(frozen, signal.SIGKILL)
        self._wait(name, frozen, timeout=10)

    def stop_all(self) -> None:
        trees = {name: self.tree(name) for name in self.procs}
        for procs in trees.values():
            _signal(procs, signal.SIGTERM)
        for name, procs in trees.items():
            try:
                self._wait(name, procs, timeout=15)
            except subprocess.TimeoutExpired:
                _signal(procs, signal.SIGKILL)
                self._wait(name, procs, timeout=10)

    def _wait(self, name: str, procs, timeout: float) -> None:
        """The root through its Popen (which keeps its exit status: psutil would reap it), the
        descendants through psutil."""
        root = self.procs[name]
        root.wait(timeout=timeout)
        _, alive = psutil.wait_procs([p for p in procs if p.pid != root.pid], timeout=timeout)
        if alive:
            raise subprocess.TimeoutExpired(f"{name}'s processes {[p.pid for p in alive]}", timeout)

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-tail:]

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {name} (exit {proc.poll()}), {self.logs / name}.log:\n{self.log(name)}"
            for name, proc in self.procs.items()
        )


CELERY_WORKERS = ("worker-1", "worker-2")


def wait_for_log(procs: ProcessTrees, name: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in procs.log(name, tail=100_000):
        if procs.procs[name].poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{name} not ready ({text!r} not in its log):\n{procs.diagnostics()}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def celery_cluster(airflow, redis_broker, own_fraud_db, own_payments_api, own_mailbox, tmp_path_factory):
    """The DAGs on CeleryExecutor as on several machines: Redis as the broker, the result backend
    in the metadata database (the session's), the scheduler and two `airflow celery worker`s
    (concurrency 1, each recording a hostname of its own on the tasks it runs) sharing one runs
    directory, with a business database, payments simulator and mailbox of their own (the
    other modules count theirs). Only triggered runs run (no schedule); a task whose worker
    vanished is found a zombie within seconds. Every process, tasks included, is ended
    afterwards, on failure too."""
    home = tmp_path_factory.mktemp("airflow-celery-home")
    smtp = {**json.loads(airflow.env["AIRFLOW_CONN_FRAUDCTL_SMTP"]), "port": own_mailbox.port}
    fraud_db = with_db(airflow.env["AIRFLOW_CONN_FRAUD_DB"], urlsplit(own_fraud_db).path[1:])
    runs_root = tmp_path_factory.mktemp("runs-celery")
    env = {
        **airflow.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://" + airflow.metadata_url.split("://", 1)[1],
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__LOCAL_TASK_JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD": "15",
        "AIRFLOW__SCHEDULER__ZOMBIE_DETECTION_INTERVAL": "2",
        "AIRFLOW_CONN_FRAUD_DB": fraud_db,  # the session's password, another database
        "AIRFLOW_CONN_FRAUDCTL_SMTP": json.dumps(smtp),
        "AIRFLOW_VAR_FRAUDCTL_API_URL": own_payments_api,
        "AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT": str(runs_root),
    }
    af = Airflow(env, home, airflow.metadata_url)
    af.runs_root, af.fraud_db, af.mailbox = runs_root, own_fraud_db, own_mailbox
    af.workers = CELERY_WORKERS
    af.procs = procs = ProcessTrees(home)
    try:
        for name in CELERY_WORKERS:
            procs.start(
                name,
                [
                    VENV_BIN / "airflow",
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--concurrency",
                    "1",
                    "--pid",
                    home / f"{name}.pid",
                    "--skip-serve-logs",
                    "--without-mingle",
                    "--without-gossip",
                ],
                {
                    **env,
                    "PYTHONPATH": str(Path(__file__).parent),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_hostname.hostname",
                    "FRAUDCTL_TEST_WORKER_NAME": name,
                },
            )
        af("dags", "reserialize")  # the DAGs in the database before the scheduler parses them
        af("dags", "unpause", "fraud_pipeline")
        procs.start("scheduler", [VENV_BIN / "airflow", "scheduler"], env)
        for name in CELERY_WORKERS:
            wait_for_log(procs, name, f"{name}@")  # celery's "worker-1@HOST ready."
            wait_for_log(procs, name, " ready.")
        yield af
    finally:
        procs.stop_all()
