#!/usr/bin/env python3
"""Writes N transactions in the data set's CSV layout by cycling through a real sample
(default ../shared/data/fraud_sample.csv): each copy gets a new trans_num, a new card number
(same length, so 19-digit numbers stay 19 digits) and a time shifted by whole days.

    python scripts/gen_transactions.py 1000000 /tmp/tx-1m.csv
    python scripts/gen_transactions.py 1000000 /tmp/tx-1m-next.csv --later-days 1

--later-days D writes the same payments' cards D days later, with other trans_nums: a batch
whose cards' history is the first file (what the benchmark loads before it).
"""

import argparse
import csv
import hashlib
from datetime import datetime, timedelta
from pathlib import Path

DEFAULT_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fraud_sample.csv"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int, help="number of transactions")
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE, help="CSV in the data set's layout")
    parser.add_argument(
        "--later-days",
        type=int,
        default=0,
        help="the same cards this many days later, other trans_nums (default 0)",
    )
    args = parser.parse_args()

    with args.sample.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(args.n):
            copy, row = divmod(i, len(rows))
            out = list(rows[row])
            out[0] = str(i)
            if copy:
                digest = hashlib.md5(f"{copy}:{row}".encode()).hexdigest()
                out[col["trans_num"]] = digest
                cc = out[col["cc_num"]]
                out[col["cc_num"]] = cc[0] + str(int(digest[:15], 16) % 10 ** (len(cc) - 1)).zfill(
                    len(cc) - 1
                )
                t = datetime.strptime(out[col["trans_date_trans_time"]], "%Y-%m-%d %H:%M:%S")
                out[col["trans_date_trans_time"]] = (t + timedelta(days=copy % 500)).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
            if args.later_days:
                t = datetime.strptime(out[col["trans_date_trans_time"]], "%Y-%m-%d %H:%M:%S")
                out[col["trans_date_trans_time"]] = (t + timedelta(days=args.later_days)).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
                later = hashlib.md5(f"later:{args.later_days}:{out[col['trans_num']]}".encode())
                out[col["trans_num"]] = later.hexdigest()
            writer.writerow(out)


if __name__ == "__main__":
    main()
