"""Shared fixtures: a fresh fraud_db per test, migrated by `fraudctl migrate`, filled with known
rows as the superuser, a login role that is a member of fraud_report_reader, and the dashboard run
against it by Streamlit's AppTest.

Environment: FRAUDCTL_TEST_ADMIN_URL (a superuser URL of the PostgreSQL cluster, default the one of
scripts/pg.sh) and FRAUDCTL_BIN (the fraudctl binary, default target/release/fraudctl).
"""

import contextlib
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboard"
APP = DASHBOARD / "app.py"
STREAMLIT = Path(sys.executable).parent / "streamlit"
ADMIN_URL = os.environ.get("FRAUDCTL_TEST_ADMIN_URL", "postgres://postgres@127.0.0.1:55432/postgres")
FRAUDCTL_BIN = os.environ.get("FRAUDCTL_BIN", str(ROOT / "target" / "release" / "fraudctl"))


def with_url(url: str, *, database: str | None = None, user: str | None = None) -> str:
    """The URL with another database and/or user (and then no password)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_process(command: list, cwd: Path, **settings: str):
    """A real dashboard process started with this command (no STREAMLIT_* from the test's
    environment, a free port, then these variables), yielded with its port; its output is printed
    when it stops (pytest shows it when the test fails)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(STREAMLIT_SERVER_PORT=str(port), PATH=f"{STREAMLIT.parent}:{env['PATH']}", **settings)
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield proc, port
    finally:
        proc.terminate()
        print(proc.communicate(timeout=20)[0].decode(errors="replace"))


def newest_migration() -> int:
    return max(int(re.match(r"V(\d+)__", p.name)[1]) for p in (ROOT / "migrations").glob("V*__*.sql"))


class FraudDb:
    """A migrated fraud_db, written to as the superuser."""

    def __init__(self, url: str):
        self.url = url

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def set_time_zone(self, zone: str) -> None:
        self.execute("UPDATE fraudctl_settings SET value = %s WHERE key = 'business_time_zone'", (zone,))

    def yesterday(self) -> dt.date:
        return self.execute("SELECT business_yesterday()")[0][0]

    def payment(
        self,
        trans_num: str,
        trans_time: dt.datetime,
        *,
        amt: float = 25.0,
        category: str = "grocery_pos",
        probability: float = 0.02,
        label: bool | None = None,
        last4: str = "4242",
        merch_lat: float = 40.71,
        merch_long: float = -74.01,
    ) -> None:
        """One scored payment; predicted fraud when the probability reaches the 0.5 threshold."""
        self.execute(
            """INSERT INTO payments_scored (trans_num, trans_time, cc_last4, cc_hash, merchant, category,
                   amt, gender, city, state, city_pop, merch_lat, merch_long, is_fraud_label,
                   fraud_probability, predicted_fraud, threshold, model_version, scorer, run_id)
               VALUES (%s, %s, %s, md5(%s), 'fraud_Test Merchant', %s, %s, 'F', 'New York', 'NY',
                       8000000, %s, %s, %s, %s, %s, 0.5, 'test-model', 'local', 'test-run')""",
            (
                trans_num,
                trans_time,
                last4,
                trans_num,
                category,
                amt,
                merch_lat,
                merch_long,
                label,
                probability,
                probability >= 0.5,
            ),
        )

    def alert(self, trans_num: str, status: str = "sent", accepted_after: float | None = None) -> None:
        """An alert; `accepted_after`: the SMTP server accepted it that many seconds after the payment."""
        self.execute(
            """INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, accepted_at)
               SELECT %s, %s, %s, 'fraud-team@example.com', 'test-run',
                      trans_time + make_interval(secs => %s)
               FROM payments_scored WHERE trans_num = %s""",
            (trans_num, status, f"<{trans_num}@fraudctl.test>", accepted_after, trans_num),
        )

    def pipeline_run(self, run_id: str, minutes_ago: float) -> None:
        """A run whose load stage was recorded that many minutes ago."""
        self.execute(
            """INSERT INTO pipeline_runs (run_id, stage, records, recorded_at)
               VALUES (%s, 'load', 1, now() - make_interval(secs => %s))""",
            (run_id, minutes_ago * 60),
        )


# A login configured (OpenID Connect; Streamlit's [auth] secrets) and the user it logs in.
AUTH = {
    "auth": {
        "redirect_uri": "https://fraud.example.com/oauth2callback",
        "cookie_secret": "test-cookie-secret-0123456789abcdef",
        "client_id": "fraudctl-dashboard",
        "client_secret": "test-client-secret",
        "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
    }
}
ANALYST = {"is_logged_in": True, "email": "analyst@example.com", "name": "An Analyst"}


@pytest.fixture(autouse=True)
def listening_address():
    """AppTest reads no config.toml: the app runs as the local stack's (dashboard/.streamlit/
    config.toml, 127.0.0.1), where it needs no login, unless a test calls listening_address(...)."""
    before = config.get_option("server.address")

    def listen_on(address: str | None) -> None:
        config.set_option("server.address", address)

    listen_on("127.0.0.1")
    yield listen_on
    listen_on(before)


@pytest.fixture
def fraud_db():
    """A new database, migrated by `fraudctl migrate`, dropped after the test."""
    if not os.access(FRAUDCTL_BIN, os.X_OK):
        pytest.fail(
            f"FRAUDCTL_BIN {FRAUDCTL_BIN} is not an executable: build it with "
            "`cargo build --release` or point FRAUDCTL_BIN at one."
        )
    name = f"fraud_dashboard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_url(ADMIN_URL, database=name)
    try:
        migrate = subprocess.run(
            [FRAUDCTL_BIN, "migrate", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrate.returncode != 0:
            pytest.fail(f"`{FRAUDCTL_BIN} migrate` failed (exit {migrate.returncode}):\n{migrate.stderr}")
        db = FraudDb(url)
        applied = db.execute("SELECT max(version) FROM refinery_schema_history")[0][0]
        if applied != newest_migration():
            pytest.fail(
                f"`{FRAUDCTL_BIN} migrate` applied migrations up to V{applied} but migrations/ "
                f"goes up to V{newest_migration()}: the binary predates them (they are "
                "embedded at build time); rebuild it with `cargo build --release`."
            )
        yield db
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def login_role(fraud_db, *member_of: str):
    """URL of a new login role, a member of the roles named, dropped afterwards."""
    role = f"fraud_dashboard_test_{uuid.uuid4().hex[:12]}"
    fraud_db.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {", ".join(member_of)}')
    try:
        yield with_url(fraud_db.url, user=role)
    finally:
        fraud_db.execute(f'DROP ROLE "{role}"')


@pytest.fixture
def reader_url(fraud_db):
    """URL of a new login role that is a member of fraud_report_reader (what deployers create)."""
    with login_role(fraud_db, "fraud_report_reader") as url:
        yield url


@pytest.fixture
def run_dashboard(monkeypatch):
    """Runs the app as Streamlit would: run(database_url, day=None, stale_minutes=None) -> AppTest.

    database_url None leaves FRAUDCTL_DASHBOARD_DATABASE_URL unset; day picks a business day in the
    date picker after the first run (which shows the default day).
    """

    def run(
        database_url: str | None, day: dt.date | None = None, stale_minutes: int | None = None
    ) -> AppTest:
        for var, value in [
            ("FRAUDCTL_DASHBOARD_DATABASE_URL", database_url),
            ("FRAUDCTL_DASHBOARD_STALE_MINUTES", stale_minutes),
        ]:
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, str(value))
        at = AppTest.from_file(str(APP), default_timeout=60).run()
        if day is not None:
            at.date_input(key="day").set_value(day).run()
        assert not at.exception, at.exception
        return at

    return run


@pytest.fixture
def dashboard(run_dashboard, reader_url):
    """Runs the app against the test's fraud_db as the reader: dashboard(day=None, stale_minutes=None)."""

    def run(day: dt.date | None = None, stale_minutes: int | None = None) -> AppTest:
        return run_dashboard(reader_url, day=day, stale_minutes=stale_minutes)

    return run
