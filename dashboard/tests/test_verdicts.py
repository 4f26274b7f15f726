"""Analysts' verdicts against a real PostgreSQL and the real app (Streamlit's AppTest): the verdict
page a link opens records only on the click, once; every refused link says why and writes nothing;
the reader role can record through record_alert_verdict and nothing else; the main page shows the
day's verdict figures."""

import datetime as dt
import hashlib
import hmac

import psycopg
import pytest
from conftest import APP
from streamlit.testing.v1 import AppTest

UTC = dt.UTC
KEY = "dashboard-test-verdict-key-0123456789abcdef"
DAY = dt.date(2026, 3, 9)
NOW = dt.datetime.now(UTC)
IN_A_WEEK = int(NOW.timestamp()) + 7 * 86400


def sign(trans_num: str, verdict: str, expires: int, key: str = KEY) -> str:
    """A token as docs/verdict-links.md defines it (signed here independently of the app)."""
    signed = f"v1.{trans_num}.{verdict}.{expires}"
    return f"{signed}.{hmac.new(key.encode(), signed.encode(), hashlib.sha256).hexdigest()}"


def issued(fraud_db, *tokens: str) -> None:
    """Registers tokens as the alert stage does when it sends them (issued_verdict_tokens)."""
    for token in tokens:
        _, trans_num, verdict, expires, _ = token.split(".")
        fraud_db.execute(
            """INSERT INTO issued_verdict_tokens (token_sha256, trans_num, verdict, expires_at)
               VALUES (sha256(convert_to(%s, 'UTF8')), %s, %s, to_timestamp(%s))""",
            (token, trans_num, verdict, int(expires)),
        )


def alerted(fraud_db, trans_num: str, when: dt.datetime | None = None, status: str = "sent") -> None:
    fraud_db.payment(
        trans_num,
        when or NOW - dt.timedelta(hours=2),
        amt=912.34,
        category="shopping_net",
        probability=0.93,
        last4="1881",
    )
    fraud_db.alert(trans_num, status)


def verdict_rows(fraud_db) -> list[tuple]:
    return fraud_db.execute("SELECT trans_num, verdict, note FROM alert_verdicts ORDER BY id")


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


@pytest.fixture
def open_link(reader_url, monkeypatch):
    """Opens the dashboard as a verdict link would: open_link(token, key=KEY) -> AppTest."""

    def open_(token: str, key: str | None = KEY) -> AppTest:
        monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", reader_url)
        if key is None:
            monkeypatch.delenv("FRAUDCTL_VERDICT_KEY", raising=False)
        else:
            monkeypatch.setenv("FRAUDCTL_VERDICT_KEY", key)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["verdict"] = token
        at.run()
        assert not at.exception, at.exception
        return at

    return open_


def test_the_link_shows_the_payment_and_records_only_on_the_click(fraud_db, open_link):
    alerted(fraud_db, "t-burst-1")
    token = sign("t-burst-1", "fraud", IN_A_WEEK)
    issued(fraud_db, token)

    for _ in range(2):  # a mail scanner's prefetch, then the analyst opening it
        at = open_link(token)
        assert not at.error
        assert verdict_rows(fraud_db) == []
    shown = at.dataframe[0].value.iloc[0]
    assert (shown["Transaction"], shown["Card"], shown["Amount"]) == ("t-burst-1", "**** 1881", 912.34)
    assert (shown["Merchant"], shown["Category"], round(shown["Score"], 2)) == (
        "fraud_Test Merchant",
        "shopping_net",
        0.93,
    )
    assert [s.value for s in at.subheader] == ["Proposed verdict: Confirmed fraud"]

    at.text_area(key="verdict_note").input("Customer confirmed on the phone").run()
    assert verdict_rows(fraud_db) == [], "typing a note records nothing"
    at.button(key="confirm_verdict").click().run()

    assert not at.exception and not at.error
    assert "Recorded: Confirmed fraud for payment t-burst-1" in at.success[0].value
    assert verdict_rows(fraud_db) == [("t-burst-1", "fraud", "Customer confirmed on the phone")]

    again = open_link(token)
    assert "This verdict link has already been used" in errors(again)
    assert not again.button
    assert len(verdict_rows(fraud_db)) == 1


def test_a_later_verdict_supersedes_and_the_first_link_stays_used(fraud_db, open_link):
    alerted(fraud_db, "t-1")
    first, second = sign("t-1", "fraud", IN_A_WEEK), sign("t-1", "not_fraud", IN_A_WEEK)
    issued(fraud_db, first, second)
    open_link(first).button(key="confirm_verdict").click().run()
    page = open_link(second)
    assert any(c.value.startswith("Verdict in force: Confirmed fraud, given ") for c in page.caption)
    page.button(key="confirm_verdict").click().run()
    assert fraud_db.execute("SELECT verdict, verdicts_given FROM v_alert_verdicts_latest") == [
        ("not_fraud", 2)
    ]

    replayed = open_link(first)

    assert "This verdict link has already been used" in errors(replayed)
    assert not replayed.button
    assert [v for _, v, _ in verdict_rows(fraud_db)] == ["fraud", "not_fraud"]


def tamper_last(token):
    """The token with its signature's last character changed (to another one, whatever it was)."""
    return token[:-1] + ("1" if token.endswith("0") else "0")


@pytest.mark.parametrize(
    ("token", "page"),
    [
        (tamper_last(sign("t-1", "fraud", IN_A_WEEK)), "This verdict link has been tampered with"),
        (sign("t-1", "fraud", IN_A_WEEK).replace(".fraud.", ".not_fraud."), "has been tampered with"),
        (
            sign("t-1", "fraud", IN_A_WEEK, key="another-key-another-key-another-key!"),
            "has been tampered with",
        ),
        (sign("t-1", "fraud", int(NOW.timestamp()) - 60), "This verdict link has expired"),
        (sign("t-unknown", "fraud", IN_A_WEEK), "Unknown payment"),
        (sign("t-suppressed", "fraud", IN_A_WEEK), "Unknown payment"),
        ("v1.t-1.fraud", "This is not a valid verdict link"),
        ("", "This is not a valid verdict link"),
    ],
    ids=[
        "signature",
        "verdict-changed",
        "other-key",
        "expired",
        "never-alerted",
        "not-sent",
        "truncated",
        "empty",
    ],
)
def test_refused_links_say_why_and_write_nothing(fraud_db, open_link, token, page):
    alerted(fraud_db, "t-1")
    alerted(fraud_db, "t-suppressed", status="suppressed")
    fraud_db.payment("t-unknown", NOW - dt.timedelta(hours=1), probability=0.2)

    at = open_link(token)

    assert page in errors(at) and "Nothing was recorded." in errors(at)
    assert not at.button and not at.dataframe
    assert verdict_rows(fraud_db) == []


def test_a_link_fraudctl_never_sent_records_nothing(fraud_db, open_link):
    """Signed with the key but never in an alert email (made by whoever got hold of the key)."""
    alerted(fraud_db, "t-1")

    at = open_link(sign("t-1", "not_fraud", IN_A_WEEK))
    at.button(key="confirm_verdict").click().run()

    assert "This link was not issued by fraudctl" in errors(at) and "Nothing was recorded." in errors(at)
    assert verdict_rows(fraud_db) == []


def test_without_the_key_the_page_names_it_and_records_nothing(fraud_db, open_link):
    alerted(fraud_db, "t-1")
    for key in (None, "x" * 31):
        at = open_link(sign("t-1", "fraud", IN_A_WEEK), key=key)
        assert "FRAUDCTL_VERDICT_KEY is" in errors(at) and not at.button
    assert verdict_rows(fraud_db) == []


def test_the_models_reasons_are_shown_when_payments_have_them(fraud_db, open_link):
    alerted(fraud_db, "t-1")
    fraud_db.execute("""UPDATE payments_scored SET reasons = '[{"text": "Amount $912.34 is 40x the card''s usual",
                        "weight": 2.1}, {"text": "Third online purchase in 10 minutes"}]'""")

    at = open_link(sign("t-1", "fraud", IN_A_WEEK))

    assert [t.value for t in at.text] == [
        "• Amount $912.34 is 40x the card's usual",
        "• Third online purchase in 10 minutes",
    ]


def test_the_function_refuses_what_the_page_would_and_records_once(fraud_db, reader_url):
    alerted(fraud_db, "t-1")
    alerted(fraud_db, "t-suppressed", status="suppressed")
    valid = sign("t-1", "fraud", IN_A_WEEK)
    issued(
        fraud_db,
        valid,
        expired := sign("t-1", "fraud", int(NOW.timestamp()) - 1),
        suppressed := sign("t-suppressed", "fraud", IN_A_WEEK),
    )
    with psycopg.connect(reader_url, autocommit=True) as conn:

        def record(token, note=None):
            return conn.execute("SELECT record_alert_verdict(%s, %s)", (token, note)).fetchone()[0]

        assert record(sign("t-1", "not_fraud", IN_A_WEEK)) == "unknown_token"
        assert record(expired) == "expired"
        assert record(suppressed) == "not_alerted"
        assert record("v1.t-1.fraud.1.zz") == "malformed"
        assert record(valid, "x" * 501) == "note_too_long"
        assert record(valid, "  ") == "recorded"
        assert record(valid) == "already_used"
    assert verdict_rows(fraud_db) == [("t-1", "fraud", None)]
    digest = fraud_db.execute("SELECT token_sha256 FROM alert_verdicts")[0][0]
    assert bytes(digest) == hashlib.sha256(valid.encode()).digest()


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO alert_verdicts (trans_num, verdict, token_sha256, token_expires_at) "
        "VALUES ('t-1', 'fraud', sha256('x'), now() + interval '1 day')",
        "UPDATE alert_verdicts SET verdict = 'not_fraud'",
        "DELETE FROM alert_verdicts",
        "SELECT * FROM alert_verdicts",
        "INSERT INTO v_alert_verdict_history (trans_num, verdict, token_sha256, token_expires_at) "
        "VALUES ('t-1', 'fraud', sha256('x'), now() + interval '1 day')",
        "UPDATE v_alert_verdict_history SET verdict = 'not_fraud'",
        "DELETE FROM v_alert_verdict_history",
    ],
)
def test_reader_role_cannot_write_verdicts_but_through_the_function(fraud_db, reader_url, statement):
    alerted(fraud_db, "t-1")
    issued(fraud_db, token := sign("t-1", "fraud", IN_A_WEEK))
    fraud_db.execute("SELECT record_alert_verdict(%s)", (token,))
    with psycopg.connect(reader_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    assert verdict_rows(fraud_db) == [("t-1", "fraud", None)]


def test_reader_role_may_call_and_read_only_what_it_was_granted(fraud_db):
    def granted(check: str) -> set[str]:
        return {r[0] for r in fraud_db.execute(check)}

    functions = granted("""SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                           WHERE n.nspname = 'public'
                             AND has_function_privilege('fraud_report_reader', p.oid, 'EXECUTE')""")
    assert functions == {
        "alert_latency_for_day",
        "business_time_zone",
        "business_yesterday",
        "fraud_report_for_day",
        "fraud_report_summary",
        "fraud_report_by_hour",
        "fraud_report_by_category",
        "fraud_report_by_amount_band",
        "record_alert_verdict",
        "challenger_comparison",
    }  # V23: champion against challenger, read only
    for change in ("list_add", "list_remove", "list_add_card_of"):  # fraud_list_editor's, not the reader's
        assert not fraud_db.execute(f"""SELECT has_function_privilege('fraud_report_reader', p.oid, 'EXECUTE')
                                        FROM pg_proc p WHERE p.proname = '{change}'""")[0][0], change
    relations = (
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') "
        "AND has_table_privilege('fraud_report_reader', c.oid, '{}')"
    )
    assert granted(relations.format("SELECT")) == {
        "v_daily_fraud_report",
        "v_pipeline_freshness",
        "v_alert_verdict_history",
        "v_alert_verdicts_latest",
        "v_alert_verdict_outcomes",
        "v_alert_verdict_daily",
        "v_verdict_payments",
        "v_payment_reasons",
        "list_entries",
        "list_changes",  # the rules' lists (V22): read, never written
        "backtest_runs",
    }  # V23: fraudctl backtest's reports
    for write in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert granted(relations.format(write)) == set(), write


def given(fraud_db, trans_num: str, verdict: str, at: dt.datetime) -> None:
    """A verdict recorded at a chosen time (as the superuser: the function stamps now())."""
    fraud_db.execute(
        """INSERT INTO alert_verdicts (trans_num, verdict, recorded_at, token_sha256, token_expires_at)
           VALUES (%s, %s, %s, sha256(convert_to(%s, 'UTF8')), %s)""",
        (trans_num, verdict, at, f"{trans_num}-{verdict}-{at}", at + dt.timedelta(days=7)),
    )


def test_main_page_shows_the_days_alerts_with_their_verdicts(fraud_db, dashboard):
    sent = dt.datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    for i, (verdicts, minutes) in enumerate(
        [(["fraud"], 10), (["not_fraud", "fraud"], 20), (["fraud", "not_fraud"], 60), ([], None)]
    ):
        trans_num = f"t-{i}"
        fraud_db.payment(trans_num, sent - dt.timedelta(minutes=5 + i), probability=0.9)
        fraud_db.execute(
            """INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, recorded_at)
                            VALUES (%s, 'sent', %s, 'x@example.com', 'r', %s)""",
            (trans_num, trans_num, sent),
        )
        for j, verdict in enumerate(verdicts):
            given(fraud_db, trans_num, verdict, sent + dt.timedelta(minutes=minutes + 30 * j))
    fraud_db.payment("t-other-day", at := dt.datetime(2026, 3, 8, 12, tzinfo=UTC), probability=0.9)
    fraud_db.alert("t-other-day")
    given(fraud_db, "t-other-day", "not_fraud", at + dt.timedelta(hours=1))

    page = dashboard(day=DAY)

    shown = {m.label: m.value for m in page.metric}
    assert shown["Analyst-confirmed precision"] == "66.7% (2 of 3)"  # latest: fraud, fraud, not_fraud
    assert shown["Verdicts pending"] == "1"
    assert shown["Median time to verdict"] == "20 min"  # to the first verdict: 10, 20, 60
    table = page.dataframe[1].value
    assert list(table.trans_num) == ["t-3", "t-2", "t-1", "t-0"]
    assert list(table.verdict) == ["pending", "Not fraud", "Confirmed fraud", "Confirmed fraud"]
    assert table.verdict_at.iloc[0] == "—", "a pending alert's verdict time is a dash, not None"


def test_an_alerts_payment_link_opens_the_payment(fraud_db, reader_url, monkeypatch):
    fraud_db.payment("t-pay", dt.datetime(2026, 3, 9, 14, 5, tzinfo=UTC), amt=512.0, probability=0.93)
    fraud_db.alert("t-pay")
    fraud_db.payment("t-quiet", dt.datetime(2026, 3, 9, 15, tzinfo=UTC), probability=0.95)  # never alerted
    monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", reader_url)

    def open_payment(trans_num: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["payment"] = trans_num
        at.run()
        assert not at.exception, at.exception
        return at

    page = open_payment("t-pay")
    assert [t.value for t in page.title] == [":material/receipt_long: Alerted payment"]
    shown = page.dataframe[0].value.iloc[0]
    assert shown["Transaction"] == "t-pay" and shown["Amount"] == 512.0 and shown["Card"] == "**** 4242"
    assert any("No verdict yet" in c.value for c in page.caption)
    assert any("?day=2026-03-09" in m.value for m in page.markdown)
    for other in ("t-quiet", "no-such-payment"):
        assert [w.value for w in open_payment(other).warning] == [
            "No alert was sent for a payment with this transaction id."
        ], other
