"""The latest backtest of each rules file (backtest_runs, written by `fraudctl backtest`): the
candidate's alerts against the pipeline's, and each rule's matches."""

import pandas as pd
import streamlit as st

from database import query
from figures import compared_rows, metric_row, per_day, share

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


def backtest_figures(counts: dict) -> dict[str, str]:
    return {name: fmt(counts.get(key)) for name, (key, fmt, _) in BACKTEST_FIGURES.items()}
