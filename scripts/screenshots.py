#!/usr/bin/env python3
"""The docs' screenshots of the running local stack (`make up`), from a real headless browser:
the Airflow grid with a task's log, the web inbox, and a fraud alert in it.

    apt-get install chromium                       # Debian's, /usr/bin/chromium
    python3 -m venv /tmp/shots && /tmp/shots/bin/pip install -r scripts/screenshots-requirements.txt
    /tmp/shots/bin/python scripts/screenshots.py   # writes docs/airflow-task-log.png, docs/web-inbox*.png

Playwright drives Debian's Chromium (it does not download a browser of its own). The Airflow
password is read from .local/stack.env, the ports from the same variables as `make up`'s.
"""

import base64
import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
AIRFLOW = f"http://127.0.0.1:{os.environ.get('FRAUDCTL_AIRFLOW_PORT', '8080')}"
INBOX = f"http://127.0.0.1:{os.environ.get('FRAUDCTL_MAIL_WEB_PORT', '8025')}"
# What this machine's closed network needs (no background connections, no sandbox as root).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def admin_password() -> str:
    for line in (ROOT / ".local/stack.env").read_text().splitlines():
        if line.startswith("AIRFLOW_ADMIN_PASSWORD="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise SystemExit("no AIRFLOW_ADMIN_PASSWORD in .local/stack.env: is the stack up (make up)?")


def latest_successful_run(password: str) -> str:
    """The dag_run_id of fraud_pipeline's latest successful run (REST API, basic auth)."""
    request = urllib.request.Request(
        f"{AIRFLOW}/api/v1/dags/fraud_pipeline/dagRuns?state=success&order_by=-execution_date&limit=1",
        headers={"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        runs = json.load(r)["dag_runs"]
    if not runs:
        raise SystemExit("fraud_pipeline has no successful run yet: wait a minute")
    return runs[0]["dag_run_id"]


def main() -> None:
    password = admin_password()
    run_id = latest_successful_run(password)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{AIRFLOW}/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{AIRFLOW}/home*")
        query = urllib.parse.urlencode({"dag_run_id": run_id, "task_id": "extract", "tab": "logs"})
        page.goto(f"{AIRFLOW}/dags/fraud_pipeline/grid?{query}")
        page.get_by_text("INFO").first.wait_for(timeout=30_000)
        page.screenshot(path=DOCS / "airflow-task-log.png")

        page.goto(f"{INBOX}/")
        page.screenshot(path=DOCS / "web-inbox.png")
        alert = page.locator("a", has_text="Fraud alert").first
        alert.click()
        page.wait_for_load_state()
        page.screenshot(path=DOCS / "web-inbox-alert.png", full_page=True)
        browser.close()
    print(f"wrote {', '.join(str(f.relative_to(ROOT)) for f in sorted(DOCS.glob('*.png')))}")


if __name__ == "__main__":
    main()
