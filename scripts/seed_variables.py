#!/usr/bin/env python3
"""The local stack's Airflow Variables, seeded into Airflow's metadata database, where the UI
(Admin > Variables) and `scripts/airflow variables set` change them. (Set as AIRFLOW_VAR_* in the
processes' environment instead, they would win over the UI: Airflow reads the environment first.)

    .venv-airflow/bin/python scripts/seed_variables.py STATE_FILE NAME=VALUE...

Run by `make up` (scripts/stack.sh) with the stack's Airflow settings. For each Variable:
absent, it is set; still holding what the previous `make up` seeded (recorded in STATE_FILE,
JSON), it follows the stack (a port changed by FRAUDCTL_SIM_PORT, say); changed since by an
operator, the operator's value stays, and a line says so. Prints one line a Variable.
"""

import json
import os
import sys
from pathlib import Path

from airflow.models import Variable


def seed(name: str, value: str, seeded: dict) -> str:
    current = Variable.get(name, default_var=None)
    if current is not None and current not in (value, seeded.get(name)):
        return f"kept {name}={current!r}: set in Airflow, not the stack's {value!r}"
    if current != value:
        Variable.set(name, value, description="seeded by make up (scripts/seed_variables.py)")
        return f"set {name}={value!r}"
    return f"unchanged {name}"


def main() -> None:
    if len(sys.argv) < 2 or not all("=" in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    state, pairs = Path(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:])
    seeded = json.loads(state.read_text()) if state.exists() else {}
    for name, value in pairs.items():
        print(f"seed_variables: {seed(name, value, seeded)}")
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({**seeded, **pairs}))
    os.replace(tmp, state)


if __name__ == "__main__":
    main()
