"""The report's champion and challenger: each challenger model that scored the period's payments
in shadow, against the model in force (challenger_comparison)."""

import datetime as dt

import streamlit as st

from database import query
from figures import compared_rows, metric_row, per_day, ratio

CHALLENGER_PERIODS = {"This day": 1, "The 7 days to this day": 7}
MODEL_FIGURES = {
    "alerts a day": "Payments predicted fraud, a day of the period",
    "precision": "Of the labelled payments predicted fraud, the share labelled fraud",
    "recall": "Of the payments labelled fraud, the share predicted fraud",
}


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


def model_figures(c, model: str) -> dict[str, str]:
    """A model's MODEL_FIGURES from challenger_comparison's row (model: champion or challenger)."""
    tp, fp, fn = (getattr(c, f"{model}_{count}") for count in ("true_pos", "false_pos", "false_neg"))
    return {
        "alerts a day": per_day(getattr(c, f"{model}_alerts") / c.days),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }
