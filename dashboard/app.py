"""fraudctl morning report: one business day's payments and frauds, read from fraud_db.

Reads only what the role fraud_report_reader may read (migrations/V5__report_reader.sql): the
report functions for a day and the freshness view, and the analysts' verdicts through the views of
migrations/V11__verdicts.sql. Opened with `?verdict=TOKEN` (an alert email's verdict link,
docs/verdict-links.md), it is the verdict page instead: it verifies the token with
FRAUDCTL_VERDICT_KEY, shows the payment and records the proposed verdict only when the analyst
confirms, through record_alert_verdict (the one thing the role may write through). Under the
day's report, the detection controls: the latest backtest of each rules file (backtest_runs) and
the rules' lists (list_entries, list_changes), changed here through list_add, list_add_card_of and
list_remove when the role is a member of fraud_list_editor and the user is identified. Anywhere
but on loopback it shows data only to a user logged in with Streamlit's login (OpenID Connect).
Run with `dashboard/run.sh`.
"""

import contextlib
import dataclasses
import datetime as dt
import getpass
import hashlib
import hmac
import math
import os
import re

import altair as alt
import pandas as pd
import psycopg
import psycopg.conninfo
import sqlalchemy
import streamlit as st

DATABASE_URL_VAR = "FRAUDCTL_DASHBOARD_DATABASE_URL"
STALE_MINUTES_VAR = "FRAUDCTL_DASHBOARD_STALE_MINUTES"
DEFAULT_STALE_MINUTES = 10
FRAUD_COLOR = "#d62728"
LEGIT_COLOR = "#4c78a8"
CHART_HEIGHT = 300
UTC = dt.UTC
CACHE_SECONDS = 60
# The local stack's addresses: there, whoever can open the page has a shell on the machine.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

VERDICT_KEY_VAR = "FRAUDCTL_VERDICT_KEY"
VERDICT_PARAM = "verdict"
PAYMENT_PARAM = "payment"  # ?payment=TRANS_NUM: an alerted payment's page (the alert emails link it)
MIN_VERDICT_KEY_BYTES = 32
NOTE_MAX_CHARS = 500
VERDICT_LABELS = {"fraud": "Confirmed fraud", "not_fraud": "Not fraud"}
# docs/verdict-links.md: v1.TRANS_NUM.VERDICT.EXPIRES.SIGNATURE
TOKEN_FORM = re.compile(r"v1\.([A-Za-z0-9_-]{1,64})\.(fraud|not_fraud)\.([1-9][0-9]{0,9})\.([0-9a-f]{64})")

CHALLENGER_PERIODS = {"This day": 1, "The 7 days to this day": 7}
CARD_HASH = re.compile(r"[0-9a-f]{64}")  # a card's keyed hash: what a card entry of a list holds
CARD_HASH_SHOWN = 12  # hex digits of it on screen: too few to read as a card number
LIST_CHANGES_SHOWN = 50
MAX_EXPIRY_DAYS = 3650


class SetupError(Exception):
    """Something the person running the dashboard must fix; the message says what."""


def redact(url: str) -> str:
    """The URL (or key=value conninfo) with its password hidden, for messages."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def database_url() -> str:
    url = os.environ.get(DATABASE_URL_VAR, "").strip()
    if not url:
        raise SetupError(
            f"{DATABASE_URL_VAR} is not set. Set it to the PostgreSQL URL of fraud_db for a login "
            "role that is a member of fraud_report_reader, e.g. "
            "postgres://fraud_dashboard:PASSWORD@127.0.0.1:55432/fraud_db (see dashboard/README.md)."
        )
    return url


def stale_minutes() -> float:
    value = os.environ.get(STALE_MINUTES_VAR, str(DEFAULT_STALE_MINUTES))
    try:
        minutes = float(value)
    except ValueError:
        minutes = 0
    if not minutes > 0:  # also refuses NaN
        raise SetupError(f"{STALE_MINUTES_VAR}={value!r} is not a positive number of minutes.")
    return minutes


def engine_url(url: str) -> tuple[str, dict]:
    """SQLAlchemy's URL for psycopg 3 and the driver's arguments, from a postgres:// URL or a
    libpq conninfo (key=value ...)."""
    connect_args = {"connect_timeout": 5, "application_name": "fraudctl-dashboard"}
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}", connect_args
    return "postgresql+psycopg://", {**connect_args, **psycopg.conninfo.conninfo_to_dict(url)}


def db():
    """fraud_db through st.connection (one per URL): a connection per statement, as the page makes
    few (no pool holding sessions across a database restart), each in a read-only transaction
    unless it writes (execute)."""
    url, connect_args = engine_url(database_url())
    return st.connection(
        "fraud_db",
        type="sql",
        url=url,
        connect_args=connect_args,
        poolclass=sqlalchemy.pool.NullPool,
        execution_options={"postgresql_readonly": True},
    )


@contextlib.contextmanager
def setup_errors():
    """The database's failures as SetupErrors that say what to fix."""
    try:
        yield
    except sqlalchemy.exc.DBAPIError as e:
        url, cause = redact(database_url()), str(e.orig).strip()
        if isinstance(e.orig, psycopg.OperationalError):
            raise SetupError(f"Cannot reach fraud_db at {url} ({DATABASE_URL_VAR}): {cause}") from e
        if isinstance(e.orig, (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable)):
            raise SetupError(
                f"fraud_db at {url} lacks the report's views or functions ({cause}): "
                "run `fraudctl migrate` against it."
            ) from e
        if isinstance(e.orig, psycopg.errors.InsufficientPrivilege):
            raise SetupError(
                f"The role in {DATABASE_URL_VAR} may not read the report ({cause}): "
                "make it a member of fraud_report_reader (see dashboard/README.md)."
            ) from e
        raise


def execute(sql: str, *, write: bool = False, **params) -> pd.DataFrame:
    """One statement now, its connection closed at once; committed when it writes."""
    with setup_errors(), db().connect() as conn:
        conn.execution_options(postgresql_readonly=not write)
        rows = read_sql(conn, sql, params)
        conn.commit()
    return rows


def read_sql(conn, sql: str, params: dict) -> pd.DataFrame:
    """pandas' read_sql, failing with SQLAlchemy's own error (pandas 3 wraps it in its
    DatabaseError), so that setup_errors() and the lists' forms see the database's."""
    try:
        return pd.read_sql(sqlalchemy.text(sql), conn, params=params)
    except pd.errors.DatabaseError as e:
        if isinstance(e.__cause__, sqlalchemy.exc.DBAPIError):
            raise e.__cause__ from None
        raise


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def cached_read(database: str, sql: str, params: dict) -> pd.DataFrame:
    """execute()'s rows, kept CACHE_SECONDS for each database (its URL is part of the key)."""
    return execute(sql, **params)


def query(sql: str, **params) -> pd.DataFrame:
    """A read-only query, cached: what the report pages read."""
    return cached_read(database_url(), sql, params)


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.1%}" if denominator else "—"


def bar_chart(data, x, y, title, color, horizontal=False, sort=None, tooltip=()):
    """A plain bar chart of counts: categories on x (or on y when horizontal), counts on the other axis."""
    counts = alt.Axis(tickMinStep=1, format=",d")
    if horizontal:
        names = alt.Axis(labelOverlap=False, labelLimit=160)
        encoding = [alt.Y(x, title=None, sort=sort, axis=names), alt.X(y, title=None, axis=counts)]
    else:
        encoding = [
            alt.X(x, title=None, sort=sort, axis=alt.Axis(labelAngle=0)),
            alt.Y(y, title=None, axis=counts),
        ]
    return alt.Chart(data, title=title).mark_bar(color=color).encode(*encoding, tooltip=[x, y, *tooltip])


def show_freshness() -> None:
    """One line under the title; an error when the pipeline has stopped or never ran."""
    fresh = query(
        """SELECT last_run_id,
                  to_char(last_run_at AT TIME ZONE business_time_zone(), 'YYYY-MM-DD HH24:MI') AS last_run,
                  (extract(epoch FROM checked_at - last_run_at) / 60)::float8 AS age_minutes,
                  to_char(last_payment_at AT TIME ZONE business_time_zone(), 'YYYY-MM-DD HH24:MI') AS last_payment,
                  capturing
           FROM v_pipeline_freshness""",
    ).iloc[0]
    limit = stale_minutes()
    if pd.isna(fresh.last_run_id):
        st.error(
            "The pipeline has never run: no run has loaded payments (pipeline_runs records no load "
            "stage). Check the Airflow DAG fraud_pipeline.",
            icon=":material/error:",
        )
        return
    run = f"{fresh.last_run_id}, at {fresh.last_run} ({fresh.age_minutes:,.0f} min ago)"
    payment = "none yet" if pd.isna(fresh.last_payment) else fresh.last_payment
    if fresh.age_minutes > limit:
        st.error(
            f"The pipeline has stopped: its last successful run was {run}, more than {limit:g} "
            f"minutes ago ({STALE_MINUTES_VAR}); last payment: {payment}. Figures may be incomplete: "
            "check the Airflow DAG fraud_pipeline.",
            icon=":material/error:",
        )
    else:
        who = (
            "the live path (alerts within seconds)"
            if fresh.capturing == "live path"
            else "the every-minute DAG (the live path is not running: alerts within a minute)"
        )
        st.caption(
            f":material/check_circle: Data is fresh: last successful run {run}; last payment: "
            f"{payment}. Capturing: {who}."
        )


def show_headline(summary) -> None:
    payments, frauds = int(summary.payments), int(summary.predicted_frauds)
    columns = st.columns(6)
    columns[0].metric("Payments", f"{payments:,}", border=True, help=f"Total {money(summary.amount)}")
    columns[1].metric("Predicted frauds", f"{frauds:,}", border=True)
    columns[2].metric(
        "Fraud rate",
        f"{summary.fraud_rate:.2%}" if payments else "—",
        border=True,
        help="Predicted frauds per payment",
    )
    columns[3].metric(
        "Amount at risk",
        money(summary.amount_at_risk),
        border=True,
        help="Sum of the amounts of the predicted frauds",
    )
    columns[4].metric("Alerts sent", f"{int(summary.alerts_sent):,}", border=True)
    latency = query("SELECT * FROM alert_latency_for_day(:day)", day=summary.business_day).iloc[0]
    columns[5].metric(
        "Payment to email",
        f"{seconds(latency.p50_seconds)} · p95 {seconds(latency.p95_seconds)}" if latency.alerts else "—",
        border=True,
        help=f"From each payment to the SMTP server's acceptance of its alert: median, then 95th "
        f"percentile, over the day's {int(latency.alerts):,} alerts sent",
    )


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else duration(value)


def show_charts(day: dt.date, frauds: pd.DataFrame) -> None:
    hours = query("SELECT hour, payments, frauds FROM fraud_report_by_hour(:day)", day=day)
    categories = query(
        "SELECT category, payments, frauds, amount_at_risk::float8 AS amount_at_risk "
        "FROM fraud_report_by_category(:day)",
        day=day,
    )
    bands = query("SELECT band_order, band, frauds, legit FROM fraud_report_by_amount_band(:day)", day=day)

    left, right = st.columns(2)
    left.altair_chart(
        bar_chart(hours, "hour:O", "payments:Q", "Payments by hour (local time)", LEGIT_COLOR),
        width="stretch",
        height=CHART_HEIGHT,
    )
    right.altair_chart(
        bar_chart(hours, "hour:O", "frauds:Q", "Predicted frauds by hour (local time)", FRAUD_COLOR),
        width="stretch",
        height=CHART_HEIGHT,
    )

    # Both category charts in the same order (most frauds first), one row per category.
    order = list(categories.category)
    height = max(CHART_HEIGHT, 60 + 22 * len(order))
    left, right = st.columns(2)
    left.altair_chart(
        bar_chart(
            categories,
            "category:N",
            "payments:Q",
            "Payments by category",
            LEGIT_COLOR,
            horizontal=True,
            sort=order,
        ),
        width="stretch",
        height=height,
    )
    right.altair_chart(
        bar_chart(
            categories,
            "category:N",
            "frauds:Q",
            "Predicted frauds by category",
            FRAUD_COLOR,
            horizontal=True,
            sort=order,
            tooltip=["amount_at_risk:Q"],
        ),
        width="stretch",
        height=height,
    )

    left, right = st.columns(2)
    left.altair_chart(amount_chart(bands), width="stretch", height=CHART_HEIGHT)
    with right:
        st.markdown("**Where the frauds were** (merchant locations)")
        if frauds.empty:
            st.caption("No predicted frauds on this day.")
        else:
            st.map(
                frauds,
                latitude="merch_lat",
                longitude="merch_long",
                color=FRAUD_COLOR,
                size=15000,
                height=CHART_HEIGHT,
            )


def amount_chart(bands: pd.DataFrame) -> alt.Chart:
    """Share of each class's payments per amount band: frauds and legit payments side by side."""
    long = bands.melt(
        id_vars=["band_order", "band"], value_vars=["frauds", "legit"], var_name="kind", value_name="count"
    )
    long["kind"] = long.kind.map({"frauds": "Predicted fraud", "legit": "Legitimate"})
    totals = long.groupby("kind")["count"].transform("sum")
    long["share"] = (long["count"] / totals.where(totals > 0)).fillna(0)
    colors = alt.Scale(domain=["Legitimate", "Predicted fraud"], range=[LEGIT_COLOR, FRAUD_COLOR])
    return (
        alt.Chart(long, title="Amount distribution: share of each kind's payments")
        .mark_bar()
        .encode(
            alt.X("band:N", title=None, sort=list(bands.band), axis=alt.Axis(labelAngle=0)),
            alt.Y("share:Q", title=None, axis=alt.Axis(format="%")),
            alt.XOffset("kind:N"),
            alt.Color("kind:N", title=None, scale=colors, legend=alt.Legend(orient="top")),
            tooltip=["band:N", "kind:N", "count:Q", alt.Tooltip("share:Q", format=".1%")],
        )
    )


def show_frauds(day: dt.date, frauds: pd.DataFrame) -> None:
    st.subheader("Predicted frauds", divider="gray")
    if frauds.empty:
        st.info("No predicted frauds on this day.")
        return
    left, right = st.columns([2, 1])
    categories = left.multiselect("Category", sorted(frauds.category.unique()), placeholder="All categories")
    min_probability = right.slider("Minimum fraud probability", 0.0, 1.0, 0.0, 0.05)
    shown = frauds[frauds.fraud_probability >= min_probability]
    if categories:
        shown = shown[shown.category.isin(categories)]
    shown = shown.drop(columns=["merch_lat", "merch_long"])
    st.dataframe(
        shown,
        hide_index=True,
        column_config={
            "local_time": st.column_config.DatetimeColumn("Local time", format="YYYY-MM-DD HH:mm:ss"),
            "card": "Card",
            "merchant": "Merchant",
            "category": "Category",
            "amt": st.column_config.NumberColumn("Amount", format="dollar"),
            "city": "City",
            "state": "State",
            "fraud_probability": st.column_config.ProgressColumn(
                "Probability", min_value=0.0, max_value=1.0, format="%.3f"
            ),
            "why": st.column_config.TextColumn("Why it fired", help="The model's top reasons (TreeSHAP)"),
            "is_fraud_label": "Labelled fraud",
            "alert_status": "Alert",
            "model_version": "Model",
            "trans_num": "Transaction",
        },
    )
    st.download_button(
        f"Download {len(shown):,} frauds as CSV",
        shown.to_csv(index=False),
        file_name=f"frauds-{day.isoformat()}.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )


def show_model_performance(summary) -> None:
    st.subheader("How the model did", divider="gray")
    labelled = int(summary.labelled_payments)
    if not labelled:
        st.info("None of this day's payments has a label yet: precision and recall need labels.")
        return
    tp, fp = int(summary.true_positives), int(summary.false_positives)
    fn, tn = int(summary.false_negatives), int(summary.true_negatives)
    metrics, confusion = st.columns([1, 1])
    with metrics:
        first, second, third = st.columns(3)
        first.metric(
            "Precision",
            ratio(tp, tp + fp),
            border=True,
            help="Of the labelled payments predicted fraud, the share labelled fraud",
        )
        second.metric(
            "Recall",
            ratio(tp, tp + fn),
            border=True,
            help="Of the payments labelled fraud, the share predicted fraud",
        )
        third.metric("Labelled payments", f"{labelled:,}", border=True)
    counts = st.column_config.NumberColumn(format="localized")
    confusion.dataframe(
        pd.DataFrame(
            {"Predicted fraud": [tp, fp], "Predicted legitimate": [fn, tn]},
            index=["Labelled fraud", "Labelled legitimate"],
        ),
        width="stretch",
        column_config={"Predicted fraud": counts, "Predicted legitimate": counts},
    )


def metric_row(figures: list[tuple[str, str, str]]) -> None:
    """Metrics side by side, one column each: (label, value, help)."""
    for column, (label, value, help_text) in zip(st.columns(len(figures)), figures):
        column.metric(label, value, border=True, help=help_text or None)


def compared_rows(figures: dict[str, str], sides: list[tuple[str, dict[str, str], str]]) -> None:
    """The same figures of two sides, a row of metrics each, one figure per column (so each is
    right above the other's): figures {name: help}, sides [(title, {name: value}, whose)]."""
    for title, values, whose in sides:
        metric_row(
            [
                (f"{title} {name}", values[name], f"{help_text}: {whose}")
                for name, help_text in figures.items()
            ]
        )


def per_day(count: float) -> str:
    return f"{count:,.1f}".removesuffix(".0")


def share(value) -> str:
    """A share computed elsewhere (a backtest's JSON): "—" when undefined (null)."""
    return "—" if value is None or pd.isna(value) else f"{value:.1%}"


def show_challenger(day: dt.date) -> None:
    """The champion against each challenger model that scored the period's payments in shadow."""
    st.subheader("Champion and challenger", divider="gray")
    period = st.radio(
        "Period",
        list(CHALLENGER_PERIODS),
        horizontal=True,
        key="challenger_period",
        label_visibility="collapsed",
    )
    first_day = day - dt.timedelta(days=CHALLENGER_PERIODS[period] - 1)
    rows = query("SELECT * FROM challenger_comparison(:from_day, :to_day)", from_day=first_day, to_day=day)
    if rows.empty:
        st.info(
            "No challenger model scored payments in this period. To score one in shadow (stored "
            "and compared, never alerting), set the Airflow Variable `fraudctl_challenger_model_dir` "
            'to its model directory: docs/rules.md, "A challenger model".',
            icon=":material/info:",
        )
        return
    for row in rows.itertuples():
        show_challenger_row(row)


MODEL_FIGURES = {
    "alerts a day": "Payments predicted fraud, a day of the period",
    "precision": "Of the labelled payments predicted fraud, the share labelled fraud",
    "recall": "Of the payments labelled fraud, the share predicted fraud",
}


def model_figures(c, model: str) -> dict[str, str]:
    """A model's MODEL_FIGURES from challenger_comparison's row (model: champion or challenger)."""
    tp, fp, fn = (getattr(c, f"{model}_{count}") for count in ("true_pos", "false_pos", "false_neg"))
    return {
        "alerts a day": per_day(getattr(c, f"{model}_alerts") / c.days),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }


def show_challenger_row(c) -> None:
    """One challenger version: alerts, precision and recall of each model, how often they agree."""
    champions = ", ".join(c.champion_model_versions)
    st.markdown(
        f"**Challenger `{c.challenger_model_version}`** against the champion `{champions}`: "
        f"{int(c.payments):,} payments over {int(c.days)} day{'s' if c.days > 1 else ''}, "
        f"{int(c.labelled):,} of them labelled."
    )
    compared_rows(
        MODEL_FIGURES,
        [
            ("Champion", model_figures(c, "champion"), "the model in force, at its threshold, before rules"),
            (
                "Challenger",
                model_figures(c, "challenger"),
                "the challenger, at its own threshold (never alerting)",
            ),
        ],
    )
    confirmed = int(c.confirmed_frauds)
    metric_row(
        [
            ("Agreement", f"{c.agreement:.1%}", "Payments both models predicted the same way"),
            ("Alerts by both", f"{int(c.both_alert):,}", ""),
            ("Only the champion", f"{int(c.champion_alerts - c.both_alert):,}", ""),
            ("Only the challenger", f"{int(c.challenger_alerts - c.both_alert):,}", ""),
            (
                "Confirmed frauds caught",
                f"{int(c.confirmed_caught_by_challenger):,} of {confirmed:,}" if confirmed else "—",
                "Of the champion's alerts analysts confirmed as fraud, those the challenger predicted fraud too",
            ),
        ]
    )


# ---- Analysts' verdicts: the verdict page of an alert's link, and the day's verdict figures.


class TokenError(Exception):
    """A verdict token refused: code is "malformed", "bad_signature" or "expired"."""

    def __init__(self, code: str, expires_at: dt.datetime | None = None):
        super().__init__(code)
        self.code = code
        self.expires_at = expires_at


@dataclasses.dataclass(frozen=True)
class Claim:
    trans_num: str
    verdict: str
    expires_at: dt.datetime


def verify_token(key: bytes, token: str, now: dt.datetime) -> Claim:
    """The claim of an authentic, unexpired token (docs/verdict-links.md): its form, then its
    signature (compared in constant time), then its expiry."""
    form = TOKEN_FORM.fullmatch(token)
    if form is None:
        raise TokenError("malformed")
    trans_num, verdict, expires, signature = form.groups()
    signed = token.rpartition(".")[0].encode("ascii")
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise TokenError("bad_signature")
    expires_at = dt.datetime.fromtimestamp(int(expires), UTC)
    if now >= expires_at:
        raise TokenError("expired", expires_at)
    return Claim(trans_num, verdict, expires_at)


def verdict_key() -> bytes:
    key = os.environ.get(VERDICT_KEY_VAR, "").encode()
    if len(key) < MIN_VERDICT_KEY_BYTES:
        raise SetupError(
            f"{VERDICT_KEY_VAR} is {'too short' if key else 'not set'}: the dashboard verifies verdict "
            f"links with the key that signs them (at least {MIN_VERDICT_KEY_BYTES} bytes, the same "
            "value as fraudctl's; docs/verdict-links.md). Nothing was recorded."
        )
    return key


def refusal(code: str, claim: Claim | None = None, detail: str = "") -> tuple[str, str]:
    """(title, explanation) of a verdict the page refuses to record."""
    payment = f"payment {claim.trans_num}" if claim else "this payment"
    pages = {
        "malformed": (
            "This is not a valid verdict link",
            "The link is damaged or incomplete. Open it again from the alert email, whole.",
        ),
        "bad_signature": (
            "This verdict link has been tampered with",
            "Its signature does not match what it says: it was changed after it was "
            "sent, or signed with another key.",
        ),
        "expired": ("This verdict link has expired", f"It was valid until {detail}."),
        "not_alerted": (
            "Unknown payment",
            f"No alert was sent for {payment}: there is nothing to give a verdict on.",
        ),
        "already_used": (
            "This verdict link has already been used",
            f"It recorded a verdict on {payment} {detail}; a link records once.",
        ),
        "note_too_long": ("The note is too long", f"Notes hold at most {NOTE_MAX_CHARS} characters."),
        "unknown_token": (
            "This link was not issued by fraudctl",
            "No alert email carried it (or its alert was never sent).",
        ),
    }
    title, text = pages.get(code, ("The verdict was not recorded", f"The database answered {code!r}."))
    return title, f"{text} Nothing was recorded."


def show_refusal(code: str, claim: Claim | None = None, detail: str = "") -> None:
    title, text = refusal(code, claim, detail)
    st.error(f"**{title}.** {text}", icon=":material/block:")


def stamp(ts) -> str:
    """A time for the page: a naive one as it is (a local time), an aware one in UTC."""
    ts = pd.Timestamp(ts)
    return (ts.tz_convert(UTC) if ts.tzinfo else ts).strftime("%Y-%m-%d %H:%M:%S")


def show_payment(payment, claim: Claim | None = None) -> None:
    """A payment as stored (card masked), the model's reasons, the verdict in force (and, for a
    verdict link, until when the link is valid)."""
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Time (local)": stamp(payment.local_time),
                    "Amount": float(payment.amt),
                    "Merchant": payment.merchant,
                    "Category": payment.category,
                    "Card": payment.card,
                    "Score": float(payment.fraud_probability),
                    "Transaction": payment.trans_num,
                }
            ]
        ),
        hide_index=True,
        column_config={
            "Amount": st.column_config.NumberColumn(format="dollar"),
            "Score": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    reasons = payment.reasons if isinstance(payment.reasons, list) else []
    texts = [str(r["text"]) for r in reasons if isinstance(r, dict) and r.get("text")]
    if texts:
        st.markdown("**Why the model flagged it**")
        for text in texts:
            st.text(f"• {text}")
    if isinstance(payment.current_verdict, str):
        st.caption(
            f"Verdict in force: {VERDICT_LABELS[payment.current_verdict]}, given "
            f"{stamp(payment.current_verdict_at)} UTC; a new one supersedes it."
        )
    if claim is not None:
        st.caption(f"The link is valid until {claim.expires_at:%Y-%m-%d %H:%M} UTC.")


def payment_page(trans_num: str) -> None:
    """What an alert's "Open the payment in the dashboard" link opens: the alerted payment, why
    the model flagged it, the verdict in force, a link to its day's report."""
    st.title(":material/receipt_long: Alerted payment")
    found = query("SELECT * FROM v_verdict_payments WHERE trans_num = :trans_num", trans_num=trans_num)
    if found.empty:
        st.warning("No alert was sent for a payment with this transaction id.", icon=":material/search_off:")
        return
    payment = found.iloc[0]
    show_payment(payment)
    if not isinstance(payment.current_verdict, str):
        st.caption("No verdict yet: give it with the links of the alert email.")
    day = pd.Timestamp(payment.local_time).date()
    st.markdown(f"[The report of {day:%A %d %B %Y}](?day={day.isoformat()})")


def record_verdict(token: str, note: str) -> str:
    """Records the token's verdict (record_alert_verdict); its status."""
    status = execute(
        "SELECT record_alert_verdict(:token, :note) AS status", write=True, token=token, note=note or None
    )
    return status.status.iloc[0]


def token_use(token: str) -> pd.DataFrame:
    """The verdict this token recorded, if any (never cached: it changes on the click)."""
    digest = hashlib.sha256(token.encode()).digest()
    return execute(
        "SELECT recorded_at FROM v_alert_verdict_history WHERE token_sha256 = :digest", digest=digest
    )


def verdict_page(token: str) -> None:
    """What an alert's verdict link opens: the payment and the proposed verdict, recorded only
    on the confirming click (a prefetch of the link records nothing)."""
    st.title(":material/gavel: Analyst verdict")
    try:
        claim = verify_token(verdict_key(), token, dt.datetime.now(UTC))
    except TokenError as e:
        detail = f"{e.expires_at:%Y-%m-%d %H:%M} UTC" if e.expires_at else ""
        return show_refusal(e.code, detail=detail)
    found = query("SELECT * FROM v_verdict_payments WHERE trans_num = :trans_num", trans_num=claim.trans_num)
    if found.empty:
        return show_refusal("not_alerted", claim)
    used = token_use(token)
    if not used.empty:
        return show_refusal("already_used", claim, f"at {stamp(used.recorded_at.iloc[0])} UTC")
    label = VERDICT_LABELS[claim.verdict]
    st.subheader(f"Proposed verdict: {label}")
    show_payment(found.iloc[0], claim)
    note = st.text_area("Note (optional)", max_chars=NOTE_MAX_CHARS, key="verdict_note")
    if st.button(f"Confirm: {label}", type="primary", key="confirm_verdict"):
        status = record_verdict(token, note.strip())
        if status != "recorded":
            return show_refusal(status, claim)
        st.cache_data.clear()  # the report's verdict figures change
        st.success(
            f"Recorded: {label} for payment {claim.trans_num}. Thank you.", icon=":material/check_circle:"
        )


def duration(seconds) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def show_verdicts(day: dt.date) -> None:
    """The day's alerts with their analysts' verdicts: the loop from alert to label."""
    st.subheader("Analyst verdicts", divider="gray")
    daily = query("SELECT * FROM v_alert_verdict_daily WHERE business_day = :day", day=day)
    if daily.empty:
        st.info("No alert was sent for this day's payments.")
        return
    f = daily.iloc[0]
    first, second, third = st.columns(3)
    confirmed, verdicts = int(f.confirmed_frauds), int(f.verdicts)
    first.metric(
        "Analyst-confirmed precision",
        f"{ratio(confirmed, verdicts)} ({confirmed:,} of {verdicts:,})" if verdicts else "—",
        border=True,
        help="Of the alerts with a verdict, the share confirmed fraud (latest verdicts)",
    )
    second.metric(
        "Verdicts pending",
        f"{int(f.pending):,}",
        border=True,
        help=f"Alerts sent without a verdict, of {int(f.alerts_sent):,}",
    )
    third.metric(
        "Median time to verdict",
        duration(f.median_seconds_to_verdict),
        border=True,
        help="From the alert's sending to its first verdict",
    )
    alerts = query(
        """SELECT p.local_time, p.card, p.merchant, p.amt::float8 AS amt, p.fraud_probability,
                  o.alerted_at AT TIME ZONE business_time_zone() AS alerted_at, o.verdict,
                  o.verdict_at AT TIME ZONE business_time_zone() AS verdict_at, o.trans_num
           FROM v_alert_verdict_outcomes o JOIN v_verdict_payments p USING (trans_num)
           WHERE o.business_day = :day ORDER BY p.local_time, o.trans_num""",
        day=day,
    )
    alerts["verdict"] = alerts.verdict.map(VERDICT_LABELS).fillna("pending")
    alerts["verdict_at"] = (
        pd.to_datetime(alerts.verdict_at).dt.strftime("%Y-%m-%d %H:%M").fillna("—")
    )  # pending: no "None"
    st.dataframe(
        alerts,
        hide_index=True,
        column_config={
            "local_time": st.column_config.DatetimeColumn("Local time", format="YYYY-MM-DD HH:mm:ss"),
            "amt": st.column_config.NumberColumn("Amount", format="dollar"),
            "fraud_probability": st.column_config.NumberColumn("Probability", format="%.3f"),
            "alerted_at": st.column_config.DatetimeColumn("Alerted", format="YYYY-MM-DD HH:mm"),
            "verdict_at": st.column_config.TextColumn("Verdict given"),
        },
    )


# ---- Detection controls, not tied to a day: the latest backtests of rules files, and the lists.


def show_detection_controls(time_zone: str) -> None:
    st.header("Detection controls", divider="gray")
    st.caption(
        f"Not tied to the day above: what `fraudctl backtest` found for candidate rules, and the "
        f"lists the rules read (docs/rules.md). Times in {time_zone}."
    )
    show_backtest()
    show_lists()


def show_backtest() -> None:
    """The latest backtest of each rules file, the newest first (one at a time)."""
    st.subheader("Latest backtest", divider="gray")
    runs = query(
        """SELECT * FROM (
               SELECT DISTINCT ON (rules_file) rules_file, ran_at, ran_by,
                      to_char(ran_at AT TIME ZONE business_time_zone(), 'YYYY-MM-DD HH24:MI') AS ran_at_local,
                      rule_set, model_version, threshold, from_day, to_day, payments, report
               FROM backtest_runs ORDER BY rules_file, ran_at DESC, id DESC) latest
           ORDER BY ran_at DESC"""
    )
    if runs.empty:
        st.info(
            "No backtest has run yet: `fraudctl backtest --from … --to … --rules FILE` records one "
            '(docs/rules.md, "Backtests").',
            icon=":material/info:",
        )
        return
    names = [f if isinstance(f, str) else "(no rules file: the model alone)" for f in runs.rules_file]
    chosen = 0
    if len(names) > 1:
        chosen = names.index(
            st.selectbox(
                "Rules file",
                names,
                key="backtest_rules_file",
                help="The latest backtest of each rules file, the newest first",
            )
        )
    show_backtest_run(runs.iloc[chosen])


BACKTEST_FIGURES = {  # the report's counts: (key, format, help)
    "alerts a day": ("per_day", per_day, "Payments alerted, a day of the period"),
    "precision": ("precision", share, "Of the alerted payments, the share labelled fraud"),
    "recall": ("recall", share, "Of the payments labelled fraud, the share alerted"),
    "verdict precision": (
        "verdict_precision",
        share,
        "Of the alerted payments with an analyst's verdict, the share confirmed fraud",
    ),
}
BACKTEST_DIFFERENCES = [  # (label, key of the report, help)
    ("Decided otherwise", "differences", "Payments the candidate decides otherwise than the pipeline did"),
    ("Frauds only the candidate alerts", "caught_not_live", "Labelled frauds the pipeline did not alert"),
    (
        "Frauds only the pipeline alerted",
        "missed_live_caught",
        "Labelled frauds the candidate does not alert",
    ),
]


def backtest_figures(counts: dict) -> dict[str, str]:
    return {name: fmt(counts.get(key)) for name, (key, fmt, _) in BACKTEST_FIGURES.items()}


def show_backtest_run(run) -> None:
    """A backtest: who ran it, on what; the candidate's alerts against the pipeline's; per rule."""
    report = run.report
    st.caption(
        f"`{run.rules_file or 'no rules file'}`: run by {run.ran_by} on {run.ran_at_local} over "
        f"{run.from_day} to {run.to_day} ({report.get('days', 0):g} days): {int(run.payments):,} payments "
        f"decided, {report.get('label_frauds', 0):,} labelled frauds among them, "
        f"{report.get('without_inputs', 0):,} without stored inputs (not decided). Model "
        f"`{run.model_version}` at threshold {run.threshold:g}; rule set `{run.rule_set or 'none'}`."
    )
    compared_rows(
        {name: help_text for name, (_, _, help_text) in BACKTEST_FIGURES.items()},
        [
            ("Candidate", backtest_figures(report.get("alerts") or {}), "the candidate rules and model"),
            ("Pipeline", backtest_figures(report.get("live_alerts") or {}), "the pipeline's alerts then"),
        ],
    )
    metric_row(
        [
            (label, f"{report[key]:,}", help_text)
            for label, key, help_text in BACKTEST_DIFFERENCES
            if key in report
        ]
    )
    if report.get("first_differences"):
        st.caption(f"First differences: {', '.join(report['first_differences'])}.")
    columns = ["id", "action", "payments", "per_day", "label_frauds", "precision", "recall"]
    rules = pd.DataFrame(report.get("rules") or [], columns=columns)
    if rules.empty:
        st.caption("No rules: the model alone was backtested.")
        return
    percent = {"format": "percent", "help": "Against the source's labels; empty when undefined"}
    st.dataframe(
        rules,
        hide_index=True,
        column_config={
            "id": "Rule",
            "action": "Action",
            "payments": st.column_config.NumberColumn("Matches", format="localized"),
            "per_day": st.column_config.NumberColumn("A day", format="%.1f"),
            "label_frauds": st.column_config.NumberColumn("Labelled frauds", format="localized"),
            "precision": st.column_config.NumberColumn("Precision", **percent),
            "recall": st.column_config.NumberColumn("Recall", **percent),
        },
    )


def shown_value(value: str) -> str:
    """A list value for the screen: a card's keyed hash shortened (never anything card-like)."""
    return f"{value[:CARD_HASH_SHOWN]}…" if CARD_HASH.fullmatch(value) else value


def show_lists() -> None:
    """Every entry of the rules' lists and their last changes; the forms that change them, to an
    identified user whose database role may."""
    st.subheader("Lists", divider="gray")
    entries = query(
        """SELECT list, value, added_by, added_at AT TIME ZONE business_time_zone() AS added_at, reason,
                  coalesce(to_char(expires_at AT TIME ZONE business_time_zone(), 'YYYY-MM-DD HH24:MI'),
                           'never') AS expires,
                  expires_at IS NULL OR expires_at > now() AS in_force
           FROM list_entries ORDER BY list, value"""
    )
    changes = query(
        """SELECT changed_at AT TIME ZONE business_time_zone() AS changed_at, list, value, change, changed_by,
                  reason, CASE change WHEN 'add' THEN coalesce(to_char(expires_at AT TIME ZONE
                      business_time_zone(), 'YYYY-MM-DD HH24:MI'), 'never') ELSE '' END AS expires
           FROM list_changes ORDER BY changed_at DESC, id DESC LIMIT :shown""",
        shown=LIST_CHANGES_SHOWN,
    )
    author, why = list_editor()
    st.caption(why)
    show_list_table(
        entries,
        "No list has an entry.",
        {
            "added_at": st.column_config.DatetimeColumn("Added", format="YYYY-MM-DD HH:mm"),
            "expires": "Expires",
            "in_force": st.column_config.CheckboxColumn("In force", help="Not expired: the rules read it"),
        },
    )
    st.markdown(f"**Last changes** (the latest {LIST_CHANGES_SHOWN})")
    show_list_table(
        changes,
        "No list was ever changed.",
        {
            "changed_at": st.column_config.DatetimeColumn("Changed", format="YYYY-MM-DD HH:mm"),
            "change": "Change",
            "changed_by": "By",
            "expires": "Expires",
        },
    )
    if author is not None:
        show_list_forms(entries, author)
    outcome = st.session_state.pop("list_outcome", None)  # of a form just submitted (list_change)
    if outcome is not None:
        kind, message = outcome
        getattr(st, kind)(message)


def show_list_table(rows: pd.DataFrame, empty: str, columns: dict) -> None:
    if rows.empty:
        st.info(empty, icon=":material/info:")
        return
    st.dataframe(
        rows.assign(value=rows.value.map(shown_value)),
        hide_index=True,
        column_config={
            "list": "List",
            "value": "Value",
            "added_by": "Added by",
            "reason": "Reason",
            **columns,
        },
    )


def list_editor() -> tuple[str | None, str]:
    """Who changes the lists here, recorded as the changes' author, and a line saying so; None
    and why not when the lists are read-only: the role may not, or the user is not identified."""
    role = query(
        "SELECT current_user AS role, has_function_privilege("
        "'list_add(text,text,text,text,timestamptz)', 'EXECUTE') AS may_edit"
    ).iloc[0]
    if not role.may_edit:
        return None, (
            f"Read only: the dashboard's database role {role.role} is not a member of "
            f"fraud_list_editor. To change the lists here: `GRANT fraud_list_editor TO "
            f"{role.role};` (dashboard/README.md)."
        )
    author = identified_user()
    if author is None and st.user.get("is_logged_in"):
        return None, "Read only: your login gives no email to record as the author of your changes."
    if author is None:
        return None, "Read only: log in to change the lists (every change records who made it)."
    return author, f"Changes you make here are recorded as made by {author}."


def identified_user() -> str | None:
    """A logged-in user's email; on the local stack with no login configured, the account the
    dashboard runs as; else None."""
    if st.user.get("is_logged_in"):
        return st.user.get("email") or None
    if st.get_option("server.address") in LOOPBACK and not login_configured():
        return f"local:{local_account()}"
    return None


def local_account() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (a container's --user)
        return f"uid {os.getuid()}"


LIST_NAME_HELP = (
    "Lowercase letters, digits and _, not starting with a digit (as the rules name it: lists.NAME)"
)


def show_list_forms(entries: pd.DataFrame, author: str) -> None:
    """The three changes, each written by list_change when its form is submitted."""
    add_value, add_card, remove = st.tabs(["Add a value", "Add a payment's card", "Remove an entry"])
    with add_value, st.form("list_add_value"):
        st.text_input(
            "List", key="list_add_value_list_name", placeholder="trusted_merchants", help=LIST_NAME_HELP
        )
        st.text_input(
            "Value",
            key="list_add_value_value",
            max_chars=200,
            help="A merchant, a category, … as the payments hold it. Never a card number: add a "
            "card through one of its payments.",
        )
        list_form_end("list_add_value", "Add the value", author)
    with add_card, st.form("list_add_card"):
        st.text_input("List", "blocked_cards", key="list_add_card_list_name", help=LIST_NAME_HELP)
        st.text_input(
            "Transaction",
            key="list_add_card_trans_num",
            help="The trans_num of a stored payment: its card is added by its keyed hash",
        )
        list_form_end("list_add_card", "Add the payment's card", author)
    with remove:
        if entries.empty:
            st.caption("No entry to remove.")
        else:
            with st.form("list_remove"):
                st.selectbox(
                    "Entry",
                    list(zip(entries.list, entries.value)),
                    key="list_remove_entry",
                    format_func=lambda entry: f"{entry[0]}: {shown_value(entry[1])}",
                )
                list_form_end("list_remove", "Remove the entry", author)


def list_form_end(form: str, submit: str, author: str) -> None:
    """A list form's last fields (the reason; an add's expiry) and its submit button."""
    st.text_input(
        "Reason (required)",
        key=f"{form}_reason",
        max_chars=1000,
        help="Why: kept with the entry and in the lists' history",
    )
    if form != "list_remove":
        st.number_input(
            "Expires in days",
            key=f"{form}_days",
            value=None,
            min_value=1,
            max_value=MAX_EXPIRY_DAYS,
            step=1,
            placeholder="never",
            help="Empty: the entry stays until it is removed",
        )
    st.form_submit_button(
        submit, type="primary", key=f"{form}_submit", on_click=list_change, args=(form, author)
    )


REQUIRED_FIELDS = {  # form: its required fields (key suffix: what to call it)
    "list_add_value": {"list_name": "the list", "value": "the value", "reason": "a reason"},
    "list_add_card": {"list_name": "the list", "trans_num": "the transaction", "reason": "a reason"},
    "list_remove": {"entry": "the entry", "reason": "a reason"},
}
EXPIRY = "now() + CAST(:days AS integer) * interval '1 day'"  # NULL days: no expiry


def list_change(form: str, author: str) -> None:
    """A submitted list form's change, written before the page is drawn again (so that it shows
    the change); what happened is kept for the page to say, and a change's fields are emptied."""
    kind, message = list_outcome(form, author)
    st.session_state["list_outcome"] = (kind, message)
    if kind == "success":
        st.cache_data.clear()  # the lists changed
        for name in ("value", "trans_num", "reason", "days", "entry"):
            st.session_state.pop(f"{form}_{name}", None)


def list_outcome(form: str, author: str) -> tuple[str, str]:
    """The form's change made, or why not: nothing is written when a field is missing or the
    database refuses. (kind: an st function, message)."""
    values = {
        name: strip(st.session_state.get(f"{form}_{name}")) for name in [*REQUIRED_FIELDS[form], "days"]
    }
    missing = [what for name, what in REQUIRED_FIELDS[form].items() if not values[name]]
    if missing:
        return "error", f"Give {' and '.join(missing)}. Nothing was changed."
    try:
        return LIST_CHANGES[form](author=author, **values)
    except sqlalchemy.exc.DBAPIError as e:
        return "error", f"The database refused the change: {refusal_text(e.orig)} Nothing was changed."
    except SetupError as e:
        if not isinstance(getattr(e.__cause__, "orig", None), psycopg.errors.InsufficientPrivilege):
            return "error", str(e)
        st.cache_data.clear()  # the page reads the privilege again: read-only from now
        return "error", (
            "The dashboard's database role may no longer change the lists (not a member "
            "of fraud_list_editor). Nothing was changed."
        )


def strip(value):
    return value.strip() if isinstance(value, str) else value


def refusal_text(error) -> str:
    """The database's own words for a refused change (its primary message, no detail that would
    repeat the values), with the list-name rule for a name the CHECK refuses."""
    message = (getattr(error.diag, "message_primary", None) or str(error)).strip().rstrip(".") + "."
    if isinstance(error, psycopg.errors.CheckViolation) and "list_check" in message:
        message += " A list's name is lowercase letters, digits and _, not starting with a digit."
    return message


def expiring(days) -> str:
    return f", expiring in {days} days" if days else ""


def add_value(*, list_name: str, value: str, reason: str, days, author: str) -> tuple[str, str]:
    execute(
        f"SELECT list_add(:list, :value, :author, :reason, {EXPIRY})",
        write=True,
        list=list_name,
        value=value,
        author=author,
        reason=reason,
        days=days,
    )
    return "success", f"Added {shown_value(value)} to {list_name}{expiring(days)}."


def add_card(*, list_name: str, trans_num: str, reason: str, days, author: str) -> tuple[str, str]:
    added = execute(
        f"SELECT list_add_card_of(:list, :trans_num, :author, :reason, {EXPIRY}) AS added",
        write=True,
        list=list_name,
        trans_num=trans_num,
        author=author,
        reason=reason,
        days=days,
    )
    if not added.added.iloc[0]:
        return "error", "No stored payment has this transaction id. Nothing was changed."
    return "success", f"Added the card of payment {trans_num} to {list_name}{expiring(days)}."


def remove_entry(*, entry: tuple[str, str], reason: str, days, author: str) -> tuple[str, str]:
    list_name, value = entry
    removed = execute(
        "SELECT list_remove(:list, :value, :author, :reason) AS removed",
        write=True,
        list=list_name,
        value=value,
        author=author,
        reason=reason,
    )
    if not removed.removed.iloc[0]:
        return "warning", f"{list_name} no longer held {shown_value(value)}: nothing was changed."
    return "success", f"Removed {shown_value(value)} from {list_name}."


LIST_CHANGES = {"list_add_value": add_value, "list_add_card": add_card, "list_remove": remove_entry}


# ---- Who may see it: anyone on the local stack (loopback only), else a logged-in user.


def login_configured() -> bool:
    """Whether Streamlit's login is set up: an [auth] section in the secrets it reads."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def may_show_data() -> bool:
    """True for the local stack and for a logged-in user; False for a visitor to log in first.
    Listening beyond loopback without a login configured is a SetupError: never silently open."""
    address = st.get_option("server.address")
    if address in LOOPBACK:
        return True
    if not login_configured():
        raise SetupError(
            f"The dashboard listens on {address or 'every interface'} (server.address, "
            "STREAMLIT_SERVER_ADDRESS) and no login is configured, so it shows no data. Add an [auth] "
            "section (OpenID Connect: redirect_uri, cookie_secret, client_id, client_secret, "
            "server_metadata_url) to the secrets file Streamlit reads "
            f"({', '.join(st.get_option('secrets.files'))}), or listen on 127.0.0.1 only; see "
            'dashboard/README.md, "Who can see it".'
        )
    return bool(st.user.get("is_logged_in"))


def show_login() -> None:
    st.title(":material/lock: Fraud report")
    st.info("Log in to see the fraud report.", icon=":material/lock:")
    if st.query_params.get(VERDICT_PARAM) is not None:
        st.caption(
            "Then open the verdict link from the alert email again: logging in returns to the home page."
        )
    st.button("Log in", type="primary", key="login", on_click=st.login)


def show_logout() -> None:
    if st.user.get("is_logged_in"):
        st.sidebar.button(f"Log out {st.user.get('email') or ''}".strip(), key="logout", on_click=st.logout)


def main() -> None:
    token = st.query_params.get(VERDICT_PARAM)
    if token is not None:
        verdict_page(token)
        return
    trans_num = st.query_params.get(PAYMENT_PARAM)
    if trans_num is not None:
        payment_page(trans_num)
        return
    day, time_zone = show_title()
    show_day(day, time_zone)
    show_detection_controls(time_zone)


def show_title() -> tuple[dt.date, str]:
    """The title, the day picker and the freshness line: the business day shown, and its zone."""
    defaults = query("SELECT business_yesterday() AS yesterday, business_time_zone() AS time_zone").iloc[0]

    title, picker = st.columns([3, 1], vertical_alignment="bottom")
    title.title(":material/credit_card: Morning fraud report")
    day = picker.date_input(
        "Business day",
        value=defaults.yesterday,
        key="day",
        bind="query-params",
        help=f"A day in the business time zone, {defaults.time_zone}; yesterday by default.",
    )
    st.caption(f"All payments of {day:%A %d %B %Y} in {defaults.time_zone}, scored by the fraud model.")
    show_freshness()
    return day, defaults.time_zone


def show_day(day: dt.date, time_zone: str) -> None:
    """The business day's report: figures, charts, frauds, verdicts, how the models did."""
    summary = query("SELECT * FROM fraud_report_summary(:day)", day=day).iloc[0]
    show_headline(summary)
    if not summary.payments:
        st.info(f"No payments on {day.isoformat()} ({time_zone}).", icon=":material/info:")
        return

    frauds = query(
        """SELECT local_time, card, merchant, category, amt::float8 AS amt, city, state,
                  fraud_probability, why, is_fraud_label, alert_status, model_version, trans_num,
                  merch_lat, merch_long
           FROM fraud_report_for_day(:day) LEFT JOIN v_payment_reasons USING (trans_num)
           WHERE predicted_fraud ORDER BY local_time, trans_num""",
        day=day,
    )
    show_charts(day, frauds)
    show_frauds(day, frauds)
    show_verdicts(day)
    show_model_performance(summary)
    show_challenger(day)


if __name__ == "__main__":  # as Streamlit runs it; tests import the functions above
    st.set_page_config(page_title="Fraud report", page_icon=":material/credit_card:", layout="wide")
    try:
        if may_show_data():
            show_logout()
            main()
        else:
            show_login()
    except SetupError as e:
        st.error(str(e), icon=":material/error:")
