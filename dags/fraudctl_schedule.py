"""When the fraudctl DAGs run: their timetables and the parse-time settings the digest's depends
on. Not a DAG file (.airflowignore).

Every timetable is explicit, so that Airflow 2.8.3 and 3 schedule alike: a cron string means a
CronDataIntervalTimetable on 2.8.3 but a CronTriggerTimetable (no data interval) on 3, and the
pipeline's run directories and extract's interval are keyed by the data interval.
"""

import os
import re
from datetime import timedelta

from fraudctl_compat import AirflowConfigException, CronDataIntervalTimetable, CronTriggerTimetable
from fraudctl_variables import time_zone

# Parse-time settings, from the environment of every Airflow process that parses the DAG files
# (scheduler, dag-processor, workers, webserver or api-server, the CLI): a schedule must be known
# when the file is parsed, so these cannot be Variables. FRAUDCTL_BUSINESS_TIME_ZONE is also
# `fraudctl migrate`'s (the day of v_daily_fraud_report): one setting for the database's
# "yesterday" and the digest's.
BUSINESS_TIME_ZONE = ("FRAUDCTL_BUSINESS_TIME_ZONE", "UTC")
DIGEST_LOCAL_TIME = ("FRAUDCTL_DIGEST_LOCAL_TIME", "07:00")


def clock_time(text: str) -> tuple:
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", text):
        raise ValueError("a time of day as HH:MM, such as 07:00")
    return int(text[:2]), int(text[3:])


def setting(name_and_default: tuple, check):
    """A parse-time setting, checked: an invalid one fails the DAG file's import, naming it."""
    name, default = name_and_default
    text = os.environ.get(name, "").strip() or default
    try:
        return check(text)
    except ValueError as exc:
        raise AirflowConfigException(
            f"{name} is {text!r}, which is not {exc}. Fix it in the environment of the Airflow "
            f"scheduler, workers and webserver, or unset it to use its default ({default}); "
            "see airflow/README.md, Business time zone."
        ) from None


def business_time_zone() -> str:
    return setting(BUSINESS_TIME_ZONE, time_zone)


def every(cron: str) -> CronDataIntervalTimetable:
    """A cron schedule in UTC whose run's data interval is the period before it (what a cron string
    means on Airflow 2.8.3), on either Airflow."""
    return CronDataIntervalTimetable(cron, timezone="UTC")


def digest_timetable() -> CronTriggerTimetable:
    """Every day at FRAUDCTL_DIGEST_LOCAL_TIME in FRAUDCTL_BUSINESS_TIME_ZONE, across DST changes;
    the data interval is the day before the run (its end, the run's time, decides "yesterday")."""
    hour, minute = setting(DIGEST_LOCAL_TIME, clock_time)
    return CronTriggerTimetable(
        f"{minute} {hour} * * *", timezone=business_time_zone(), interval=timedelta(days=1)
    )
