"""fraudctl morning report: one business day's payments and frauds, read from fraud_db.

Reads only what the role fraud_report_reader may read (migrations/V5__report_reader.sql): the
report functions for a day and the freshness view, and the analysts' verdicts through the views of
migrations/V11__verdicts.sql. Opened with `?verdict=TOKEN` (an alert email's verdict link,
docs/verdict-links.md), it is the verdict page instead: it verifies the token with
FRAUDCTL_VERDICT_KEY, shows the payment and records the proposed verdict only when the analyst
confirms, through record_alert_verdict (the one thing the role may write through). Anywhere but
on loopback it shows data only to a user logged in with Streamlit's login (OpenID Connect). Run
with `dashboard/run.sh`.
"""

import contextlib
import dataclasses
import datetime as dt
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
UTC = dt.timezone.utc
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
    return st.connection("fraud_db", type="sql", url=url, connect_args=connect_args,
                         poolclass=sqlalchemy.pool.NullPool,
                         execution_options={"postgresql_readonly": True})


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
            raise SetupError(f"fraud_db at {url} lacks the report's views or functions ({cause}): "
                             "run `fraudctl migrate` against it.") from e
        if isinstance(e.orig, psycopg.errors.InsufficientPrivilege):
            raise SetupError(f"The role in {DATABASE_URL_VAR} may not read the report ({cause}): "
                             "make it a member of fraud_report_reader (see dashboard/README.md).") from e
        raise


def execute(sql: str, *, write: bool = False, **params) -> pd.DataFrame:
    """One statement now, its connection closed at once; committed when it writes."""
    with setup_errors(), db().connect() as conn:
        conn.execution_options(postgresql_readonly=not write)
        rows = pd.read_sql(sqlalchemy.text(sql), conn, params=params)
        conn.commit()
    return rows


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
        encoding = [alt.X(x, title=None, sort=sort, axis=alt.Axis(labelAngle=0)), alt.Y(y, title=None, axis=counts)]
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
        who = ("the live path (alerts within seconds)" if fresh.capturing == "live path"
               else "the every-minute DAG (the live path is not running: alerts within a minute)")
        st.caption(f":material/check_circle: Data is fresh: last successful run {run}; last payment: "
                   f"{payment}. Capturing: {who}.")


def show_headline(summary) -> None:
    payments, frauds = int(summary.payments), int(summary.predicted_frauds)
    columns = st.columns(6)
    columns[0].metric("Payments", f"{payments:,}", border=True, help=f"Total {money(summary.amount)}")
    columns[1].metric("Predicted frauds", f"{frauds:,}", border=True)
    columns[2].metric("Fraud rate", f"{summary.fraud_rate:.2%}" if payments else "—", border=True,
                      help="Predicted frauds per payment")
    columns[3].metric(
        "Amount at risk", money(summary.amount_at_risk), border=True,
        help="Sum of the amounts of the predicted frauds",
    )
    columns[4].metric("Alerts sent", f"{int(summary.alerts_sent):,}", border=True)
    latency = query("SELECT * FROM alert_latency_for_day(:day)", day=summary.business_day).iloc[0]
    columns[5].metric(
        "Payment to email", f"{seconds(latency.p50_seconds)} · p95 {seconds(latency.p95_seconds)}"
        if latency.alerts else "—", border=True,
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
    bands = query(
        "SELECT band_order, band, frauds, legit FROM fraud_report_by_amount_band(:day)", day=day
    )

    left, right = st.columns(2)
    left.altair_chart(
        bar_chart(hours, "hour:O", "payments:Q", "Payments by hour (local time)", LEGIT_COLOR),
        width="stretch", height=CHART_HEIGHT,
    )
    right.altair_chart(
        bar_chart(hours, "hour:O", "frauds:Q", "Predicted frauds by hour (local time)", FRAUD_COLOR),
        width="stretch", height=CHART_HEIGHT,
    )

    # Both category charts in the same order (most frauds first), one row per category.
    order = list(categories.category)
    height = max(CHART_HEIGHT, 60 + 22 * len(order))
    left, right = st.columns(2)
    left.altair_chart(
        bar_chart(categories, "category:N", "payments:Q", "Payments by category", LEGIT_COLOR,
                  horizontal=True, sort=order),
        width="stretch", height=height,
    )
    right.altair_chart(
        bar_chart(categories, "category:N", "frauds:Q", "Predicted frauds by category", FRAUD_COLOR,
                  horizontal=True, sort=order, tooltip=["amount_at_risk:Q"]),
        width="stretch", height=height,
    )

    left, right = st.columns(2)
    left.altair_chart(amount_chart(bands), width="stretch", height=CHART_HEIGHT)
    with right:
        st.markdown("**Where the frauds were** (merchant locations)")
        if frauds.empty:
            st.caption("No predicted frauds on this day.")
        else:
            st.map(frauds, latitude="merch_lat", longitude="merch_long", color=FRAUD_COLOR,
                   size=15000, height=CHART_HEIGHT)


def amount_chart(bands: pd.DataFrame) -> alt.Chart:
    """Share of each class's payments per amount band: frauds and legit payments side by side."""
    long = bands.melt(id_vars=["band_order", "band"], value_vars=["frauds", "legit"],
                      var_name="kind", value_name="count")
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
        first.metric("Precision", ratio(tp, tp + fp), border=True,
                     help="Of the labelled payments predicted fraud, the share labelled fraud")
        second.metric("Recall", ratio(tp, tp + fn), border=True,
                      help="Of the payments labelled fraud, the share predicted fraud")
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
        "malformed": ("This is not a valid verdict link",
                      "The link is damaged or incomplete. Open it again from the alert email, whole."),
        "bad_signature": ("This verdict link has been tampered with",
                          "Its signature does not match what it says: it was changed after it was "
                          "sent, or signed with another key."),
        "expired": ("This verdict link has expired", f"It was valid until {detail}."),
        "not_alerted": ("Unknown payment", f"No alert was sent for {payment}: there is nothing "
                        "to give a verdict on."),
        "already_used": ("This verdict link has already been used",
                         f"It recorded a verdict on {payment} {detail}; a link records once."),
        "note_too_long": ("The note is too long", f"Notes hold at most {NOTE_MAX_CHARS} characters."),
        "unknown_token": ("This link was not issued by fraudctl",
                          "No alert email carried it (or its alert was never sent)."),
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
        pd.DataFrame([{
            "Time (local)": stamp(payment.local_time), "Amount": float(payment.amt),
            "Merchant": payment.merchant, "Category": payment.category, "Card": payment.card,
            "Score": float(payment.fraud_probability), "Transaction": payment.trans_num,
        }]),
        hide_index=True,
        column_config={"Amount": st.column_config.NumberColumn(format="dollar"),
                       "Score": st.column_config.NumberColumn(format="%.3f")},
    )
    reasons = payment.reasons if isinstance(payment.reasons, list) else []
    texts = [str(r["text"]) for r in reasons if isinstance(r, dict) and r.get("text")]
    if texts:
        st.markdown("**Why the model flagged it**")
        for text in texts:
            st.text(f"• {text}")
    if isinstance(payment.current_verdict, str):
        st.caption(f"Verdict in force: {VERDICT_LABELS[payment.current_verdict]}, given "
                   f"{stamp(payment.current_verdict_at)} UTC; a new one supersedes it.")
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
    status = execute("SELECT record_alert_verdict(:token, :note) AS status", write=True,
                     token=token, note=note or None)
    return status.status.iloc[0]


def token_use(token: str) -> pd.DataFrame:
    """The verdict this token recorded, if any (never cached: it changes on the click)."""
    digest = hashlib.sha256(token.encode()).digest()
    return execute("SELECT recorded_at FROM v_alert_verdict_history WHERE token_sha256 = :digest",
                   digest=digest)


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
        st.success(f"Recorded: {label} for payment {claim.trans_num}. Thank you.",
                   icon=":material/check_circle:")


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
    first.metric("Analyst-confirmed precision",
                 f"{ratio(confirmed, verdicts)} ({confirmed:,} of {verdicts:,})" if verdicts else "—",
                 border=True, help="Of the alerts with a verdict, the share confirmed fraud (latest verdicts)")
    second.metric("Verdicts pending", f"{int(f.pending):,}", border=True,
                  help=f"Alerts sent without a verdict, of {int(f.alerts_sent):,}")
    third.metric("Median time to verdict", duration(f.median_seconds_to_verdict), border=True,
                 help="From the alert's sending to its first verdict")
    alerts = query(
        """SELECT p.local_time, p.card, p.merchant, p.amt::float8 AS amt, p.fraud_probability,
                  o.alerted_at AT TIME ZONE business_time_zone() AS alerted_at, o.verdict,
                  o.verdict_at AT TIME ZONE business_time_zone() AS verdict_at, o.trans_num
           FROM v_alert_verdict_outcomes o JOIN v_verdict_payments p USING (trans_num)
           WHERE o.business_day = :day ORDER BY p.local_time, o.trans_num""",
        day=day,
    )
    alerts["verdict"] = alerts.verdict.map(VERDICT_LABELS).fillna("pending")
    alerts["verdict_at"] = pd.to_datetime(alerts.verdict_at).dt.strftime("%Y-%m-%d %H:%M").fillna("—")  # pending: no "None"
    st.dataframe(alerts, hide_index=True, column_config={
        "local_time": st.column_config.DatetimeColumn("Local time", format="YYYY-MM-DD HH:mm:ss"),
        "amt": st.column_config.NumberColumn("Amount", format="dollar"),
        "fraud_probability": st.column_config.NumberColumn("Probability", format="%.3f"),
        "alerted_at": st.column_config.DatetimeColumn("Alerted", format="YYYY-MM-DD HH:mm"),
        "verdict_at": st.column_config.TextColumn("Verdict given"),
    })


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
            "dashboard/README.md, \"Who can see it\"."
        )
    return bool(st.user.get("is_logged_in"))


def show_login() -> None:
    st.title(":material/lock: Fraud report")
    st.info("Log in to see the fraud report.", icon=":material/lock:")
    if st.query_params.get(VERDICT_PARAM) is not None:
        st.caption("Then open the verdict link from the alert email again: logging in returns to the home page.")
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
    defaults = query("SELECT business_yesterday() AS yesterday, business_time_zone() AS time_zone").iloc[0]

    title, picker = st.columns([3, 1], vertical_alignment="bottom")
    title.title(":material/credit_card: Morning fraud report")
    day = picker.date_input(
        "Business day", value=defaults.yesterday, key="day", bind="query-params",
        help=f"A day in the business time zone, {defaults.time_zone}; yesterday by default.",
    )
    st.caption(f"All payments of {day:%A %d %B %Y} in {defaults.time_zone}, scored by the fraud model.")
    show_freshness()

    summary = query("SELECT * FROM fraud_report_summary(:day)", day=day).iloc[0]
    show_headline(summary)
    if not summary.payments:
        st.info(f"No payments on {day.isoformat()} ({defaults.time_zone}).", icon=":material/info:")
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
