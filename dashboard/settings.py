"""The dashboard's settings, read from its environment (dashboard/README.md), and the error that
says what to fix when one is missing or wrong."""

import os

DATABASE_URL_VAR = "FRAUDCTL_DASHBOARD_DATABASE_URL"
STALE_MINUTES_VAR = "FRAUDCTL_DASHBOARD_STALE_MINUTES"
DEFAULT_STALE_MINUTES = 10
VERDICT_KEY_VAR = "FRAUDCTL_VERDICT_KEY"
MIN_VERDICT_KEY_BYTES = 32


class SetupError(Exception):
    """Something the person running the dashboard must fix; the message says what."""


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


def verdict_key() -> bytes:
    key = os.environ.get(VERDICT_KEY_VAR, "").encode()
    if len(key) < MIN_VERDICT_KEY_BYTES:
        raise SetupError(
            f"{VERDICT_KEY_VAR} is {'too short' if key else 'not set'}: the dashboard verifies verdict "
            f"links with the key that signs them (at least {MIN_VERDICT_KEY_BYTES} bytes, the same "
            "value as fraudctl's; docs/verdict-links.md). Nothing was recorded."
        )
    return key
