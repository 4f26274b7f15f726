#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the payments-API body parser and the
# stage-file readers, for a bounded time per target. Fails on any panic; libFuzzer then saves the
# input in fuzz/artifacts/<target>/ (replay: cargo fuzz run -s none <target> <file>).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 60 (or FRAUDCTL_FUZZ_SECONDS)
#
# The fuzz crate builds the library without its `services` feature (no PostgreSQL, SMTP, AWS or
# HTTP client code), and without a sanitizer: fraudctl has no `unsafe` code, so AddressSanitizer
# would add build and run time without finding more. Seed corpora are made afresh from
# ../shared (the recorded API response, stage files of the real sample), never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FRAUDCTL_FUZZ_SECONDS:-60}}
shared=${FRAUDCTL_SHARED_DIR:-../shared}
fraudctl=${FRAUDCTL_BIN:-target/release/fraudctl}
export RUSTC_BOOTSTRAP=1 # cargo-fuzz passes -Z flags; this lets the stable toolchain take them

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

corpus=fuzz/corpus
rm -rf "$corpus"
mkdir -p "$corpus/payments_api_body" "$corpus/stage_file"
body="$shared/fixtures/current-transactions.json"
cp "$body" "$corpus/payments_api_body/wrapped.json"
python3 -c 'import json, sys; print(json.load(open(sys.argv[1])))' "$body" >"$corpus/payments_api_body/document.json"

# Stage files of every schema, from the first rows of the real sample plus a rejected one. The
# default spec reads card history: transform needs a database (empty, of the private cluster).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{ head -n 21 "$shared/data/fraud_sample.csv"; sed -n 2p "$shared/data/fraud_sample.csv" | sed 's/,4\.97,/,-4.97,/'; } >"$work/rows.csv"
export FRAUDCTL_PAN_HASH_KEY=fuzz-corpus-key-0123456789abcdef FRAUDCTL_RUN_DIR=$work/run FRAUDCTL_LOG=warn
admin=${FRAUDCTL_TEST_ADMIN_URL:-$(scripts/pg.sh start)}
export FRAUDCTL_DATABASE_URL=${admin%/*}/fraudctl_fuzz_corpus
"$fraudctl" migrate --create-database >/dev/null
"$fraudctl" extract --from-csv "$work/rows.csv" >/dev/null
"$fraudctl" transform --feature-spec model/default/feature_spec.json >/dev/null
"$fraudctl" score --model-dir model/default >/dev/null
cp "$work"/run/*.jsonl "$corpus/stage_file/"

for target in payments_api_body stage_file; do
    printf '\n--> fuzzing %s for %s s\n' "$target" "$seconds"
    cargo fuzz run --sanitizer none "$target" "$corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
