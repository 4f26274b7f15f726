"""The detection controls under the day's report: the latest backtest of each rules file
(backtest_runs), and the rules' lists (list_entries, list_changes), read by everyone who sees the
report and changed through list_add, list_add_card_of and list_remove only by an identified user
whose database role is a member of fraud_list_editor."""

import datetime as dt
import getpass
import json
from urllib.parse import urlsplit

import pytest
from conftest import ANALYST, APP, AUTH, login_role
from streamlit.testing.v1 import AppTest

UTC = dt.UTC
DAY = dt.date(2026, 3, 9)
LOCAL_AUTHOR = f"local:{getpass.getuser()}"
CARD_HASH = "0123456789abcdef" * 4  # a card's keyed hash as extract writes it (64 hex digits)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def everything_shown(at: AppTest) -> str:
    """Every element's protobuf and every table's cells: what the browser would receive."""

    def protos(node):
        yield str(getattr(node, "proto", ""))
        for child in getattr(node, "children", {}).values():
            yield from protos(child)

    return "\n".join([*protos(at._tree), *(d.value.to_csv() for d in at.dataframe)])


# ---- The latest backtest.


def counts(
    payments: int, days: int, caught: int, all_frauds: int, verdicts: tuple[int, int] = (0, 0)
) -> dict:
    """A backtest's counts (src/backtest/report.rs): shares null when undefined."""
    fraud, not_fraud = verdicts
    return {
        "payments": payments,
        "per_day": payments / days,
        "label_frauds": caught,
        "precision": caught / payments if payments else None,
        "recall": caught / all_frauds if all_frauds else None,
        "verdict_fraud": fraud,
        "verdict_not_fraud": not_fraud,
        "verdict_precision": fraud / (fraud + not_fraud) if fraud + not_fraud else None,
    }


def backtest(
    fraud_db,
    rules_file: str | None,
    hours_ago: float,
    rules: list[tuple[str, str, int, int]],
    alerts: dict,
    live_alerts: dict,
    differences: int,
    ran_by: str = "analyst",
) -> None:
    """A backtest_runs row as `fraudctl backtest` records it: 5 days, 1,000 payments, 20 labelled frauds."""
    report = {
        "from": "2026-03-01",
        "to": "2026-03-05",
        "days": 5.0,
        "model_version": "xgb-v1",
        "threshold": 0.5,
        "rule_set": rules_file and f"candidate@{hours_ago:g}",
        "payments": 1000,
        "without_inputs": 7,
        "label_frauds": 20,
        "rules": [
            {"id": rule, "action": action, **counts(matched, 5, caught, 20)}
            for rule, action, matched, caught in rules
        ],
        "alerts": alerts,
        "live_alerts": live_alerts,
        "differences": differences,
        "caught_not_live": 2,
        "missed_live_caught": 1,
        "first_differences": ["t-9", "t-12"],
    }
    fraud_db.execute(
        """INSERT INTO backtest_runs (ran_at, ran_by, rules_file, rule_set, model_version, threshold,
                                      from_day, to_day, payments, report)
           VALUES (now() - make_interval(secs => %s), %s, %s, %s, 'xgb-v1', 0.5, '2026-03-01',
                   '2026-03-05', 1000, %s)""",
        (hours_ago * 3600, ran_by, rules_file, report["rule_set"], json.dumps(report)),
    )


def test_the_latest_backtest_of_each_rules_file_newest_first(fraud_db, dashboard):
    live = counts(25, 5, 15, 20, verdicts=(9, 3))
    backtest(
        fraud_db,
        "rules/candidate.toml",
        72,
        [("old_rule", "alert", 99, 1)],
        counts(99, 5, 1, 20),
        live,
        500,
        ran_by="someone-else",
    )
    backtest(
        fraud_db,
        "rules/candidate.toml",
        1,
        [("big_amount", "alert", 12, 9), ("trusted_shop", "allow", 40, 0)],
        counts(30, 5, 18, 20, verdicts=(10, 2)),
        live,
        11,
    )
    backtest(
        fraud_db,
        "rules/other.toml",
        24,
        [("night_online", "review", 7, 2)],
        counts(25, 5, 15, 20),
        live,
        0,
        ran_by="someone-else",
    )

    at = dashboard(day=DAY)

    picker = at.selectbox(key="backtest_rules_file")
    assert picker.options == ["rules/candidate.toml", "rules/other.toml"]
    assert picker.value == "rules/candidate.toml"
    shown = metrics(at)
    assert {k: shown[k] for k in shown if k.startswith(("Candidate", "Pipeline"))} == {
        "Candidate alerts a day": "6",
        "Pipeline alerts a day": "5",
        "Candidate precision": "60.0%",
        "Pipeline precision": "60.0%",
        "Candidate recall": "90.0%",
        "Pipeline recall": "75.0%",
        "Candidate verdict precision": "83.3%",
        "Pipeline verdict precision": "75.0%",
    }
    assert (
        shown["Decided otherwise"],
        shown["Frauds only the candidate alerts"],
        shown["Frauds only the pipeline alerted"],
    ) == ("11", "2", "1")
    run = [c.value for c in at.caption if c.value.startswith("`rules/candidate.toml`")]
    assert (
        len(run) == 1
        and "run by analyst on " in run[0]
        and "over 2026-03-01 to 2026-03-05 (5 days)" in run[0]
    )
    assert "Model `xgb-v1` at threshold 0.5; rule set `candidate@1`" in run[0]
    rules = at.dataframe[-1].value  # no list has entries: no list table after it
    assert rules.to_dict("records") == [
        {
            "id": "big_amount",
            "action": "alert",
            "payments": 12,
            "per_day": 2.4,
            "label_frauds": 9,
            "precision": 0.75,
            "recall": 0.45,
        },
        {
            "id": "trusted_shop",
            "action": "allow",
            "payments": 40,
            "per_day": 8.0,
            "label_frauds": 0,
            "precision": 0.0,
            "recall": 0.0,
        },
    ]

    picker.set_value("rules/other.toml").run()

    assert list(at.dataframe[-1].value.id) == ["night_online"]
    assert metrics(at)["Decided otherwise"] == "0"
    assert any(c.value.startswith("`rules/other.toml`: run by someone-else") for c in at.caption)


def test_one_backtest_needs_no_picker_and_undefined_shares_are_dashes(fraud_db, dashboard):
    backtest(fraud_db, None, 2, [], counts(0, 5, 0, 0), counts(0, 5, 0, 0), 0)

    at = dashboard(day=DAY)

    assert not at.selectbox
    shown = metrics(at)
    assert (shown["Candidate alerts a day"], shown["Candidate precision"], shown["Pipeline recall"]) == (
        "0",
        "—",
        "—",
    )
    assert any("No rules: the model alone was backtested." in c.value for c in at.caption)


def test_without_backtests_it_says_how_to_run_one(fraud_db, dashboard):
    at = dashboard(day=DAY)

    assert (
        "No backtest has run yet: `fraudctl backtest --from … --to … --rules FILE` records one"
        in "\n".join(i.value for i in at.info)
    )
    assert not [m for m in at.metric if m.label.startswith("Candidate")]


# ---- The lists.


@pytest.fixture
def editor_url(fraud_db):
    """URL of a login role that reads the report and is a member of fraud_list_editor."""
    with login_role(fraud_db, "fraud_report_reader", "fraud_list_editor") as url:
        yield url


@pytest.fixture
def open_as(fraud_db, monkeypatch, listening_address):
    """open_as(url, secrets=None, user=None, address="127.0.0.1") -> AppTest on DAY, the pipeline
    fresh (so that the page's only errors are the lists')."""
    fraud_db.pipeline_run("run-1", minutes_ago=1)

    def open_(
        url: str, secrets: dict | None = None, user: dict | None = None, address: str = "127.0.0.1"
    ) -> AppTest:
        listening_address(address)
        monkeypatch.setenv("FRAUDCTL_DASHBOARD_DATABASE_URL", url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets.update(secrets or {})
        at.user = user if user is not None else {"is_logged_in": False}
        at.query_params["day"] = DAY.isoformat()
        at.run()
        assert not at.exception, at.exception
        return at

    return open_


def entries(fraud_db) -> list[tuple]:
    return fraud_db.execute("""SELECT list, value, added_by, reason, expires_at IS NOT NULL
                               FROM list_entries ORDER BY list, value""")


def changes(fraud_db) -> list[tuple]:
    return fraud_db.execute("SELECT list, value, change, changed_by, reason FROM list_changes ORDER BY id")


def list_tables(at: AppTest):
    """The lists' entries and last changes, as shown."""
    return at.dataframe[-2].value, at.dataframe[-1].value


def editing(at: AppTest) -> bool:
    """Whether any of the lists' forms is offered."""
    return any((w.key or "").startswith("list_") for w in [*at.text_input, *at.button, *at.selectbox])


def submit(at: AppTest, form: str, **fields) -> AppTest:
    for name, value in fields.items():
        widget = (
            at.selectbox(key=f"{form}_{name}")
            if name == "entry"
            else (
                at.number_input(key=f"{form}_{name}")
                if name == "days"
                else at.text_input(key=f"{form}_{name}")
            )
        )
        widget.set_value(value)
    at.button(key=f"{form}_submit").click().run()
    assert not at.exception, at.exception
    return at


def test_a_reader_sees_the_lists_read_only_and_cards_shortened(fraud_db, reader_url, open_as):
    fraud_db.execute(
        "SELECT list_add('blocked_cards', %s, 'fraudctl:ops', 'stolen card', NULL)", (CARD_HASH,)
    )
    fraud_db.execute(
        "SELECT list_add('trusted_merchants', 'fraud_Kilback LLC', 'ops', 'our shop', now() + interval '1 day')"
    )
    fraud_db.execute("SELECT list_add('trusted_merchants', 'fraud_Gone', 'ops', 'was trusted', NULL)")
    fraud_db.execute("SELECT list_remove('trusted_merchants', 'fraud_Gone', 'ops', 'no longer')")

    at = open_as(reader_url)

    role = urlsplit(reader_url).username
    assert any(
        f"Read only: the dashboard's database role {role} is not a member of fraud_list_editor" in c.value
        and f"GRANT fraud_list_editor TO {role};" in c.value
        for c in at.caption
    )
    assert not editing(at)
    shown, changed = list_tables(at)
    assert shown[["list", "value", "added_by", "reason", "expires", "in_force"]].values.tolist()[0] == [
        "blocked_cards",
        "0123456789ab…",
        "fraudctl:ops",
        "stolen card",
        "never",
        True,
    ]
    assert list(shown.value) == ["0123456789ab…", "fraud_Kilback LLC"]
    assert shown.expires.iloc[1] != "never"
    assert [(c.list, c.value, c.change, c.changed_by) for c in changed.itertuples()] == [
        ("trusted_merchants", "fraud_Gone", "remove", "ops"),
        ("trusted_merchants", "fraud_Gone", "add", "ops"),
        ("trusted_merchants", "fraud_Kilback LLC", "add", "ops"),
        ("blocked_cards", "0123456789ab…", "add", "fraudctl:ops"),
    ]
    assert list(changed.expires)[0] == "" and list(changed.expires)[1:] != ["never"] * 3
    assert list(changed.expires)[1] == list(changed.expires)[3] == "never"
    assert CARD_HASH[:13] not in everything_shown(at), "a card's hash is shown shortened only"


def test_an_editor_adds_and_removes_a_merchant(fraud_db, editor_url, open_as):
    at = open_as(editor_url)
    assert any(f"recorded as made by {LOCAL_AUTHOR}" in c.value for c in at.caption)
    assert [i.value for i in at.info if "list" in i.value] == [
        "No list has an entry.",
        "No list was ever changed.",
    ]

    submit(
        at,
        "list_add_value",
        list_name="trusted_merchants",
        value="fraud_Kilback LLC",
        reason="our own shop",
        days=30,
    )

    assert [s.value for s in at.success] == [
        "Added fraud_Kilback LLC to trusted_merchants, expiring in 30 days."
    ]
    assert entries(fraud_db) == [
        ("trusted_merchants", "fraud_Kilback LLC", LOCAL_AUTHOR, "our own shop", True)
    ]
    assert changes(fraud_db) == [
        ("trusted_merchants", "fraud_Kilback LLC", "add", LOCAL_AUTHOR, "our own shop")
    ]
    expiry = fraud_db.execute("SELECT expires_at - now() FROM list_entries")[0][0]
    assert dt.timedelta(days=29, hours=23) < expiry <= dt.timedelta(days=30)
    shown, changed = list_tables(at)  # drawn again after the change: the new entry is there
    assert list(shown.value) == ["fraud_Kilback LLC"] and list(changed.change) == ["add"]
    assert at.text_input(key="list_add_value_value").value == "", "the form is emptied but for the list"
    assert at.text_input(key="list_add_value_list_name").value == "trusted_merchants"

    submit(at, "list_remove", entry=("trusted_merchants", "fraud_Kilback LLC"), reason="sold to others")

    assert [s.value for s in at.success] == ["Removed fraud_Kilback LLC from trusted_merchants."]
    assert entries(fraud_db) == []
    assert changes(fraud_db)[1:] == [
        ("trusted_merchants", "fraud_Kilback LLC", "remove", LOCAL_AUTHOR, "sold to others")
    ]
    assert [i.value for i in at.info if "list" in i.value] == ["No list has an entry."]


def test_a_card_number_in_clear_is_refused_by_the_database_and_nothing_written(fraud_db, editor_url, open_as):
    at = open_as(editor_url)

    submit(at, "list_add_value", list_name="blocked_cards", value="4111111111111111", reason="stolen")

    assert [e.value for e in at.error] == [
        "The database refused the change: the value holds a card number in clear: add a card by its hash "
        "(fraudctl lists add --card-stdin). Nothing was changed."
    ]
    assert not at.success
    assert entries(fraud_db) == [] and changes(fraud_db) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"list_name": "Blocked-Cards", "value": "x", "reason": "why"},
            'violates check constraint "list_entries_list_check". A list\'s name is lowercase letters',
        ),
        (
            {"list_name": "trusted_merchants", "value": "fraud_X", "reason": " "},
            "Give a reason. Nothing was changed.",
        ),
        (
            {"list_name": "trusted_merchants", "value": "  ", "reason": "why"},
            "Give the value. Nothing was changed.",
        ),
    ],
    ids=["list-name", "no-reason", "blank-value"],
)
def test_refused_additions_write_nothing(fraud_db, editor_url, open_as, fields, message):
    at = open_as(editor_url)

    submit(at, "list_add_value", **fields)

    assert len(at.error) == 1 and message in at.error[0].value, at.error
    assert entries(fraud_db) == [] and changes(fraud_db) == []


def test_an_editor_adds_the_card_of_a_stored_payment(fraud_db, editor_url, open_as):
    fraud_db.payment("t-stolen", dt.datetime(2026, 3, 9, 14, tzinfo=UTC), probability=0.95, last4="1111")
    fraud_db.execute("UPDATE payments_scored SET cc_hash = %s WHERE trans_num = 't-stolen'", (CARD_HASH,))
    at = open_as(editor_url)

    submit(at, "list_add_card", trans_num="no-such-payment", reason="confirmed fraud")
    assert [e.value for e in at.error] == ["No stored payment has this transaction id. Nothing was changed."]
    assert entries(fraud_db) == []

    submit(at, "list_add_card", trans_num="t-stolen", reason="confirmed fraud")

    assert [s.value for s in at.success] == ["Added the card of payment t-stolen to blocked_cards."]
    assert entries(fraud_db) == [("blocked_cards", CARD_HASH, LOCAL_AUTHOR, "confirmed fraud", False)]
    assert changes(fraud_db) == [("blocked_cards", CARD_HASH, "add", LOCAL_AUTHOR, "confirmed fraud")]
    assert list(list_tables(at)[0].value) == ["0123456789ab…"]
    assert CARD_HASH[:13] not in everything_shown(at)


def test_a_logged_in_user_edits_as_themselves(fraud_db, editor_url, open_as):
    at = open_as(editor_url, secrets=AUTH, user=ANALYST, address="0.0.0.0")
    assert any("recorded as made by analyst@example.com" in c.value for c in at.caption)

    submit(at, "list_add_value", list_name="trusted_merchants", value="fraud_Shop", reason="ours")

    assert changes(fraud_db) == [("trusted_merchants", "fraud_Shop", "add", "analyst@example.com", "ours")]


def test_on_loopback_with_a_login_configured_editing_needs_the_login(fraud_db, editor_url, open_as):
    at = open_as(editor_url, secrets=AUTH)

    assert any(c.value.startswith("Read only: log in to change the lists") for c in at.caption)
    assert not editing(at)


def test_a_role_that_lost_the_membership_since_the_page_was_drawn_writes_nothing(
    fraud_db, editor_url, open_as
):
    at = open_as(editor_url)
    fraud_db.execute(f'REVOKE fraud_list_editor FROM "{urlsplit(editor_url).username}"')

    submit(at, "list_add_value", list_name="trusted_merchants", value="fraud_Shop", reason="ours")

    assert [e.value for e in at.error] == [
        "The dashboard's database role may no longer change the lists (not a member of fraud_list_editor). "
        "Nothing was changed."
    ]
    assert entries(fraud_db) == [] and changes(fraud_db) == []
    assert not editing(at), "the page is read-only from then on"


def test_a_login_without_an_email_cannot_edit(fraud_db, editor_url, open_as):
    at = open_as(editor_url, secrets=AUTH, user={"is_logged_in": True, "name": "No Email"}, address="0.0.0.0")

    assert any(c.value.startswith("Read only: your login gives no email") for c in at.caption)
    assert not editing(at)
