#!/usr/bin/env python3
"""Tells operations when the Airflow scheduler is down, and when it is back.

The watchdog DAG and the failure emails run inside the scheduler: when the scheduler itself is
down (its database gone, a crash loop), they cannot say so. This process, one of the local
stack's under supervisord, asks the scheduler's health check every --every seconds (Airflow's
`[scheduler] enable_health_check`: 200 while the scheduler's heartbeat in its metadata database
is fresh, 503 or no answer otherwise). After --after-secs of failures in a row it emails --to
once ("down since" the last healthy answer), and once more at the first healthy answer after
that ("back", with how long it was down). The incident is kept in --state (JSON, written
atomically), so a restarted watcher neither repeats an email nor forgets an incident.

    python scripts/scheduler_watch.py --health-url http://127.0.0.1:8974/health \\
        --smtp 127.0.0.1:1025 --to ops@localhost --state .local/scheduler-watch.json

An email that cannot be sent (the SMTP server down too) is tried again at the next check.
"""

import argparse
import datetime as dt
import email.utils
import json
import os
import smtplib
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path


def healthy(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load(path: Path, now: float) -> dict:
    """The watcher's state: when the scheduler last answered healthy, since when it has not, and
    whether the "down" email went out."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"last_healthy": now, "failing_since": None, "down_sent": False}


def save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def send(args, subject: str, body: str) -> bool:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, args.sender, args.to
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain="fraudctl")
    message.set_content(body)
    host, _, port = args.smtp.rpartition(":")
    try:
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            smtp.send_message(message)
        return True
    except (OSError, smtplib.SMTPException) as e:
        print(
            f"scheduler_watch: could not email {args.to} through {args.smtp}: {e}",
            file=sys.stderr,
            flush=True,
        )
        return False


def check(args, state: dict, now: float) -> dict:
    """One check: the state after it, with the emails it called for sent."""
    if healthy(args.health_url, args.timeout):
        if state["down_sent"]:
            down = now - state["last_healthy"]
            if not send(
                args,
                "Airflow scheduler is back: alerts and the DAGs run again",
                f"The scheduler answers its health check again at {stamp(now)}.\n"
                f"It was last healthy at {stamp(state['last_healthy'])}: down for "
                f"{down / 60:.0f} min. The every-minute DAG catches up on its own; "
                "check `make status` and the scheduler's log (.local/logs/airflow-scheduler.log).",
            ):
                return state
        return {"last_healthy": now, "failing_since": None, "down_sent": False}
    state = {**state, "failing_since": state["failing_since"] or now}
    if not state["down_sent"] and now - state["failing_since"] >= args.after_secs:
        state["down_sent"] = send(
            args,
            "Airflow scheduler is down: the DAGs and their emails have stopped",
            f"The scheduler has not answered its health check ({args.health_url}) since "
            f"{stamp(state['failing_since'])}; it was last healthy at {stamp(state['last_healthy'])}.\n"
            "Until it is back, no DAG runs: no minute is captured by the DAG, no task-failure or "
            "watchdog email is sent (the live path, if it runs, still alerts).\n"
            "What to do: `make status` (supervisord restarts it; PostgreSQL, which holds Airflow's "
            "metadata, must be up), then the scheduler's log (.local/logs/airflow-scheduler.log). "
            "Another email follows when it is back.",
        )
    return state


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--health-url", required=True, help="the scheduler's health check URL")
    p.add_argument("--smtp", required=True, metavar="HOST:PORT", help="SMTP server, no TLS or login")
    p.add_argument("--to", required=True, help="operations' address")
    p.add_argument("--sender", default="fraudctl@localhost", help="From: address")
    p.add_argument("--state", required=True, type=Path, help="the watcher's state file (JSON)")
    p.add_argument("--every", type=float, default=15.0, help="seconds between checks (default 15)")
    p.add_argument(
        "--after-secs",
        type=float,
        default=60.0,
        help="seconds of failed checks in a row before the email (default 60: more than "
        "a restart of the scheduler takes)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a check may take (default 5)")
    args = p.parse_args()
    if args.every <= 0 or args.after_secs < 0 or args.timeout <= 0:
        p.error("--every and --timeout must be positive, --after-secs at least 0")
    state = load(args.state, time.time())
    print(
        f"scheduler_watch: checking {args.health_url} every {args.every:g} s; emails {args.to} "
        f"after {args.after_secs:g} s down",
        flush=True,
    )
    while True:
        new = check(args, state, time.time())
        if new != state:
            save(args.state, new)
            state = new
        time.sleep(args.every)


if __name__ == "__main__":
    main()
