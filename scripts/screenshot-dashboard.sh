#!/usr/bin/env bash
# Starts the dashboard, takes a PNG screenshot of it with headless Chromium, and stops it.
#
#   FRAUDCTL_DASHBOARD_DATABASE_URL=postgres://fraud_dashboard:...@127.0.0.1:55432/fraud_db \
#       scripts/screenshot-dashboard.sh [OUTPUT.png]      # default docs/dashboard.png
#
# Environment:
#   FRAUDCTL_DASHBOARD_DATABASE_URL  the database the dashboard reads (required; see dashboard/README.md)
#   FRAUDCTL_DASHBOARD_PORT          port to serve on (default 8501)
#   FRAUDCTL_DASHBOARD_PYTHON        Python with dashboard/requirements.txt installed
#                                    (default .venv-dashboard/bin/python, else python3)
#   FRAUDCTL_DASHBOARD_QUERY         query string for the page, e.g. "day=2026-03-09" (default none: yesterday)
# Chromium is Debian's `chromium` package, installed with apt-get when missing (as root).
# Exit codes: 0 screenshot written, 1 the dashboard or Chromium failed, 2 bad set-up.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/docs/dashboard.png}")
port=${FRAUDCTL_DASHBOARD_PORT:-8501}
query=${FRAUDCTL_DASHBOARD_QUERY:-}
python=${FRAUDCTL_DASHBOARD_PYTHON:-}
if [[ -z $python ]]; then
    if [[ -x $root/.venv-dashboard/bin/python ]]; then python=$root/.venv-dashboard/bin/python; else python=python3; fi
fi

die() { echo "screenshot-dashboard: $1" >&2; exit "${2:-1}"; }

[[ -n ${FRAUDCTL_DASHBOARD_DATABASE_URL:-} ]] \
    || die "FRAUDCTL_DASHBOARD_DATABASE_URL is not set: give the URL of the database to show (see dashboard/README.md)." 2
"$python" -c "import streamlit, psycopg" 2>/dev/null \
    || die "$python lacks the dashboard's packages: pip install -r dashboard/requirements.txt (or set FRAUDCTL_DASHBOARD_PYTHON)." 2
if ! command -v chromium >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "Chromium is missing: apt-get install -y chromium (as root)." 2
    echo "screenshot-dashboard: installing Debian's chromium package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || die "apt-get install chromium failed (run apt-get update first?)." 2
fi
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    die "port $port is already in use: stop what serves it or set FRAUDCTL_DASHBOARD_PORT." 2
fi

work=$(mktemp -d)
log=$work/streamlit.log
cleanup() {
    if [[ -n ${server:-} ]]; then kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$python" -m streamlit run "$root/dashboard/server.py" \
    --server.port "$port" --server.address 127.0.0.1 --server.headless true \
    --browser.gatherUsageStats false --client.toolbarMode viewer >"$log" 2>&1 &
server=$!

for _ in $(seq 60); do
    [[ $(curl -s "http://127.0.0.1:$port/_stcore/health" || true) == ok ]] && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; die "the dashboard exited before answering (log above)."; }
    sleep 1
done
[[ $(curl -s "http://127.0.0.1:$port/_stcore/health" || true) == ok ]] \
    || { cat "$log" >&2; die "the dashboard did not answer on port $port within 60 s (log above)."; }

# Chromium's virtual time does not wait for the app's websocket, so a visit may end before the app
# has drawn the page. The same visit dumps the DOM: keep the screenshot only when the app has
# finished its run (no "running" status) and shows its figures or its error; else visit again.
rendered() {
    ! grep -q 'data-testid="stStatusWidgetRunning' "$1" \
        && grep -Eq 'data-testid="(stMetric|stAlert)"' "$1"
}
mkdir -p "$(dirname "$out")"
for attempt in $(seq 8); do
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d -p "$work")" --window-size=1400,2400 --virtual-time-budget=15000 \
        --run-all-compositor-stages-before-draw --hide-scrollbars --screenshot="$work/page.png" \
        --dump-dom "http://127.0.0.1:$port/${query:+?$query}" >"$work/dom.html" 2>"$work/chromium.log" \
        || { cat "$work/chromium.log" >&2; die "chromium failed (log above)."; }
    if rendered "$work/dom.html"; then
        mv "$work/page.png" "$out"
        echo "$out"
        exit 0
    fi
    echo "screenshot-dashboard: the page was not drawn yet (visit $attempt), visiting again" >&2
done
cat "$log" >&2
die "the dashboard did not finish drawing the page in 8 visits (its log above)."
