"""The DAG files import cleanly and say what we mean (no services needed)."""

import re
import warnings
from datetime import timedelta

import pendulum
import pytest
from airflow.timetables.base import TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronTriggerTimetable
from conftest import DAGS, core_timetable, parse_dags
from fraudctl_notify import notify_failure
from fraudctl_variables import TEMPLATE_FILTERS, VARIABLES, variable

# What the DAG files may not import: the homes Airflow 3 moved or deprecated (ruff's AIR3 rules);
# fraudctl_compat.py alone chooses between them.
AIRFLOW_2_ONLY_IMPORTS = re.compile(
    r"^\s*from airflow(\.operators|\.decorators|\.models|\.hooks|\.utils|\.timetables|\.exceptions| import)",
    re.M,
)


@pytest.fixture(scope="module")
def dagbag_and_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = parse_dags(DAGS)
    return bag, caught


@pytest.fixture(scope="module")
def dagbag(dagbag_and_warnings):
    return dagbag_and_warnings[0]


def test_dagbag_imports_without_errors_or_warnings(dagbag_and_warnings):
    bag, caught = dagbag_and_warnings
    assert bag.import_errors == {}
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert sorted(bag.dag_ids) == ["fraud_daily_digest", "fraud_pipeline", "fraud_pipeline_watchdog"]


def test_only_the_compat_module_knows_which_airflow():
    for path in DAGS.glob("*.py"):
        if path.name != "fraudctl_compat.py":
            assert not AIRFLOW_2_ONLY_IMPORTS.search(path.read_text()), path.name


def minute_timetable(dag) -> str:
    """The cron of a DAG's data-interval timetable, as the scheduler runs it."""
    timetable = core_timetable(dag)
    assert isinstance(timetable, CronDataIntervalTimetable), timetable
    assert timetable._timezone.name == "UTC"
    return timetable.summary


def test_pipeline_shape(dagbag):
    dag = dagbag.dags["fraud_pipeline"]
    assert minute_timetable(dag) == "* * * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.start_date.year == 2024 and dag.doc_md and "fraudctl" in dag.tags
    order = ["extract", "transform", "score", "load", "alert"]
    assert [t.task_id for t in dag.topological_sort()] == order
    for upstream, downstream in zip(order, order[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    for task in dag.tasks:
        assert task.retries >= 2 and task.retry_delay >= timedelta(seconds=10)
        assert task.execution_timeout is not None
        assert task.append_env is True and task.do_xcom_push is True
        assert task.skip_on_exit_code == [99]


def test_digest_shape(dagbag):
    dag = dagbag.dags["fraud_daily_digest"]
    timetable = core_timetable(dag)
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.summary == "0 7 * * *" and timetable._timezone.name == "UTC"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.get_task("send_digest").upstream_task_ids == {"build_report"}
    assert dag.get_task("send_digest").conn_id == "fraudctl_smtp"
    assert "RETENTION_DAYS" in dag.get_task("cleanup_run_dirs").env
    assert dag.get_task("clean_airflow_db").bash_command.startswith("exec airflow db clean ")
    assert (
        "airflow config get-value logging base_log_folder" in dag.get_task("clean_airflow_logs").bash_command
    )


def parsed_digest(monkeypatch, **settings):
    """The digest DAG file parsed with these FRAUDCTL_* settings in the environment."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return parse_dags(DAGS / "fraud_daily_digest_dag.py")


@pytest.mark.parametrize(
    "zone, local_time, runs, report_days",
    [
        # DST begins in New York on 2024-03-10: 07:00 is 12:00 UTC before, 11:00 UTC after.
        (
            "America/New_York",
            "07:00",
            ["2024-03-09T12:00", "2024-03-10T11:00", "2024-03-11T11:00"],
            ["2024-03-08", "2024-03-09", "2024-03-10"],
        ),
        # DST ends in Berlin on 2024-10-27; at 00:30 local it is still the previous day in UTC.
        (
            "Europe/Berlin",
            "00:30",
            ["2024-10-25T22:30", "2024-10-26T22:30", "2024-10-27T23:30"],
            ["2024-10-25", "2024-10-26", "2024-10-27"],
        ),
    ],
)
def test_digest_runs_at_the_local_time_across_dst(monkeypatch, zone, local_time, runs, report_days):
    bag = parsed_digest(monkeypatch, FRAUDCTL_BUSINESS_TIME_ZONE=zone, FRAUDCTL_DIGEST_LOCAL_TIME=local_time)
    assert bag.import_errors == {}
    dag = bag.dags["fraud_daily_digest"]
    restriction = TimeRestriction(
        earliest=pendulum.parse(runs[0]).subtract(hours=1), latest=None, catchup=True
    )
    last, seen = None, []
    for _ in runs:
        info = core_timetable(dag).next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction
        )
        last = info.data_interval
        seen.append(info.data_interval.end)
    assert [t.in_timezone("UTC").strftime("%Y-%m-%dT%H:%M") for t in seen] == runs
    day = dag.get_task("build_report").op_kwargs["day"]
    build_report = dag.get_task("build_report")
    assert [build_report.render_template(day, {"data_interval_end": t}) for t in seen] == report_days


@pytest.mark.parametrize(
    "setting, value, says",
    [
        ("FRAUDCTL_BUSINESS_TIME_ZONE", "Mars/Olympus", "an IANA time zone name"),
        ("FRAUDCTL_BUSINESS_TIME_ZONE", "/etc/localtime", "an IANA time zone name"),
        ("FRAUDCTL_BUSINESS_TIME_ZONE", "America", "an IANA time zone name"),
        ("FRAUDCTL_DIGEST_LOCAL_TIME", "7am", "a time of day as HH:MM"),
        ("FRAUDCTL_DIGEST_LOCAL_TIME", "24:00", "a time of day as HH:MM"),
    ],
)
def test_an_invalid_digest_setting_is_an_import_error_naming_it(monkeypatch, setting, value, says):
    bag = parsed_digest(monkeypatch, **{setting: value})
    (error,) = bag.import_errors.values()
    assert f"{setting} is {value!r}, which is not {says}" in error, error


def test_watchdog_shape(dagbag):
    dag = dagbag.dags["fraud_pipeline_watchdog"]
    assert minute_timetable(dag) == "*/2 * * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["check_pipeline", "check_live_path"]


def test_every_task_emails_operations_when_it_fails_for_good(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback  # Airflow 3 keeps a list
            assert callbacks in (notify_failure, [notify_failure]), task.task_id
            assert not task.on_retry_callback and not task.email, task.task_id


def test_commands_carry_no_values(dagbag):
    """bash_command holds no template and no value: everything reaches fraudctl through env,
    and secrets only through a Connection (masked) or the worker's environment."""
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            command = getattr(task, "bash_command", "")
            assert "{{" not in command and "://" not in command, task.task_id
            for key, value in (getattr(task, "env", None) or {}).items():
                if re.search(r"PASSWORD|HASH_KEY|SECRET|AWS_", key):
                    # a secret may only come from a Connection, whose password Airflow masks
                    assert value.startswith("{{ conn."), (task.task_id, key)


def test_secrets_only_where_needed(dagbag):
    """Least privilege: only extract (the live path's lease), transform (the cards' history),
    score (the lists its rules read), load and alert get the database, only alert the SMTP
    password."""
    dag = dagbag.dags["fraud_pipeline"]
    with_db = {t.task_id for t in dag.tasks if "FRAUDCTL_DATABASE_URL" in t.env}
    with_smtp = {t.task_id for t in dag.tasks if "FRAUDCTL_SMTP_PASSWORD" in t.env}
    assert with_db == {"extract", "transform", "score", "load", "alert"} and with_smtp == {"alert"}


def test_transform_and_score_read_one_challenger(dagbag):
    """The challenger's features (transform) and its scores (score) come from one Variable."""
    env = {t.task_id: t.env.get("FRAUDCTL_CHALLENGER_MODEL_DIR") for t in dagbag.dags["fraud_pipeline"].tasks}
    assert env["transform"] == env["score"] and "fraudctl_challenger_model_dir" in env["score"]
    assert {t for t, v in env.items() if v} == {"transform", "score"}


def templated_strings(task):
    """Every string in the task's templated fields (nested in dicts and lists too)."""

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from strings(item)

    for field in task.template_fields:
        yield from strings(getattr(task, field, None))


def test_every_variable_is_checked_before_use(dagbag):
    """A Variable reaches a template only through fraudctl_variables' check, and which binary
    runs is not a Variable (it is the deployment's FRAUDCTL_BIN)."""
    assert "bin" not in VARIABLES
    used = set()
    for dag in dagbag.dags.values():
        assert dag.user_defined_filters == TEMPLATE_FILTERS, dag.dag_id
        for task in dag.tasks:
            assert "FRAUDCTL_BIN" not in (getattr(task, "env", None) or {}), task.task_id
            for text in templated_strings(task):
                for name in VARIABLES:
                    if variable(name) in text:
                        used.add(name)
                        text = text.replace(variable(name), "")
                assert "var.value" not in text and "fraudctl_bin" not in text, (task.task_id, text)
    # Callbacks read theirs when they run (value("…")), through the same check.
    used |= set(re.findall(r'\bvalue\("(\w+)"\)', (DAGS / "fraudctl_notify.py").read_text()))
    assert used == set(VARIABLES)  # and the table lists no Variable that nothing reads
