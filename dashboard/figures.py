"""How the pages write figures (amounts, shares, counts a day, durations) and set them side by side
as rows of metrics."""

import math

import pandas as pd
import streamlit as st


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.1%}" if denominator else "—"


def per_day(count: float) -> str:
    return f"{count:,.1f}".removesuffix(".0")


def share(value) -> str:
    """A share computed elsewhere (a backtest's JSON): "—" when undefined (null)."""
    return "—" if value is None or pd.isna(value) else f"{value:.1%}"


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else duration(value)


def duration(value) -> str:
    """Seconds as minutes, hours or days; "—" when unknown."""
    if value is None or math.isnan(value):
        return "—"
    if value < 3600:
        return f"{value / 60:.0f} min"
    if value < 2 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


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
