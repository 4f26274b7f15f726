"""Where the dashboard listens. By default on 127.0.0.1 only (the local stack, where it needs no
login: test_login.py), both in its image and when started with `dashboard/run.sh` from any
directory; on every interface only when told to, as docker-compose does. Real Streamlit
processes, their listening sockets read from /proc."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import DASHBOARD, STREAMLIT, dashboard_process


def decode(hex_address: str, family: int) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    return socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def listening_addresses(pid: int) -> set[str]:
    """The local addresses of the TCP sockets the process listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed in the meantime
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                found.add(decode(fields[1].split(":")[0], family))
    return found


def listens_on(command: list, cwd: Path, **settings: str) -> set[str]:
    """Starts the dashboard with this command and returns the addresses it listens on once it does."""
    with dashboard_process(command, cwd, **settings) as (proc, _):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            addresses = listening_addresses(proc.pid)
            if addresses:
                return addresses
            time.sleep(0.2)
        raise AssertionError(f"the dashboard did not listen within 60 s (exit {proc.poll()})")


def image_workdir(tmp_path: Path) -> tuple[Path, list[str]]:
    """A directory filled as the image's WORKDIR by the Dockerfile's COPY lines (their sources
    may be patterns, as `*.py`), and its CMD."""
    workdir, command = tmp_path / "app", None
    workdir.mkdir()
    for line in (DASHBOARD / "Dockerfile").read_text().splitlines():
        instruction, _, args = line.partition(" ")
        if instruction == "COPY":
            *sources, dest = args.split()
            for source in sources:
                paths = sorted(DASHBOARD.glob(source))
                assert paths, f"COPY {source}: no such file in dashboard/"
                for path in paths:
                    copy = shutil.copytree if path.is_dir() else shutil.copy
                    copy(path, workdir / dest)
        elif instruction == "CMD":
            command = json.loads(args)
    assert command == ["./run.sh"], command
    return workdir, command


def test_the_image_listens_on_loopback_only(tmp_path):
    workdir, command = image_workdir(tmp_path)
    assert listens_on(command, workdir) == {"127.0.0.1"}


def test_the_image_holds_every_module_the_page_imports(tmp_path):
    """app.py imports the modules beside it by name: the COPY lines must bring them all."""
    workdir, _ = image_workdir(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import app, server"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_run_sh_from_any_directory_listens_on_loopback_only(tmp_path):
    """As the README and scripts/stack.sh start it."""
    assert listens_on([str(DASHBOARD / "run.sh")], tmp_path) == {"127.0.0.1"}


def test_streamlit_run_from_any_directory_listens_on_loopback_only(tmp_path):
    """As scripts/screenshot-dashboard.sh starts it."""
    assert listens_on([str(STREAMLIT), "run", str(DASHBOARD / "app.py")], tmp_path) == {"127.0.0.1"}


def test_streamlit_server_address_opens_it_as_docker_compose_does(tmp_path):
    """docker-compose sets STREAMLIT_SERVER_ADDRESS=0.0.0.0 (and publishes on the host's loopback)."""
    workdir, command = image_workdir(tmp_path)
    assert listens_on(command, workdir, STREAMLIT_SERVER_ADDRESS="0.0.0.0") == {"0.0.0.0"}
