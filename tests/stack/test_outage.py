"""The local stack outlives its database (issue: operations, round two).

`scripts/stack.sh up` in a scratch root (the repository's code and environments linked in, its
own `.local` and ports, so that a developer's stack is left alone), PostgreSQL, which also holds
Airflow's metadata, stopped for two minutes and started again. Then:

* the scheduler is back without a second `make up` (supervisord restarted it) and runs the DAG;
* operations were emailed that the scheduler was down, then that it is back, once each;
* nothing is lost: every payment captured (the live path's journals and the minutes' raw files)
  is in `payments_scored`, and every payment the simulator served was captured;
* nothing is emailed twice: every alerted payment is in exactly one email, every predicted fraud
  of the alerting window has its alert;
* and what an operator reads says so: `make status` lists PostgreSQL and the scheduler's
  restart, the scheduler's log keeps what it wrote before the restart (appended, not replaced),
  no Airflow log server listens, and Airflow's fernet key is set.

Slow by nature (about seven minutes: two of them the outage): run by `make test` after the
other suites.
"""

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path

import psycopg2
import pytest

REPO = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 120
PORTS = ("PG", "SIM", "SMTP", "MAIL_WEB", "AIRFLOW", "DASHBOARD", "LIVE_METRICS", "SCHEDULER_HEALTH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The stack of a scratch root: its commands, database and mail."""

    def __init__(self, root: Path):
        self.root = root
        self.ports = {name: free_port() for name in PORTS}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDCTL_", "AIRFLOW"))}
        self.env.update({f"FRAUDCTL_{name}_PORT": str(port) for name, port in self.ports.items()})
        # A busier stream with more frauds than the default, so that a few minutes have some.
        self.env.update(FRAUDCTL_SIM_FRAUD_RATE="0.3", FRAUDCTL_SIM_CARDS="100000")

    def run(self, *cmd: str, timeout: float = 600) -> str:
        done = subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def supervisorctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(REPO / ".venv/bin/supervisorctl"), "-c", str(self.root / ".local/supervisord.conf"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.stdout

    def sql(self, database: str, query: str):
        url = f"postgresql://postgres@127.0.0.1:{self.ports['PG']}/{database}"
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall()
        conn.close()
        return rows

    def get(self, port: str, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[port]}{path}", timeout=5) as r:
            return r.read().decode()

    def mails(self):
        for path in sorted((self.root / ".local/mail").glob("*.eml")):
            yield path.name, message_from_bytes(path.read_bytes(), policy=policy.default)

    def logs(self) -> str:
        """The end of every process's log, for a failure's message."""
        out = []
        for log in sorted((self.root / ".local/logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)


def wait(what: str, stack: Stack, seconds: float, check) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, psycopg2.Error):
            pass
        time.sleep(5)
    pytest.fail(f"{what}: not within {seconds:.0f} s\n{stack.supervisorctl('status')}\n{stack.logs()}")


@pytest.fixture()
def stack():
    # Readable by the postgres user, which runs the cluster when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="fraudctl-stack-"))
    root.chmod(0o755)
    for entry in REPO.iterdir():
        if entry.name not in (".local", ".git"):
            (root / entry.name).symlink_to(entry)
    stack = Stack(root)
    try:
        stack.run("scripts/stack.sh", "up")
        yield stack
    finally:
        subprocess.run(
            ["scripts/stack.sh", "down"],
            cwd=root,
            env=stack.env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def dag_runs_succeeded_since(stack: Stack, since: str) -> int:
    return stack.sql(
        "airflow_db",
        "SELECT count(*) FROM dag_run WHERE dag_id = 'fraud_pipeline' "
        f"AND state = 'success' AND start_date > '{since}'",
    )[0][0]


def captured(root: Path) -> set[str]:
    """Every trans_num the live path or the DAG's extract wrote into a run directory."""
    found = set()
    for path in (root / ".local/runs").rglob("raw.*"):
        if path.name in ("raw.jsonl", "raw.journal"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if "trans_num" in record:
                    found.add(record["trans_num"])
    return found


def test_a_two_minute_database_outage_loses_nothing_and_the_scheduler_comes_back(stack):
    wait(
        "a first successful fraud_pipeline run",
        stack,
        300,
        lambda: dag_runs_succeeded_since(stack, "1970-01-01") > 0,
    )

    scheduler_log = stack.root / ".local/logs/airflow-scheduler.log"
    before = scheduler_log.read_bytes()
    stack.run("scripts/pg.sh", "stop", timeout=120)
    stopped = time.time()
    time.sleep(OUTAGE_SECONDS)
    stack.run("scripts/pg.sh", "start", timeout=120)
    restarted = stack.sql("postgres", "SELECT now()::text")[0][0]

    # The scheduler's own health check answers 200 only when it is healthy.
    wait(
        "the scheduler healthy again",
        stack,
        300,
        lambda: stack.get("SCHEDULER_HEALTH", "/health") is not None,
    )
    wait(
        "a fraud_pipeline run succeeded after the outage",
        stack,
        420,
        lambda: dag_runs_succeeded_since(stack, restarted) > 0,
    )
    wait(
        "operations told the scheduler is back",
        stack,
        180,
        lambda: any("scheduler is back" in str(m["Subject"]) for _, m in stack.mails()),
    )
    status = stack.supervisorctl("status")
    assert "airflow-scheduler" in status and all("RUNNING" in line for line in status.splitlines()), status
    operator_status = stack.run("scripts/stack.sh", "status")
    assert re.search(r"^postgresql +RUNNING", operator_status, re.M), operator_status
    assert re.search(r"^airflow-scheduler +RUNNING.*restarts: [1-9]", operator_status, re.M), operator_status
    after = scheduler_log.read_bytes()
    assert after.startswith(before) and after.count(b"Starting the scheduler") >= 2, "log replaced"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 8793)) != 0, "an Airflow log server listens on 8793"
    assert re.search(
        r"^AIRFLOW__CORE__FERNET_KEY=\S{40,}", (stack.root / ".local/stack.env").read_text(), re.M
    )

    # Nothing lost: the simulator stopped, the live path drains what it captured.
    served = json.loads(stack.get("SIM", "/stats"))["served"]
    stack.supervisorctl("stop", "simulator")
    wait(
        "the live path's backlog empty",
        stack,
        120,
        lambda: re.search(r"backlog_payments\S* 0\b", stack.get("LIVE_METRICS", "/metrics")),
    )
    seen = captured(stack.root)

    def loaded():
        return {row[0] for row in stack.sql("fraud_db", "SELECT trans_num FROM payments_scored")}

    wait("every captured payment loaded", stack, 180, lambda: seen <= loaded())
    # One response (at most 50 payments) may have been served between /stats and the stop.
    assert served <= len(seen) <= served + 50, (served, len(seen))

    # Nothing emailed twice: every recent predicted fraud alerted, each in one alert email.
    wait(
        "every recent predicted fraud alerted",
        stack,
        180,
        lambda: (
            stack.sql(
                "fraud_db",
                "SELECT count(*) FROM payments_scored p WHERE predicted_fraud "
                "AND trans_time > now() - interval '1 hour' AND NOT EXISTS "
                "(SELECT 1 FROM fraud_alerts a WHERE a.trans_num = p.trans_num)",
            )[0][0]
            == 0
        ),
    )
    in_emails = collections.Counter()
    subjects = []
    for _, msg in stack.mails():
        subjects.append(str(msg["Subject"]))
        if str(msg["Message-ID"]).startswith("<fraud-alert."):
            # The frauds it reports, each by its trans_num (the simulator's: 32 hex digits).
            body = msg.get_body(preferencelist=("plain",)).get_content()
            in_emails.update(set(re.findall(r"\b[0-9a-f]{32}\b", body)))
    assert [t for t, n in in_emails.items() if n > 1] == []
    sent = {
        row[0] for row in stack.sql("fraud_db", "SELECT trans_num FROM fraud_alerts WHERE status = 'sent'")
    }
    assert set(in_emails) == sent
    down = [s for s in subjects if "scheduler is down" in s]
    back = [s for s in subjects if "scheduler is back" in s]
    assert (len(down), len(back)) == (1, 1), subjects
    assert subjects.index(down[0]) < subjects.index(back[0]), subjects
    assert time.time() - stopped > OUTAGE_SECONDS
