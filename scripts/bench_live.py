#!/usr/bin/env python3
"""The live path's benchmark: how long from a payment served by the API to its alert accepted by
the SMTP server, for `fraudctl live` and, in the same run, for the every-minute DAG alone.

    make bench-live                                   # 10, 100, 1000 payments/s, 60 s each
    .venv/bin/python scripts/bench_live.py --rates 10 100 --seconds 30 --no-ceiling

For each rate, on a fresh database, with a fresh SMTP sink (scripts/smtp_sink.py) and the payments
simulator replaying the real sample (`serve-payments --csv … --time-mode now`: each payment
stamped with the time it is served; later loops of the file get trans_nums of their own; the
sample's rows reordered so that its 870 frauds are spread evenly, one every seven payments, so
that every rate meets frauds from its first seconds), polled every 100 ms, --rows-per-response
making the rate:
  - the live path: `fraudctl live` for --seconds (60), then stopped (SIGTERM);
  - the DAG alone: its stages as each minute's run runs them (extract polling 45 s, then
    transform, score, load, alert), two minutes in a row, started on the minute: without
    Airflow's own task starts (1 to 2 s each), so a floor of what the DAG gives;
and after the live path, the DAG's run of each whole minute it captured (its five stages, as a
scheduled run runs them on the live path's file: their own time, Airflow's task starts aside, and
the rows and emails it changed: none, if the live path's work stands);
then, from the database, each alert's latency (`fraud_alerts.accepted_at` − the payment's time)
and its p50, p95, p99, and the CPU time (user + system) fraudctl's processes spent a payment
(PostgreSQL's and the sink's aside), and what a micro-batch's time went to. Then, unless
--no-ceiling, while the live path sustains the highest rate measured (p95 within 5 s, the API's
payments taken), that rate is doubled, then the gap to the first rate it does not sustain is
halved until within a quarter, 60 s at each: the highest rate it sustains is reported. Prints a Markdown table (BENCHMARKS.md, "The live path");
--json keeps every figure.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LIVE = "live"  # the live path's figures, beside the DAG alone's
# The steps of a micro-batch, as `fraudctl live` times them.
STEPS = ("write", "transform", "score", "load", "alert", "total")

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "fraudctl"
PYTHON = ROOT / ".venv" / "bin" / "python"
SAMPLE = ROOT.parent / "shared" / "data" / "fraud_sample.csv"  # the README's ../shared
POLL_MS = 100
# A request's own time on top of the poll interval (measured here: the served rate is reported).
REQUEST_MS = 10
# The stack's settings: a verdict key, so that each alert carries its signed links, as it does there.
ENV = {
    **os.environ,
    "FRAUDCTL_PAN_HASH_KEY": "benchmark-only-key-0123456789abcdef",
    "FRAUDCTL_VERDICT_KEY": "benchmark-only-verdict-key-fedcba9876543210",
    "FRAUDCTL_LOG": "warn",
}
ENV.pop("FRAUDCTL_DATABASE_URL", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"bench_live: nothing listens on {port}")


def psql(url: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-qAtX", url, "-c", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


class Services:
    """A fresh database, SMTP sink and simulator at `rows` payments a response."""

    def __init__(self, admin: str, rows: int, work: Path, csv: Path):
        self.url = admin.rsplit("/", 1)[0] + "/fraudctl_bench_live"
        psql(admin, "DROP DATABASE IF EXISTS fraudctl_bench_live")
        subprocess.run(
            [BIN, "migrate", "--create-database"],
            env={**ENV, "FRAUDCTL_DATABASE_URL": self.url},
            check=True,
            capture_output=True,
        )
        self.smtp_port, self.api_port = free_port(), free_port()
        mail = work / "mail"
        shutil.rmtree(mail, ignore_errors=True)
        self.processes = [
            subprocess.Popen(
                [
                    PYTHON,
                    ROOT / "scripts/smtp_sink.py",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.smtp_port}",
                    "--maildir",
                    mail,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    BIN,
                    "serve-payments",
                    "--listen",
                    f"127.0.0.1:{self.api_port}",
                    "--csv",
                    csv,
                    "--time-mode",
                    "now",
                    "--rows-per-response",
                    str(rows),
                ],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        wait_port(self.smtp_port)
        wait_port(self.api_port)
        self.env = {
            **ENV,
            "FRAUDCTL_DATABASE_URL": self.url,
            "FRAUDCTL_API_URL": f"http://127.0.0.1:{self.api_port}/current-transactions",
            "FRAUDCTL_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "FRAUDCTL_POLL_INTERVAL_MS": str(POLL_MS),
        }

    def served(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/stats") as r:
            return json.load(r)["served"]

    def latencies(self) -> dict:
        """p50, p95, p99 and the number of the alerts' latencies (s), served to accepted."""
        row = psql(
            self.url,
            """
            SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY s)
            FROM (SELECT extract(epoch FROM a.accepted_at - p.trans_time) AS s
                  FROM fraud_alerts a JOIN payments_scored p USING (trans_num)
                  WHERE a.status = 'sent') l""",
        )
        count, quantiles = row.split("|", 1)
        values = quantiles.strip("{}").split(",") if quantiles else ["", "", ""]
        p50, p95, p99 = (float(q) if q else None for q in values)
        return {"alerts": int(count), "p50": p50, "p95": p95, "p99": p99}

    def rows(self) -> int:
        return int(psql(self.url, "SELECT count(*) FROM payments_scored"))

    def close(self) -> None:
        for p in self.processes:
            p.terminate()
            p.wait()


def cpu_of(pid: int) -> float:
    """Waits for a child; its user + system CPU seconds."""
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_utime + usage.ru_stime


def live(services: Services, seconds: float, work: Path) -> dict:
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    started = time.monotonic()
    with open(work / "live.jsonl", "w+") as out:
        process = subprocess.Popen(
            [BIN, "live", "--runs-root", runs, "--metrics-listen", "off"], env=services.env, stdout=out
        )
        time.sleep(seconds)
        served = services.served()
        process.send_signal(signal.SIGTERM)
        cpu = cpu_of(process.pid)
        out.seek(0)
        batches = [b for b in map(json.loads, out) if b.get("event") == "micro_batch"]
    elapsed = time.monotonic() - started
    figures = {
        "path": LIVE,
        "seconds": round(elapsed, 1),
        "served": served,
        "rate": round(served / seconds, 1),
        "loaded": services.rows(),
        "cpu_s": round(cpu, 2),
        **services.latencies(),
        **micro_batches(batches),
    }
    return {**figures, **reconciliation(services, runs)}


def micro_batches(batches: list) -> dict:
    """How many micro-batches, their mean payments and emails, and each step's mean milliseconds."""
    n = max(1, len(batches))

    def mean(values):
        return round(sum(values) / n, 1)

    return {
        "batches": len(batches),
        "batch_records": mean(b["records"] for b in batches),
        "batch_emails": mean(b["emails"] for b in batches),
        "batch_ms": {step: mean(b["ms"][step] for b in batches) for step in STEPS},
    }


def reconciliation(services: Services, runs: Path) -> dict:
    """The DAG's run of each minute the live path closed, on its file: the five stages' time (the
    slowest minute's), and the rows they inserted or updated and the frauds they emailed."""
    slowest, changed, emailed, minutes = 0.0, 0, 0, 0
    for minute in sorted(p for p in (runs / "fraud_pipeline").iterdir() if (p / "raw.jsonl").exists()):
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(minute.name, "%Y%m%dT%H%M%S"))
        started = time.monotonic()
        for stage in ("extract", "transform", "score", "load", "alert"):
            extra = ["--interval-end", end, "--live-wait-secs", "5"] if stage == "extract" else []
            done = subprocess.run(
                [BIN, stage, "--run-dir", minute, "--run-id", "scheduled__bench", *extra],
                env=services.env,
                check=True,
                capture_output=True,
                text=True,
            )
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            changed += summary.get("inserted", 0) + summary.get("updated", 0)
            emailed += summary.get("sent", 0)
        slowest = max(slowest, time.monotonic() - started)
        minutes += 1
    return {
        "dag_minutes": minutes,
        "dag_minute_s": round(slowest, 2),
        "dag_changed_rows": changed,
        "dag_emailed": emailed,
    }


def dag_alone(services: Services, minutes: int, work: Path) -> dict:
    """Each minute's run as the DAG runs its stages (its run directory keyed by the minute)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(60 - time.time() % 60)  # on the minute, as the scheduler starts a run
    started = time.monotonic()
    for _ in range(minutes):
        run_dir = work / "dag" / time.strftime("%Y%m%dT%H%M%S")
        env = {**services.env, "FRAUDCTL_MAX_RECORDS": "100000000"}  # all it can take in 45 s
        for stage in ("extract", "transform", "score", "load", "alert"):
            subprocess.run([BIN, stage, "--run-dir", run_dir], env=env, check=True, stdout=subprocess.DEVNULL)
        time.sleep(max(0.0, 60 - time.time() % 60))
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    served = services.served()
    return {
        "path": "DAG alone",
        "seconds": round(elapsed, 1),
        "served": served,
        "rate": round(served / elapsed, 1),
        "loaded": services.rows(),
        "cpu_s": round(cpu, 2),
        **services.latencies(),
    }


def spread_frauds(work: Path) -> Path:
    """The sample with its frauds spread evenly among its other payments (header kept)."""
    lines = SAMPLE.read_text().splitlines()
    frauds = [row for row in lines[1:] if row.endswith(",1")]
    others = [row for row in lines[1:] if not row.endswith(",1")]
    every = len(others) // len(frauds)
    rows = []
    for i, fraud in enumerate(frauds):
        rows += [fraud, *others[i * every : (i + 1) * every]]
    rows += others[len(frauds) * every :]
    path = work / "spread.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path


def measure(admin: str, rate: int, seconds: float, work: Path, with_dag: bool) -> list:
    rows = max(1, round(rate * (POLL_MS + REQUEST_MS) / 1000))
    csv = spread_frauds(work)
    figures = []
    for path in ("live", "DAG alone") if with_dag else ("live",):
        services = Services(admin, rows, work, csv)
        try:
            f = live(services, seconds, work) if path == "live" else dag_alone(services, 2, work)
        finally:
            services.close()
        f["target_rate"] = rate
        f["cpu_ms_a_payment"] = round(1000 * f["cpu_s"] / max(1, f["loaded"]), 3)
        print(f"bench_live: {json.dumps(f)}", file=sys.stderr, flush=True)
        figures.append(f)
    return figures


def table(figures: list) -> str:
    def s(v):
        return "–" if v is None else f"{v:.2f}"

    lines = [
        "| path | target payments/s | served payments/s | alerts | p50 s | p95 s | p99 s | CPU ms a payment "
        "| the DAG's run of a live minute: slowest s, rows changed, emails |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        dag = (
            f"{f['dag_minute_s']:.2f} s ({f['dag_minutes']} minutes), {f['dag_changed_rows']}, {f['dag_emailed']}"
            if "dag_minutes" in f
            else ""
        )
        lines.append(
            f"| {f['path']} | {f['target_rate']:,} | {f['rate']:,} | {f['alerts']} | {s(f['p50'])} "
            f"| {s(f['p95'])} | {s(f['p99'])} | {f['cpu_ms_a_payment']} | {dag} |"
        )
    lines += [
        "",
        "What a micro-batch of the live path took, on average (milliseconds; `fraudctl live`'s JSON lines):",
        "",
        "| target payments/s | micro-batches | payments a batch | emails a batch | "
        + " | ".join(STEPS)
        + " |",
        "| --- " * (4 + len(STEPS)) + "|",
    ]
    for f in figures:
        if "batches" in f:
            lines.append(
                f"| {f['target_rate']:,} | {f['batches']:,} | {f['batch_records']} | {f['batch_emails']} | "
                + " | ".join(str(f["batch_ms"][step]) for step in STEPS)
                + " |"
            )
    return "\n".join(lines)


def sustained(f: dict) -> bool:
    """Whether the live path kept up with a rate: p95 within 5 s, and the API's payments taken."""
    return f["p95"] is not None and f["p95"] <= 5 and f["rate"] >= 0.9 * f["target_rate"]


def ceiling_search(admin: str, figures: list, work: Path) -> list:
    """While the live path sustains the highest rate measured, that rate doubled; then, between
    the highest sustained and the lowest not, the midpoint, until they are within a quarter of
    each other (60 s at each)."""
    searched = []
    passed = {f["target_rate"]: sustained(f) for f in figures if f["path"] == LIVE}
    while True:
        good = max((r for r, ok in passed.items() if ok), default=None)
        bad = min((r for r, ok in passed.items() if not ok and (good is None or r > good)), default=None)
        if good is None or (bad is not None and bad - good <= good / 4):
            return searched
        rate = 2 * good if bad is None else (good + bad) // 2
        (f,) = measure(admin, rate, 60, work, False)
        searched.append(f)
        passed[rate] = sustained(f)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[10, 100, 1000], help="payments/s (default 10 100 1000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=60, help="how long the live path runs at each rate (default 60)"
    )
    parser.add_argument("--no-dag", action="store_true", help="skip the DAG alone")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the search for the highest rate")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args()
    admin = subprocess.run(
        [ROOT / "scripts" / "pg.sh", "start"], check=True, capture_output=True, text=True
    ).stdout.strip()
    figures = []
    with tempfile.TemporaryDirectory(prefix="fraudctl-bench-live-") as work:
        for rate in args.rates:
            figures += measure(admin, rate, args.seconds, Path(work), not args.no_dag)
        if not args.no_ceiling:
            figures += ceiling_search(admin, figures, Path(work))
    ceiling = max(
        (f for f in figures if f["path"] == LIVE and sustained(f)), key=lambda f: f["rate"], default=None
    )
    print(
        f"## The live path ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores)\n"
    )
    print(table(figures))
    if ceiling:
        print(
            f"\nHighest rate sustained with p95 ≤ 5 s: {ceiling['rate']:,} payments/s "
            f"(p95 {ceiling['p95']:.2f} s)."
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
