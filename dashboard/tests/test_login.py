"""Who sees the data: on the local stack (listening on loopback) anyone who opens it; anywhere
else only a user logged in with Streamlit's login (OpenID Connect), and nobody while no login is
configured. The real app against a real fraud_db (AppTest, which plays the identity provider's
part through AppTest.user); and the database session's read-only guard."""

import datetime as dt
from urllib.parse import urlsplit

import pytest
from conftest import ANALYST, APP, AUTH
from streamlit.testing.v1 import AppTest

import database

DAY = dt.date(2026, 3, 9)


@pytest.fixture
def open_page(fraud_db, reader_url, monkeypatch):
    """open_page(secrets=None, user=None, **query) -> AppTest: the app as a visitor opens it."""
    monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", reader_url)
    fraud_db.payment("t-fraud", dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC), probability=0.97)
    fraud_db.pipeline_run("run-1", minutes_ago=1)

    def open_(secrets: dict | None = None, user: dict | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets.update(secrets or {})
        at.user = user if user is not None else {"is_logged_in": False}
        at.query_params.update({"day": DAY.isoformat(), **query})
        at.run()
        assert not at.exception, at.exception
        return at

    return open_


def shows_data(at: AppTest) -> bool:
    return any(m.label == "Payments" for m in at.metric) or bool(at.dataframe)


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_the_local_stack_opens_without_a_login(open_page, listening_address, address):
    listening_address(address)

    at = open_page()

    assert shows_data(at) and not at.error
    assert at.dataframe[0].value.trans_num.tolist() == ["t-fraud"]
    assert not [b for b in at.button if b.key == "login"]


@pytest.mark.parametrize(("address", "shown"), [("0.0.0.0", "0.0.0.0"), (None, "every interface")])
def test_exposed_without_a_login_configured_it_refuses_naming_the_setting(
    open_page, listening_address, address, shown
):
    listening_address(address)

    at = open_page(user=ANALYST)

    assert not shows_data(at)
    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith(
        f"The dashboard listens on {shown} (server.address, STREAMLIT_SERVER_ADDRESS) "
        "and no login is configured, so it shows no data. Add an [auth] section"
    )
    assert "secrets.toml" in message and 'dashboard/README.md, "Who can see it"' in message


def test_exposed_a_visitor_gets_the_login_button_and_no_data(open_page, listening_address):
    listening_address("0.0.0.0")

    at = open_page(secrets=AUTH)

    assert not shows_data(at) and not at.error
    assert [b.label for b in at.button] == ["Log in"]
    assert [i.value for i in at.info] == ["Log in to see the fraud report."]


def test_exposed_a_logged_in_user_sees_the_data(open_page, listening_address):
    listening_address("0.0.0.0")

    at = open_page(secrets=AUTH, user=ANALYST)

    assert shows_data(at) and not at.error
    assert at.dataframe[0].value.trans_num.tolist() == ["t-fraud"]
    assert [b.label for b in at.sidebar.button] == ["Log out analyst@example.com"]


def test_exposed_a_verdict_link_asks_for_the_login_first(open_page, listening_address, fraud_db):
    listening_address("0.0.0.0")

    at = open_page(secrets=AUTH, verdict="v1.t-fraud.fraud.9999999999." + "0" * 64)

    assert [b.label for b in at.button] == ["Log in"]
    assert any("open the verdict link from the alert email again" in c.value for c in at.caption)
    assert fraud_db.execute("SELECT count(*) FROM alert_verdicts") == [(0,)]


def test_statements_run_read_only_unless_they_write_from_either_form_of_url(reader_url, monkeypatch):
    monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", reader_url)
    assert database.query("SHOW transaction_read_only").iloc[0, 0] == "on"
    assert database.execute("SHOW transaction_read_only").iloc[0, 0] == "on"
    assert database.execute("SHOW transaction_read_only", write=True).iloc[0, 0] == "off"
    monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", conninfo(reader_url))
    assert database.query("SELECT current_user").iloc[0, 0] == urlsplit(reader_url).username


def conninfo(url: str) -> str:
    """The URL as libpq key=value pairs (the other form FRAUDCTL_DASHBOARD_DATABASE_URL takes)."""
    parts = urlsplit(url)
    return f"host={parts.hostname} port={parts.port} user={parts.username} dbname={parts.path[1:]}"
