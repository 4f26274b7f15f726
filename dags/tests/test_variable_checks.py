"""Each Variable's check (fraudctl_variables), in process: what passes, what fails and how it says
so. test_hostile_variables.py runs the same checks inside real tasks."""

import re

import pytest
from airflow.exceptions import AirflowFailException
from conftest import ROOT
from fraudctl_variables import VARIABLES, checked

INJECTION = "$(touch /tmp/fraudctl-pwned)"

BAD = [
    ("retention_days", "removed[$(touch /tmp/x)]"),
    ("retention_days", "0"),
    ("retention_days", "-1"),
    ("retention_days", "7 days"),
    ("retention_days", "0x10"),
    ("retention_days", "1_000"),
    ("retention_days", "٣"),
    ("retention_days", "3651"),
    ("extract_max_seconds", "241"),
    ("extract_max_records", "1e6"),
    ("extract_max_lag_secs", f"600{INJECTION}"),
    ("alert_max_age_hours", "24.5"),
    ("threshold", "1.5"),
    ("threshold", "nan"),
    ("threshold", "1e-1"),
    ("runs_root", "runs"),
    ("runs_root", "/opt/fraudctl/../../etc"),
    ("runs_root", "/opt/x\n/etc"),
    ("model_dir", "model/default"),
    ("api_url", "file:///etc/passwd"),
    ("api_url", "http://"),
    ("api_url", "http://user:secret@api.example.com/x"),
    ("api_url", "http://h:99999/x"),
    ("api_url", f"http://h/{INJECTION} x"),
    ("sagemaker_endpoint_url", "ftp://h"),
    ("report_url", "javascript:alert(1)"),
    ("alert_to", "a@example.com; rm -rf /"),
    ("alert_to", "fraud-team"),
    ("digest_to", "a@example.com,"),
    ("scorer", "Local"),
    ("scorer_fallback", "remote"),
    ("sagemaker_endpoint", "ep;rm"),
    ("sagemaker_endpoint", "-ep"),
    ("log", f"debug{INJECTION}"),
    ("ops_email", "ops"),
    ("watchdog_minutes", "2"),
    ("watchdog_minutes", "10m"),
    ("airflow_retention_days", "0"),
    ("airflow_retention_days", "30d"),
]

GOOD = [
    ("retention_days", " 14 ", "14"),
    ("retention_days", "08", "8"),
    ("retention_days", "", "7"),
    ("extract_max_lag_secs", "0", "0"),
    ("extract_max_records", "5000", "5000"),
    ("threshold", "0.35", "0.35"),
    ("threshold", "1", "1"),
    ("runs_root", "", "/opt/fraudctl/runs"),
    ("model_dir", "/srv/models/v2", "/srv/models/v2"),
    ("api_url", "", ""),
    (
        "api_url",
        "https://payments.example.com:8443/current-transactions",
        "https://payments.example.com:8443/current-transactions",
    ),
    ("alert_to", "a@example.com, b@localhost", "a@example.com,b@localhost"),
    ("scorer", "sagemaker", "sagemaker"),
    ("sagemaker_endpoint", "fraud-xgb-2", "fraud-xgb-2"),
    ("log", "fraudctl=debug,info", "fraudctl=debug,info"),
    ("ops_email", "", ""),
    ("ops_email", "ops@example.com", "ops@example.com"),
    ("watchdog_minutes", "", "10"),
    ("airflow_retention_days", "", "30"),
    ("airflow_retention_days", "90", "90"),
]


@pytest.mark.parametrize("name, value", BAD)
def test_a_bad_value_fails_the_task_naming_the_variable_and_the_fix(name, value):
    with pytest.raises(AirflowFailException) as failure:
        checked(value, name)
    message = str(failure.value)
    assert message.startswith(f"Variable fraudctl_{name} is "), message
    assert f"AIRFLOW_VAR_FRAUDCTL_{name.upper()}" in message and "Admin > Variables" in message


@pytest.mark.parametrize("name, value, expected", GOOD)
def test_a_good_value_is_used_and_an_empty_one_takes_the_default(name, value, expected):
    assert checked(value, name) == expected


def test_the_readme_documents_every_variable():
    readme = (ROOT / "airflow/README.md").read_text()
    table = readme.split("**Variables**", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `fraudctl_(\w+)` \|", table, re.M)
    assert sorted(documented) == sorted(VARIABLES)
