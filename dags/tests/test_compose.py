"""docker-compose.yml, checked without a Docker engine: services, ports, volumes, health checks,
start order, and that every ${VAR} it uses has a default or is documented in .env.example."""
import re

import pytest
import yaml

from conftest import ROOT

SERVICES = {"postgres", "mailpit", "payments-simulator", "airflow-init", "airflow-scheduler",
            "airflow-webserver", "dashboard"}
LONG_RUNNING = SERVICES - {"airflow-init"}


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)  # also resolves the x-airflow-common anchors


def host_ports(service: dict) -> set:
    return {int(str(p).split(":")[-2]) if str(p).count(":") else int(p) for p in service.get("ports", [])}


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    for name in ("airflow-init", "airflow-scheduler", "airflow-webserver"):
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile.airflow", "target": "airflow"}
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert services["payments-simulator"]["build"]["target"] == "fraudctl"
    assert services["payments-simulator"]["command"][:3] == ["serve-payments", "--listen", "0.0.0.0:8000"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert services["dashboard"]["build"]["context"] == "./dashboard"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-webserver"]["command"] == "webserver"


def test_ports(compose):
    s = compose["services"]
    assert host_ports(s["airflow-webserver"]) == {8080}
    assert host_ports(s["dashboard"]) == {8501}
    assert host_ports(s["mailpit"]) == {8025, 1025}
    assert host_ports(s["payments-simulator"]) == {8000}
    for service in s.values():  # published on loopback only
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", []))


def test_dashboard_listens_on_the_container_network_published_on_loopback(compose):
    """The image listens on 127.0.0.1 (no login yet; dashboard/tests/test_listen_address.py),
    which a published port cannot reach: compose opens it inside the container and publishes it
    on the host's loopback only."""
    dashboard = compose["services"]["dashboard"]
    assert dashboard["environment"]["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]


def test_the_binary_is_fixed_by_the_image_not_a_variable(compose):
    airflow_stage = (ROOT / "Dockerfile.airflow").read_text().split(" AS airflow", 1)[1]
    assert "COPY --from=builder /usr/local/bin/fraudctl /usr/local/bin/fraudctl" in airflow_stage
    assert re.search(r"^ENV FRAUDCTL_BIN=/usr/local/bin/fraudctl ", airflow_stage, re.M)
    for name in ("airflow-init", "airflow-scheduler", "airflow-webserver"):
        env = compose["services"][name]["environment"]
        assert "AIRFLOW_VAR_FRAUDCTL_BIN" not in env and "FRAUDCTL_BIN" not in env, name


def test_health_checks(compose):
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries"), name


def test_start_order(compose):
    s = compose["services"]
    for name in ("airflow-scheduler", "airflow-webserver", "dashboard"):
        deps = s[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    scheduler = s["airflow-scheduler"]["depends_on"]
    assert scheduler["mailpit"]["condition"] == scheduler["payments-simulator"]["condition"] == "service_healthy"
    assert s["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name, service in s.items():
        assert set(service.get("depends_on", {})) <= set(s), name


def test_volumes(compose):
    s = compose["services"]
    assert set(compose["volumes"]) == {"pgdata", "runs", "airflow-logs"}
    for name in ("airflow-scheduler", "airflow-webserver"):
        assert "runs:/opt/fraudctl/runs" in s[name]["volumes"], name
        assert s[name]["environment"]["AIRFLOW_VAR_FRAUDCTL_RUNS_ROOT"] == "/opt/fraudctl/runs"
    assert "pgdata:/var/lib/postgresql/data" in s["postgres"]["volumes"]
    for service in s.values():  # bind mounts point at files of the repository
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            else:
                assert source in compose["volumes"], source


def test_every_variable_has_a_default_or_is_in_env_example(compose_text):
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    for name, operator in re.findall(r"\$\{([A-Z][A-Z0-9_]*)(:?[-?+]?)", compose_text):
        assert operator.startswith(":-") or name in documented, f"${{{name}}} has no default and is not in .env.example"
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", compose_text))
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    assert required <= set(example)  # each required secret has a (placeholder) line
    assert all(example[k] == "change-me" for k in required)  # and no real value


def test_no_secret_inline(compose):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|FERNET|HASH_KEY", key) and value:
                assert "${" in str(value), f"{name}: {key} must come from .env"
