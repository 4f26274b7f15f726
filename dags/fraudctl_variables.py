"""Every Airflow Variable the fraudctl DAGs read: its default and its check. Not a DAG file
(listed in .airflowignore).

Whoever may edit Variables in the Airflow UI is not thereby allowed to run code on the workers,
yet the values reach commands there (fraudctl's environment, the cleanup task's `find`). So every
Variable goes through the Jinja filter `fraudctl_variable`, which checks it when the task's
templates are rendered, in Python, before any command exists: a value that fails its check fails
the task at once (no retries), with a message naming the Variable, what it must be and the fix.
A missing or empty Variable takes its default; an empty default leaves fraudctl's own.

What runs is never a Variable: the binary is the deployment's (FRAUDCTL_BIN, fraudctl_stage.py).
"""

import re
from urllib.parse import urlsplit

import pendulum
from fraudctl_compat import AirflowFailException, variable_value

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
EMAIL = re.compile(r"[^@\s<>()\[\],;:\"']+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


# Each check takes the stripped, non-empty value and returns the value to use, or raises
# ValueError saying what the value must be.


def integer(low: int, high: int):
    def check(value: str) -> str:
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return str(int(value))  # "08" would be an octal error in bash arithmetic

    return check


def decimal(low: float, high: float):
    def check(value: str) -> str:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) or not low <= float(value) <= high:
            raise ValueError(f"a decimal number from {low} to {high}, such as 0.5")
        return value

    return check


def one_of(*choices: str):
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return check


def matching(pattern: str, what: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(what)
        return value

    return check


def absolute_path(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/") or CONTROL_CHARS.search(value):
        raise ValueError("an absolute path without '..', such as /opt/fraudctl/runs")
    return value


def http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.port is None or parts.port > 0  # .port raises ValueError when not a number
    except ValueError:
        valid = False
    if not (
        valid
        and parts.scheme in ("http", "https")
        and parts.hostname
        and "@" not in parts.netloc
        and not re.search(r"\s", value)
        and not CONTROL_CHARS.search(value)
    ):
        raise ValueError("an http:// or https:// URL with a host and no user name or password")
    return value


def email_list(value: str) -> str:
    addresses = [a.strip() for a in value.split(",")]
    if not all(EMAIL.fullmatch(a) for a in addresses):
        raise ValueError("a comma-separated list of email addresses such as fraud-team@example.com")
    return ",".join(addresses)


def time_zone(value: str) -> str:
    try:
        pendulum.timezone(value)
    except (ValueError, OSError):
        raise ValueError("an IANA time zone name such as UTC or Europe/Paris") from None
    return value


# name (after the fraudctl_ prefix): (default, check)
VARIABLES = {
    "runs_root": ("/opt/fraudctl/runs", absolute_path),
    "model_dir": ("/opt/fraudctl/model/default", absolute_path),
    "api_url": ("", http_url),
    "extract_max_seconds": ("", integer(1, 240)),  # under the tasks' 5-minute execution timeout
    "extract_max_records": ("", integer(1, 10_000_000)),
    "extract_max_lag_secs": ("", integer(0, 365 * 86400)),
    # The live path (fraudctl live): how long extract waits for its file of the minute while its
    # lease is fresh, and how old its heartbeat may be before extract polls the API itself.
    "live_wait_secs": ("30", integer(0, 240)),
    "live_stale_secs": ("15", integer(1, 3600)),
    "scorer": ("", one_of("local", "sagemaker")),
    "sagemaker_endpoint": (
        "",
        matching(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}", "a SageMaker endpoint name (letters, digits, hyphens)"),
    ),
    "sagemaker_endpoint_url": ("", http_url),
    "threshold": ("", decimal(0, 1)),
    "scorer_fallback": ("", one_of("local", "none")),
    "rules_file": ("", absolute_path),  # docs/rules.md: none by default
    "challenger_model_dir": ("", absolute_path),  # docs/rules.md: none by default
    "alert_to": ("", email_list),
    "alert_max_age_hours": ("", integer(0, 365 * 24)),
    "report_url": ("", http_url),
    "digest_to": ("", email_list),
    "ops_email": ("", email_list),
    "watchdog_minutes": ("10", integer(3, 1440)),  # fraud_pipeline runs every minute, extract 45 s
    "source_errors_warn": ("5", integer(1, 1_000_000)),
    "retention_days": ("7", integer(1, 3650)),
    "airflow_retention_days": ("30", integer(1, 3650)),
    "log": ("", matching(r"[A-Za-z0-9_:=,.-]{1,200}", "a log filter such as debug or fraudctl=debug,info")),
}


def checked(value, name: str) -> str:
    """The Jinja filter: the value of the Variable fraudctl_<name> once checked (or its default)."""
    default, check = VARIABLES[name]
    text = "" if value is None else str(value).strip()
    if not text:
        return default
    try:
        return check(text)
    except ValueError as exc:
        shown = text if len(text) <= 100 else text[:100] + "..."
        raise AirflowFailException(
            f"Variable fraudctl_{name} is {shown!r}, which is not {exc}. Fix it in the Airflow UI "
            f"(Admin > Variables) or in AIRFLOW_VAR_FRAUDCTL_{name.upper()} where the deployment "
            f"sets it, or delete it to use its default{f' ({default})' if default else ''}; "
            "see airflow/README.md, Variables."
        ) from None


TEMPLATE_FILTERS = {"fraudctl_variable": checked}  # every DAG: DAG(user_defined_filters=...)


def variable(name: str) -> str:
    """Jinja expression of the checked Variable fraudctl_<name>, for use inside a template."""
    default = VARIABLES[name][0]
    return f"(var.value.get('fraudctl_{name}', {default!r}) | fraudctl_variable({name!r}))"


def value(name: str) -> str:
    """The checked Variable fraudctl_<name>, read now (in a task's or a callback's Python code)."""
    return checked(variable_value(f"fraudctl_{name}"), name)


def var(name: str) -> str:
    """Template of the checked Variable fraudctl_<name> (metadata DB or AIRFLOW_VAR_FRAUDCTL_...)."""
    return "{{ %s }}" % variable(name)
