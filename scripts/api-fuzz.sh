#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: starts `streamlib serve --demo` on a free loopback port
# (without a token, then with one) and runs schemathesis against the OpenAPI document the server
# itself serves. Any failure fails the script.
#
#   bash scripts/api-fuzz.sh              # both runs, SECONDS_PER_RUN (default 60) each
#   STREAMLIB=target/debug/streamlib bash scripts/api-fuzz.sh
#
# Needs schemathesis (PyPI); installs the pinned version when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SECONDS_PER_RUN=${SECONDS_PER_RUN:-60}
STREAMLIB=${STREAMLIB:-target/debug/streamlib}
TOKEN=fuzz-token-0123456789

# Through the interpreter, so it works whatever PATH holds pip's scripts.
st() { python3 -m schemathesis.cli "$@"; }
if [ "$(st --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [ ! -x "$STREAMLIB" ]; then
  cargo build -p streamlib-cli
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the server with "$@" and sets $url once it prints where it listens.
start_server() {
  "$STREAMLIB" serve --demo --port 0 --rate-limit 0 "$@" >"$work/stdout" 2>"$work/stderr" &
  server_pid=$!
  url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^streamlib API listening on \(http:[^ ]*\)$/\1/p' "$work/stdout")
    [ -n "$url" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "api-fuzz: the server did not start:" >&2
  cat "$work/stderr" >&2
  exit 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

fuzz() {
  local label=$1
  shift
  echo "=== schemathesis $SCHEMATHESIS_VERSION against $url ($label, ${SECONDS_PER_RUN}s)"
  st run "$url/api/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing \
    --max-time "$SECONDS_PER_RUN" \
    --request-timeout 10 \
    --seed 1 \
    --no-color \
    "$@"
}

start_server
fuzz "no token"
stop_server

STREAMLIB_API_TOKEN=$TOKEN start_server
fuzz "with --token" -H "Authorization: Bearer $TOKEN"
stop_server
