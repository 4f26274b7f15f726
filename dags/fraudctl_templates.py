"""The templates that turn Airflow Connections and Variables into the environment of a `fraudctl`
command. Not a DAG file (.airflowignore).

Every value is a Jinja template rendered at run time, never at parse time, so parsing the DAG
files touches neither the metadata database nor any secret. Variables are checked as they are
rendered (fraudctl_variables.py); one left to fraudctl's default renders as "" and the command
unsets empty FRAUDCTL_* variables first. Secrets reach a command only through the environment of
that command (a Connection's password, or the worker's own environment for FRAUDCTL_PAN_HASH_KEY
and AWS_*), never its command line.
"""

from fraudctl_variables import var

FRAUD_DB_CONN_ID = "fraud_db"  # Postgres connection to the business database
SMTP_CONN_ID = "fraudctl_smtp"  # SMTP connection, shared by the alerts and the morning digest

RUNS_ROOT = var("runs_root")
MODEL_DIR = var("model_dir")
DATABASE_URL = "{{ conn.%s.get_uri() }}" % FRAUD_DB_CONN_ID

# The SMTP connection's extras follow the SMTP provider's SmtpHook: SSL unless disable_ssl,
# STARTTLS unless disable_tls; from_email is the sender. fraudctl gets the same server as a URL.
_SMTP = "conn.%s" % SMTP_CONN_ID
SMTP_ENV = {
    "FRAUDCTL_SMTP_URL": (
        "{%% set x = %s.extra_dejson %%}"
        "{{ 'smtps' if not x.get('disable_ssl') else ('smtp' if x.get('disable_tls') else 'smtp+starttls') }}"
        "://{{ %s.host }}:{{ %s.port or 25 }}" % (_SMTP, _SMTP, _SMTP)
    ),
    "FRAUDCTL_SMTP_USERNAME": "{{ %s.login or '' }}" % _SMTP,
    "FRAUDCTL_SMTP_PASSWORD": "{{ %s.password or '' }}" % _SMTP,
    "FRAUDCTL_ALERT_FROM": "{{ %s.extra_dejson.get('from_email', '') }}" % _SMTP,
}
