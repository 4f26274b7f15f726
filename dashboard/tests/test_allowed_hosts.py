"""DNS rebinding: a page of evil.example that makes the browser resolve evil.example to 127.0.0.1
reaches the dashboard on loopback with `Host: evil.example:PORT` and `Origin:
http://evil.example:PORT`. The real dashboard, started as the local stack starts it
(dashboard/run.sh, 127.0.0.1), refuses such requests, page and WebSocket alike, with 403 and sends
nothing of the report; it serves the names it is browsed by (server.allowedHosts)."""

import datetime as dt
import http.client
import socket
import time

import pytest
from conftest import DASHBOARD, dashboard_process
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

CANARY = "t-rebinding-canary"  # a predicted fraud of the report's day: in its table when it streams


@pytest.fixture
def settings() -> dict:
    """More environment for the dashboard; a test changes it by parametrizing it."""
    return {}


@pytest.fixture
def port(fraud_db, reader_url, tmp_path, settings):
    """The port of the dashboard started by dashboard/run.sh on a day with one predicted fraud."""
    fraud_db.payment(CANARY, dt.datetime.combine(fraud_db.yesterday(), dt.time(12), dt.UTC), probability=0.97)
    with dashboard_process(
        [str(DASHBOARD / "run.sh")], tmp_path, FRAUDCTL_DASHBOARD_DATABASE_URL=reader_url, **settings
    ) as (proc, port):
        deadline = time.monotonic() + 60
        while not accepts(port):
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"the dashboard did not listen within 60 s (exit {proc.poll()})"
            )
            time.sleep(0.2)
        yield port


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(port: int, host: str, origin: str | None) -> tuple[int, bytes]:
    """GET / as a browser at http://HOST would send it, over a connection to 127.0.0.1:PORT."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host, **({"Origin": origin} if origin else {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def stream(port: int, host: str, origin: str | None) -> bytes:
    """Everything the app sends on its WebSocket (/_stcore/stream) for one run of the page, opened
    as a browser at http://HOST would, over a connection to 127.0.0.1:PORT (what DNS rebinding
    does)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as sock,
        connect(f"ws://{host}/_stcore/stream", sock=sock, origin=origin, max_size=None) as ws,
    ):
        ws.send(BackMsg(rerun_script=ClientState()).SerializeToString())
        received = b""
        while True:
            message = ws.recv(timeout=60)
            received += message
            if ForwardMsg.FromString(message).WhichOneof("type") == "script_finished":
                return received


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("evil.example", "http://evil.example"),  # the rebinding page
        ("evil.example", None),  # a script, not a browser
        ("127.0.0.1", "http://evil.example"),  # another site's page in the victim's browser
    ],
)
def test_other_host_names_are_refused(port, host, origin):
    host = f"{host}:{port}"
    origin = origin and f"{origin}:{port}"
    status, body = get(port, host, origin)
    assert status == 403 and CANARY.encode() not in body
    with pytest.raises(InvalidStatus) as refused:
        stream(port, host, origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_names_get_the_report(port, host):
    host = f"{host}:{port}"
    status, _ = get(port, host, f"http://{host}")
    assert status == 200
    assert CANARY.encode() in stream(port, host, f"http://{host}")


@pytest.mark.parametrize("settings", [{"STREAMLIT_SERVER_ALLOWED_HOSTS": "fraud-report.example.com"}])
def test_the_host_names_are_a_setting(port):
    name = f"fraud-report.example.com:{port}"
    assert get(port, name, f"https://{name}")[0] == 200
    assert CANARY.encode() in stream(port, name, f"https://{name}")
    assert get(port, f"localhost:{port}", None)[0] == 403
