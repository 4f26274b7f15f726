#!/usr/bin/env python3
"""The fraudctl benchmark: times each stage on N generated transactions and prints a Markdown
report (BENCHMARKS.md is its output, with notes).

    make bench                       # 1,000,000 transactions, median of 3 runs
    make bench N=100000 RUNS=1       # a quick run
    python3 scripts/bench.py --runs 1 --end-to-end-only   # fraudctl against the peer alone

What it measures, each run on a fresh database:
  - extract from CSV (once: the API is not what is measured), transform, score (local model);
  - transform's card history: the default spec reads it from the batch and the database. Timed
    with an empty database (the batch alone: the plain `transform` figure), with a full one (a
    second batch of the same cards a day later, once the first is loaded: every payment has
    history in the database), and without the history block (the per-payment features alone);
  - load as inserts into an empty payments_scored, then as updates (scores re-made with
    another threshold, so every row changes), in one transaction (the default); the updates
    three times a run, in turn with the floor's (below), on the vacuumed table;
  - load as inserts again with one session a core (`--connections`, rows split by trans_num);
  - the whole reprocess: transform → score → load (inserts), back to back, both ways;
  - the database's floor for the load: the same rows COPY'd from a binary file into the same
    staging table and put through the same upsert (src/load/sql/*.sql), by psql directly; and,
    for new payments (which fraudctl COPYs straight into payments_scored), the same rows COPY'd
    from a binary file straight into the empty table;
  - one invocation of each stage on a one-record batch (what every Airflow task pays), 21 times
    a run, the median over every run's; load twice: a new payment (the every-minute case), and
    the same payment again (an upsert that changes nothing);
  - the Python peer (scripts/python_peer.py, skipped with --no-peer): the stack fraudctl
    replaces (pandas, the features over whole columns, xgboost, psycopg2's execute_values upsert)
    on the same CSV into a fresh database, against fraudctl's extract → transform → score → load
    (inserts), stage by stage and end to end. --end-to-end-only measures that alone: no second
    batch, sessions, floor, updates or one-record batches (a few minutes a run, not 17).
Peak memory is each process's maximum resident set size. Needs the release build (or
FRAUDCTL_BIN: a copy of it, which a rebuild during the benchmark leaves alone), the
private PostgreSQL cluster (scripts/pg.sh) and, for the peer, .venv (`make venv`), all of
which `make bench` provides.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("FRAUDCTL_BIN", ROOT / "target" / "release" / "fraudctl"))  # or a copy of it
PEER = "scripts.python_peer"  # run as a module from the repository's root (it imports `model`)
PEER_PYTHON = ROOT / ".venv" / "bin" / "python"
# fraudctl's stages and the peer's that do the same work, in pipeline order.
PEER_STAGES = (
    ("extract", "read"),
    ("transform", "features"),
    ("score", "predict"),
    ("load_insert", "upsert"),
)
DB = "fraudctl_bench"
SESSIONS = os.cpu_count() or 1
UPDATE_ROUNDS = 3  # updates timed in a run, each beside one of the floor's
ONE_RECORD_SAMPLES = 21  # invocations of each stage on a one-record batch, a run
# A bench-only key: the generated card numbers are not real, the hashes are thrown away.
ENV = {**os.environ, "FRAUDCTL_PAN_HASH_KEY": "benchmark-only-key-0123456789abcdef", "FRAUDCTL_LOG": "warn"}


def measured(cmd, env=None):
    """Runs a command; returns (wall seconds, peak RSS MB, stdout) using wait4's rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV, cwd=ROOT)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def psql(url, sql):
    wall, _, out = measured(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
    return wall, out


def stage(name, run_dir, *extra):
    return measured([str(BIN), name, "--run-dir", str(run_dir), *extra])


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="transactions (default 1000000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--work", type=Path, default=ROOT / ".local" / "bench", help="work directory")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-peer", action="store_true", help="skip the Python peer")
    parser.add_argument(
        "--end-to-end-only",
        action="store_true",
        help="only fraudctl's extract → transform → score → load (inserts) against the peer",
    )
    args = parser.parse_args()
    if not args.no_peer and not PEER_PYTHON.is_file():
        sys.exit(f"bench: the Python peer needs {PEER_PYTHON}: run `make venv` (or pass --no-peer)")
    if args.end_to_end_only and args.no_peer:
        sys.exit("bench: --end-to-end-only compares fraudctl with the peer: drop --no-peer")
    return args


def transactions(args):
    """The generated CSVs (made once in --work): N transactions, and the same cards a day later
    (not needed by --end-to-end-only)."""
    args.work.mkdir(parents=True, exist_ok=True)
    csv, later = args.work / f"tx-{args.n}.csv", args.work / f"tx-{args.n}-later.csv"
    for path, extra, needed in ((csv, [], True), (later, ["--later-days", "1"], not args.end_to_end_only)):
        if needed and not path.exists():
            print(f"bench: generating {args.n} transactions into {path}", file=sys.stderr)
            generate = [sys.executable, str(ROOT / "scripts/gen_transactions.py"), str(args.n), str(path)]
            subprocess.run([*generate, *extra], check=True)
    return csv, later


def main():
    args = parse_args()
    admin = subprocess.run(
        [str(ROOT / "scripts/pg.sh"), "start"], check=True, capture_output=True, text=True
    ).stdout.strip()
    url = admin.rsplit("/", 1)[0] + "/" + DB
    csv, later = transactions(args)
    timed_stages = (
        "extract",
        "transform",
        "transform_history",
        "transform_no_history",
        "score",
        "load_insert",
        "load_update",
        "load_sessions",
    )
    peer_keys = () if args.no_peer else (*(f"peer_{s}" for _, s in PEER_STAGES), "peer_end_to_end")
    figures = {
        name: []
        for name in (
            *timed_stages,
            "floor_insert",
            "floor_update",
            "floor_copy",
            "reprocess",
            "reprocess_sessions",
            "end_to_end",
            *peer_keys,
        )
    }
    peaks = dict.fromkeys((*timed_stages, *peer_keys), 0.0)
    # The server reads and writes the floor's COPY file itself: a directory it can use.
    shared = Path(tempfile.mkdtemp(prefix="fraudctl-bench-"))
    shared.chmod(0o777)
    single = {}
    try:
        for i in range(args.runs):
            print(f"bench: run {i + 1} of {args.runs}", file=sys.stderr)
            one_run(args, (csv, later), admin, url, shared, figures, peaks)
            if not args.no_peer:
                peer_run(csv, admin, url, figures, peaks)
            if args.end_to_end_only:
                continue
            for name, samples in one_record(args, admin, url).items():
                single.setdefault(name, []).extend(samples)
    finally:
        shutil.rmtree(shared, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items() if v}
    single_med = {k: statistics.median(v) for k, v in single.items()}
    report(args, med, peaks, single_med)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "runs": args.runs,
                    "median_seconds": med,
                    "seconds": figures,
                    "peak_mb": peaks,
                    "one_record_median_ms": single_med,
                    "one_record_ms": single,
                },
                indent=2,
            )
        )


def fresh_db(admin, url):
    psql(admin, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(admin, f"CREATE DATABASE {DB}")
    measured([str(BIN), "migrate", "--database-url", url])


def spec_without_history(work):
    """The default spec without its card_history block: the per-payment features alone."""
    spec = json.loads((ROOT / "model/default/feature_spec.json").read_text())
    spec["blocks"] = [b for b in spec["blocks"] if b["type"] != "card_history"]
    path = work / "spec-without-history.json"
    path.write_text(json.dumps(spec))
    return path


def one_run(args, csvs, admin, url, shared, figures, peaks):
    csv, later = csvs
    run_dir, later_dir = args.work / "run", args.work / "run-later"
    for d in (run_dir, later_dir):
        shutil.rmtree(d, ignore_errors=True)
    fresh_db(admin, url)
    db = ["--database-url", url]

    def timed(name, *cmd_args, key=None, directory=run_dir):
        wall, rss, _ = stage(name, directory, *cmd_args)
        key = key or name
        figures[key].append(wall)
        peaks[key] = max(peaks[key], rss)
        return wall

    extracted = timed("extract", "--from-csv", str(csv))
    scored = timed("transform", *db) + timed("score")
    figures["reprocess"].append(scored + timed("load", *db, key="load_insert"))
    figures["end_to_end"].append(extracted + figures["reprocess"][-1])
    if args.end_to_end_only:
        return
    # The same cards a day later, their first payments loaded: history from the database.
    stage("extract", later_dir, "--from-csv", str(later))
    timed("transform", *db, key="transform_history", directory=later_dir)
    timed(
        "transform",
        "--feature-spec",
        str(spec_without_history(args.work)),
        key="transform_no_history",
        directory=later_dir,
    )
    shutil.rmtree(later_dir)
    # The same inserts by one session a core.
    psql(url, "TRUNCATE payments_scored CASCADE; CHECKPOINT")
    sessions = timed("load", *db, "--connections", str(SESSIONS), key="load_sessions")
    figures["reprocess_sessions"].append(scored + sessions)
    floor_run(url, run_dir, shared, figures, timed)


def floor_run(url, run_dir, shared, figures, timed):
    """The floor: the rows fraudctl loaded, from a binary COPY file, through the same SQL (new
    payments also straight into the table); then the updates, fraudctl's and the floor's in turn."""
    db = ["--database-url", url]
    rows = shared / "staging.bin"
    staging_sql = (ROOT / "src/load/sql/staging.sql").read_text()
    upsert_sql = (
        (ROOT / "src/load/sql/upsert.sql").read_text().replace("$1", "'bench-floor'").replace("$2", "now()")
    )
    columns = ", ".join(staging_columns(staging_sql))
    psql(url, f"COPY (SELECT {columns} FROM payments_scored) TO '{rows}' (FORMAT binary)")
    # New payments: the same rows straight into the empty table, as fraudctl COPYs them.
    direct, table_columns = shared / "direct.bin", f"{columns}, run_id"
    psql(url, f"COPY (SELECT {table_columns} FROM payments_scored) TO '{direct}' (FORMAT binary)")
    psql(url, "TRUNCATE payments_scored CASCADE; CHECKPOINT")
    figures["floor_copy"].append(
        psql(url, f"BEGIN; COPY payments_scored ({table_columns}) FROM '{direct}' (FORMAT binary); COMMIT;")[
            0
        ]
    )
    load = f"BEGIN; {staging_sql}; COPY payments_staging FROM '{rows}' (FORMAT binary); {upsert_sql}; COMMIT;"
    psql(url, "TRUNCATE payments_scored CASCADE; CHECKPOINT")
    figures["floor_insert"].append(psql(url, load)[0])

    # Updates, fraudctl's and the floor's in turn, each on the vacuumed table and changing every
    # row (another threshold each time): a 50-second load moves with the machine by ±15 %, so
    # one of each would not tell the code from the noise.
    def vacuumed():
        psql(url, "VACUUM payments_scored")  # not in a transaction block: a -c of its own
        psql(url, "CHECKPOINT")

    for i in range(UPDATE_ROUNDS):
        vacuumed()
        stage("score", run_dir, "--threshold", f"{0.6 + i / 100}")
        timed("load", *db, key="load_update")
        changed = columns.replace("threshold,", f"{0.7 + i / 100}::float8,")
        psql(url, f"COPY (SELECT {changed} FROM payments_scored) TO '{rows}' (FORMAT binary)")
        vacuumed()
        figures["floor_update"].append(psql(url, load)[0])


def staging_columns(staging_sql):
    """The staging table's columns in order (src/load/sql/staging.sql): what the floor COPYs."""
    table = re.search(r"CREATE TEMPORARY TABLE payments_staging \((.*)\)\s*ON COMMIT DROP", staging_sql, re.S)
    if not table:
        sys.exit("bench: no CREATE TEMPORARY TABLE payments_staging (…) in src/load/sql/staging.sql")
    return [column.split()[0] for column in re.split(r",(?![^(]*\))", table.group(1))]


def peer_run(csv, admin, url, figures, peaks):
    """The Python peer on the same CSV, into a fresh database as each fraudctl run gets: its
    stages as it times them, its end to end and peak memory as the caller measures them."""
    fresh_db(admin, url)
    wall, rss, out = measured([str(PEER_PYTHON), "-m", PEER, "--csv", str(csv), "--database-url", url])
    result = json.loads(out)
    for _, name in PEER_STAGES:
        figures[f"peer_{name}"].append(result["seconds"][name])
        peaks[f"peer_{name}"] = max(peaks[f"peer_{name}"], result["peak_mb"][name])
    figures["peer_end_to_end"].append(wall)
    peaks["peer_end_to_end"] = max(peaks["peer_end_to_end"], rss)


def one_record(args, admin, url):
    """Wall times of each stage on a one-record batch, ONE_RECORD_SAMPLES of each, in ms."""
    run_dir = args.work / "one"
    shutil.rmtree(run_dir, ignore_errors=True)
    csv = args.work / "one.csv"
    with open(args.work / f"tx-{args.n}.csv") as src, open(csv, "w") as dst:
        dst.write(src.readline() + src.readline())
    fresh_db(admin, url)
    stage("extract", run_dir, "--from-csv", str(csv))
    db = ["--database-url", url]

    def samples_ms(name, *extra, before=lambda: None):
        def once():
            before()
            return stage(name, run_dir, *extra)[0] * 1000

        return [once() for _ in range(ONE_RECORD_SAMPLES)]

    return {
        "transform": samples_ms("transform", *db),
        "score": samples_ms("score"),
        "load (a new payment)": samples_ms(
            "load", *db, before=lambda: psql(url, "TRUNCATE payments_scored CASCADE")
        ),
        "load (the same payment again)": samples_ms("load", *db),
    }


def report(args, med, peaks, single):
    n = args.n
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )
    mem = (
        int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        / 1024
        / 1024
    )
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"## {n:,} transactions, median of {args.runs} run(s)\n")
    print(
        f"Machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}; {pg}.\n"
    )
    if not args.end_to_end_only:
        stage_report(args, med, peaks, single)
    if "peer_end_to_end" in med:
        peer_report(med, peaks)


def stage_report(args, med, peaks, single):
    """Each stage, the load against the database's floor, the one-record batches."""
    rate = lambda s: f"{args.n / s:,.0f}"  # noqa: E731
    print("| Stage | Seconds | Records/s | Peak memory |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("extract", "extract (CSV → raw.jsonl)"),
        ("transform", "transform (card history: the batch, empty database)"),
        ("transform_history", "transform (card history: the batch and a full database)"),
        ("transform_no_history", "transform without the history block (per-payment features)"),
        ("score", "score (local model)"),
        ("load_insert", "load, inserts"),
        ("load_update", "load, updates"),
        ("load_sessions", f"load, inserts, {SESSIONS} sessions (`--connections {SESSIONS}`)"),
    ):
        print(f"| {label} | {med[key]:.2f} | {rate(med[key])} | {peaks[key]:.0f} MB |")
    print(
        f"| **reprocess** (transform → score → load, inserts) | **{med['reprocess']:.2f}** | {rate(med['reprocess'])} | |"
    )
    print(
        f"| **reprocess**, load by {SESSIONS} sessions | **{med['reprocess_sessions']:.2f}** | {rate(med['reprocess_sessions'])} | |"
    )
    print()
    print(
        "| Load against the database's floor | fraudctl load | COPY + upsert by psql | Ratio "
        "| COPY into the table by psql | Ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("insert", "update"):
        a, b = med[f"load_{kind}"], med[f"floor_{kind}"]
        copy = f"{med['floor_copy']:.2f} s | {a / med['floor_copy']:.2f}×" if kind == "insert" else "— | —"
        label = f"updates ({UPDATE_ROUNDS} a run, in turn)" if kind == "update" else "inserts"
        print(f"| {label} | {a:.2f} s | {b:.2f} s | {a / b:.2f}× | {copy} |")
    print()
    print(f"| One-record batch (median of {ONE_RECORD_SAMPLES} a run × {args.runs}) | Wall |")
    print("|---|---:|")
    for name, ms in single.items():
        note = " (connects to PostgreSQL on loopback)" if name.split()[0] in ("transform", "load") else ""
        print(f"| {name}{note} | {ms:.1f} ms |")
    print()


def peer_report(med, peaks):
    """fraudctl against the Python peer, stage by stage and end to end. fraudctl's stages are
    processes of their own (start-up included); the peer's are timed inside one process, whose
    start (interpreter, imports, model) is the row of its own."""
    print(
        "| fraudctl vs the Python peer | fraudctl | Python peer | Peer / fraudctl "
        "| fraudctl peak | peer peak so far |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for ours, theirs in PEER_STAGES:
        a, b = med[ours], med[f"peer_{theirs}"]
        print(
            f"| {ours.split('_')[0]} / {theirs} | {a:.2f} s | {b:.2f} s | {b / a:.1f}× "
            f"| {peaks[ours]:.0f} MB | {peaks[f'peer_{theirs}']:.0f} MB |"
        )
    start = med["peer_end_to_end"] - sum(med[f"peer_{theirs}"] for _, theirs in PEER_STAGES)
    print(f"| the peer's start (interpreter, imports, model) | | {start:.2f} s | | | |")
    a, b = med["end_to_end"], med["peer_end_to_end"]
    peak = max(peaks[ours] for ours, _ in PEER_STAGES)
    print(
        f"| **end to end** | **{a:.2f} s** | **{b:.2f} s** | **{b / a:.1f}×** "
        f"| {peak:.0f} MB | {peaks['peer_end_to_end']:.0f} MB |"
    )


if __name__ == "__main__":
    main()
