"""scripts/scheduler_watch.py against a real HTTP health check and the real SMTP sink: one email
when the scheduler has been down long enough, one when it is back, none repeated by a restart."""

import email
import email.policy
import http.server
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

SCRIPTS = REPO / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Health:
    """A scheduler's health check whose answer the test sets (200 or 503)."""

    def __init__(self):
        health = self
        self.status = 200

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(health.status if self.path == "/health" else 404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"


@pytest.fixture
def sink(tmp_path):
    port, maildir = free_port(), tmp_path / "mail"
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPTS / "smtp_sink.py"),
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--maildir",
            str(maildir),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.time() < deadline, "the SMTP sink did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{port}", maildir
    process.terminate()
    process.wait()


def messages(maildir) -> list:
    paths = sorted(maildir.glob("*.eml")) if maildir.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]


def subjects(maildir) -> list[str]:
    return [m["Subject"] for m in messages(maildir)]


def wait_for(maildir, count: int, seconds: float = 20) -> list[str]:
    deadline = time.time() + seconds
    while len(found := subjects(maildir)) < count:
        assert time.time() < deadline, f"{count} emails expected, got {found}"
        time.sleep(0.05)
    return found


def watcher(health, smtp, state):
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPTS / "scheduler_watch.py"),
            "--health-url",
            health.url,
            "--smtp",
            smtp,
            "--to",
            "ops@localhost",
            "--state",
            str(state),
            "--every",
            "0.1",
            "--after-secs",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_down_then_back_is_one_email_each_and_a_restart_repeats_neither(tmp_path, sink):
    smtp, maildir = sink
    health, state = Health(), tmp_path / "watch.json"
    watch = watcher(health, smtp, state)
    try:
        time.sleep(0.5)
        health.status = 503
        time.sleep(0.5)
        assert subjects(maildir) == [], "not before --after-secs of failures"
        down = wait_for(maildir, 1)
        assert down[0].startswith("Airflow scheduler is down"), down
        watch.terminate()
        watch.wait()
        watch = watcher(health, smtp, state)  # restarted during the incident
        time.sleep(1.5)
        assert len(subjects(maildir)) == 1, "a restarted watcher does not email the incident again"
        health.status = 200
        back = wait_for(maildir, 2)
        assert back[1].startswith("Airflow scheduler is back"), back
        time.sleep(0.5)
        assert len(subjects(maildir)) == 2, "one email when back, not one a check"
    finally:
        watch.terminate()
        watch.wait()
    assert all(m["Date"] and m["Message-ID"] for m in messages(maildir)), "dated, identified"
    down_email, back_email = (m.get_content() for m in messages(maildir))
    assert "What to do: `make status`" in down_email, down_email
    assert "last healthy at" in back_email and "down for" in back_email, back_email


def test_a_short_failure_emails_nobody(tmp_path, sink):
    smtp, maildir = sink
    health = Health()
    watch = watcher(health, smtp, tmp_path / "watch.json")
    try:
        health.status = 503
        time.sleep(0.4)  # under --after-secs
        health.status = 200
        time.sleep(1.5)
    finally:
        watch.terminate()
        watch.wait()
    assert subjects(maildir) == []


def test_the_down_email_waits_for_the_smtp_server(tmp_path):
    port = free_port()
    smtp, maildir = f"127.0.0.1:{port}", tmp_path / "mail"
    health = Health()
    health.status = 503
    watch = watcher(health, smtp, tmp_path / "watch.json")
    try:
        time.sleep(1.5)  # past --after-secs, no SMTP server yet: nothing sent, retried
        process = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPTS / "smtp_sink.py"),
                "serve",
                "--listen",
                smtp,
                "--maildir",
                str(maildir),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            assert wait_for(maildir, 1)[0].startswith("Airflow scheduler is down")
        finally:
            process.terminate()
            process.wait()
    finally:
        watch.terminate()
        stderr = watch.communicate()[1]
    assert "could not email ops@localhost" in stderr, stderr
