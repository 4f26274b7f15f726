"""fraud_db: one connection per statement (st.connection), read-only unless the statement writes,
the pages' reads cached, and the database's failures as SetupErrors that say what to fix."""

import contextlib
import re

import pandas as pd
import psycopg
import psycopg.conninfo
import sqlalchemy
import streamlit as st

from settings import DATABASE_URL_VAR, SetupError, database_url

CACHE_SECONDS = 60


def redact(url: str) -> str:
    """The URL (or key=value conninfo) with its password hidden, for messages."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def engine_url(url: str) -> tuple[str, dict]:
    """SQLAlchemy's URL for psycopg 3 and the driver's arguments, from a postgres:// URL or a
    libpq conninfo (key=value ...)."""
    connect_args = {"connect_timeout": 5, "application_name": "fraudctl-dashboard"}
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}", connect_args
    return "postgresql+psycopg://", {**connect_args, **psycopg.conninfo.conninfo_to_dict(url)}


def db():
    """fraud_db through st.connection (one per URL): a connection per statement, as the page makes
    few (no pool holding sessions across a database restart), each in a read-only transaction
    unless it writes (execute)."""
    url, connect_args = engine_url(database_url())
    return st.connection(
        "fraud_db",
        type="sql",
        url=url,
        connect_args=connect_args,
        poolclass=sqlalchemy.pool.NullPool,
        execution_options={"postgresql_readonly": True},
    )


@contextlib.contextmanager
def setup_errors():
    """The database's failures as SetupErrors that say what to fix."""
    try:
        yield
    except sqlalchemy.exc.DBAPIError as e:
        url, cause = redact(database_url()), str(e.orig).strip()
        if isinstance(e.orig, psycopg.OperationalError):
            raise SetupError(f"Cannot reach fraud_db at {url} ({DATABASE_URL_VAR}): {cause}") from e
        if isinstance(e.orig, (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable)):
            raise SetupError(
                f"fraud_db at {url} lacks the report's views or functions ({cause}): "
                "run `fraudctl migrate` against it."
            ) from e
        if isinstance(e.orig, psycopg.errors.InsufficientPrivilege):
            raise SetupError(
                f"The role in {DATABASE_URL_VAR} may not read the report ({cause}): "
                "make it a member of fraud_report_reader (see dashboard/README.md)."
            ) from e
        raise


def execute(sql: str, *, write: bool = False, **params) -> pd.DataFrame:
    """One statement now, its connection closed at once; committed when it writes."""
    with setup_errors(), db().connect() as conn:
        conn.execution_options(postgresql_readonly=not write)
        rows = read_sql(conn, sql, params)
        conn.commit()
    return rows


def read_sql(conn, sql: str, params: dict) -> pd.DataFrame:
    """pandas' read_sql, failing with SQLAlchemy's own error (pandas 3 wraps it in its
    DatabaseError), so that setup_errors() and the lists' forms see the database's."""
    try:
        return pd.read_sql(sqlalchemy.text(sql), conn, params=params)
    except pd.errors.DatabaseError as e:
        if isinstance(e.__cause__, sqlalchemy.exc.DBAPIError):
            raise e.__cause__ from None
        raise


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def cached_read(database: str, sql: str, params: dict) -> pd.DataFrame:
    """execute()'s rows, kept CACHE_SECONDS for each database (its URL is part of the key)."""
    return execute(sql, **params)


def query(sql: str, **params) -> pd.DataFrame:
    """A read-only query, cached: what the report pages read."""
    return cached_read(database_url(), sql, params)
