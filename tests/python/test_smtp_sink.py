"""scripts/smtp_sink.py show: what an operator reads of a message the local stack's sink kept."""

import json
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

from conftest import REPO


def show(maildir, message: EmailMessage) -> str:
    (maildir / "1.eml").write_bytes(bytes(message))
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "smtp_sink.py"), "show", "--maildir", str(maildir), "1.eml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def message(subject: str) -> EmailMessage:
    m = EmailMessage()
    m["Subject"], m["From"], m["To"] = subject, "fraudctl@localhost", "ops@localhost"
    return m


def test_an_html_only_message_is_shown_as_its_text_with_its_links(tmp_path):
    m = message("Fraud report for 2026-12-05")
    m.set_content(
        "<html><head><style>td {color: red}</style></head><body><h1>Fraud report</h1>"
        "<p>12 payments, <b>2</b> frauds.</p><table><tr><td>Card</td><td>Amount</td></tr>"
        "<tr><td>****1234</td><td>$5.00</td></tr></table>"
        '<p><a href="http://127.0.0.1:8501/?day=2026-12-05">Open the dashboard</a></p>'
        "</body></html>",
        subtype="html",
    )
    shown = show(tmp_path, m)
    assert "Subject: Fraud report for 2026-12-05" in shown
    assert "EmailMessage object" not in shown and "<td>" not in shown and "color: red" not in shown
    assert "12 payments, 2 frauds." in shown
    assert "****1234  $5.00" in shown
    assert "Open the dashboard <http://127.0.0.1:8501/?day=2026-12-05>" in shown


def test_a_message_with_a_text_part_is_shown_as_that_text(tmp_path):
    m = message("Fraud alert")
    m.set_content("A payment looks fraudulent.\n")
    m.add_alternative("<p>An <i>HTML</i> version</p>", subtype="html")
    shown = show(tmp_path, m)
    assert "A payment looks fraudulent." in shown and "HTML" not in shown.split("\n\n", 1)[1]


def test_the_web_inbox_lists_and_shows_what_the_sink_accepted_escaped(tmp_path):
    """A real sink with its web inbox: a message sent over SMTP is listed and shown; a subject
    with markup is text, and the email's HTML runs in a sandbox."""

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    smtp, web = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "smtp_sink.py"),
            "serve",
            "--listen",
            f"127.0.0.1:{smtp}",
            "--web-listen",
            f"127.0.0.1:{web}",
            "--maildir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def get(path):
        return urllib.request.urlopen(f"http://127.0.0.1:{web}{path}", timeout=5).read().decode()

    try:
        for _ in range(100):
            try:
                assert "No message yet." in get("/")
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        m = message("Fraud alert <script>alert(1)</script>")
        m.set_content("<p>Block card ****1234 &amp; call the customer</p>", subtype="html")
        with smtplib.SMTP("127.0.0.1", smtp, timeout=5) as client:
            client.send_message(m)
        listed = json.loads(get("/api/messages"))
        assert [x["subject"] for x in listed] == ["Fraud alert <script>alert(1)</script>"]
        index = get("/")
        assert "<script>" not in index and "Fraud alert &lt;script&gt;" in index
        shown = get(f"/message/{listed[0]['name']}")
        assert "<iframe sandbox srcdoc=" in shown and "Block card ****1234" in shown
        for bad in ("/message/../secret.eml", "/message/nothing.eml", "/elsewhere"):
            try:
                get(bad)
                raise AssertionError(f"{bad} answered")
            except urllib.error.HTTPError as e:
                assert e.code == 404, bad
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "web inbox on" in output, output
