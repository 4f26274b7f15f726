#!/usr/bin/env python3
"""The local stack's Airflow login: the user `admin` (role Admin) with the password in the
environment variable AIRFLOW_ADMIN_PASSWORD (generated into .local/stack.env by `make up`; never
on a command line). Created when absent; its password set again when it no longer matches (a
stack.env generated anew). The UI's login and the REST API the grid reads (session and basic
auth: `curl -u admin:PASSWORD http://127.0.0.1:8080/api/v1/dags`) both take it.

    AIRFLOW_ADMIN_PASSWORD=… .venv-airflow/bin/python scripts/airflow_admin.py

Run by `make up` (scripts/stack.sh) with the stack's Airflow settings; prints what it did.
"""

import os
import sys

from werkzeug.security import check_password_hash

USERNAME = "admin"


def main() -> None:
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
    if not password:
        sys.exit(
            "airflow_admin: AIRFLOW_ADMIN_PASSWORD is not set (make up generates it into .local/stack.env)"
        )
    from airflow.www.app import cached_app  # after the check: building the app takes seconds

    security = cached_app().appbuilder.sm
    user = security.find_user(username=USERNAME)
    if user is None:
        created = security.add_user(
            USERNAME, "Local", "Admin", "admin@localhost", security.find_role("Admin"), password=password
        )
        if not created:
            sys.exit(f"airflow_admin: could not create the user {USERNAME} (see the log above)")
        print(f"airflow_admin: created the user {USERNAME}")
    elif not check_password_hash(user.password, password):
        security.reset_password(user.id, password)
        print(f"airflow_admin: set the password of {USERNAME} from AIRFLOW_ADMIN_PASSWORD")
    else:
        print(f"airflow_admin: {USERNAME} unchanged")


if __name__ == "__main__":
    main()
