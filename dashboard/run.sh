#!/bin/sh
# The dashboard's one command: its image (CMD), the local stack (scripts/stack.sh) and the READMEs
# start it this way: app.py served by server.py, which refuses host names that are not allowed.
# Settings: dashboard/.streamlit/config.toml (127.0.0.1:8501), overridden by STREAMLIT_* variables
# and by the flags given here (`dashboard/run.sh --server.port 8502`).
set -eu
exec streamlit run "$(dirname "$0")/server.py" "$@"
