"""The local stack's Airflow login (scripts/airflow_admin.py, run by `make up`) in a real metadata
database and the real Airflow web app: the REST API the grid reads takes the user admin, refuses
anyone else, and follows a new password."""

import subprocess
import textwrap

from conftest import ROOT, VENV_BIN, on_airflow_2_only

pytestmark = on_airflow_2_only(
    "the login is FAB's; Airflow 3's simple auth manager reads the passwords file scripts/stack.sh writes"
)

# What the REST API answers the user admin, as the grid's requests would reach it (Flask's test
# client in a process with the stack's settings: session and basic auth).
ASK = textwrap.dedent("""
    import base64, sys
    from airflow.www.app import cached_app
    token = base64.b64encode(sys.argv[1].encode()).decode()
    print(cached_app().test_client().get("/api/v1/dags", headers={"Authorization": "Basic " + token}).status_code)
""")


def run(airflow, password: str, *args: str) -> str:
    env = {
        **airflow.env,
        "AIRFLOW_ADMIN_PASSWORD": password,
        "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.session,airflow.api.auth.backend.basic_auth",
    }
    done = subprocess.run(
        [VENV_BIN / "python", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_stacks_admin_reaches_the_rest_api_and_nobody_else(airflow):
    admin = [str(ROOT / "scripts" / "airflow_admin.py")]
    assert run(airflow, "first-password", *admin) == "airflow_admin: created the user admin"
    assert run(airflow, "first-password", *admin) == "airflow_admin: admin unchanged"
    assert run(airflow, "first-password", "-c", ASK, "admin:first-password") == "200"
    assert run(airflow, "first-password", "-c", ASK, "admin:guess") == "401"
    assert run(airflow, "first-password", "-c", ASK, "nobody:first-password") == "401"
    # A stack.env generated anew: the next make up sets the new password.
    assert (
        run(airflow, "second-password", *admin)
        == "airflow_admin: set the password of admin from AIRFLOW_ADMIN_PASSWORD"
    )
    assert run(airflow, "second-password", "-c", ASK, "admin:first-password") == "401"
    assert run(airflow, "second-password", "-c", ASK, "admin:second-password") == "200"
