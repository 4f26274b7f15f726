"""fraudctl morning report: one business day's payments and frauds, read from fraud_db; the page
Streamlit runs (`dashboard/run.sh`).

Reads only what the role fraud_report_reader may read (migrations/V5__report_reader.sql): the
report functions for a day and the freshness view, and the analysts' verdicts through the views of
migrations/V11__verdicts.sql. Top to bottom: the day's figures, charts and tables, then the
detection controls, not tied to a day: the latest backtests (backtests.py) and the rules' lists
(lists.py, changed there by a member of fraud_list_editor). An alert email's links open other
pages instead (alert_pages.py): `?verdict=TOKEN` records an analyst's verdict, `?payment=TRANS_NUM`
shows the payment. Anywhere but on loopback it shows data only to a logged-in user (auth.py).
The modules beside it import by their names: Streamlit puts this folder on the import path
(dashboard/pytest.ini does for the tests).
"""

import datetime as dt

import altair as alt
import pandas as pd
import streamlit as st

import auth
from alert_pages import VERDICT_LABELS, payment_page, verdict_page
from backtests import show_backtest
from challenger import show_challenger
from database import query
from figures import duration, money, ratio, seconds
from lists import show_lists
from settings import STALE_MINUTES_VAR, SetupError, stale_minutes

FRAUD_COLOR = "#d62728"
LEGIT_COLOR = "#4c78a8"
CHART_HEIGHT = 300
VERDICT_PARAM = "verdict"
PAYMENT_PARAM = "payment"  # ?payment=TRANS_NUM: an alerted payment's page (the alert emails link it)


def main() -> None:
    """The page the URL asks for: an alert's verdict link, an alerted payment, else the report."""
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


def show_detection_controls(time_zone: str) -> None:
    st.header("Detection controls", divider="gray")
    st.caption(
        f"Not tied to the day above: what `fraudctl backtest` found for candidate rules, and the "
        f"lists the rules read (docs/rules.md). Times in {time_zone}."
    )
    show_backtest()
    show_lists()


if __name__ == "__main__":  # as Streamlit runs it (run.sh, `streamlit run`, AppTest)
    st.set_page_config(page_title="Fraud report", page_icon=":material/credit_card:", layout="wide")
    try:
        if auth.may_show_data():
            auth.show_logout()
            main()
        else:
            auth.show_login(verdict_link=st.query_params.get(VERDICT_PARAM) is not None)
    except SetupError as e:
        st.error(str(e), icon=":material/error:")
