#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: starts `streamlib serve --demo` on a free loopback port
# (without a token, then with one) and runs schemathesis against the OpenAPI document the server
# itself serves. Any failure fails the script.
#
#   bash scripts/api-fuzz.sh              # both runs, SECONDS_PER_RUN (default 60) each
#   STREAMLIB=target/debug/streamlib bash scripts/api-fuzz.sh
#
# Installs the pinned schemathesis (PyPI) into a virtual environment under target/ (needs
# python3 with its venv module: Debian's python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SECONDS_PER_RUN=${SECONDS_PER_RUN:-60}
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
STREAMLIB=$(realpath -m "${STREAMLIB:-$TARGET_DIR/debug/streamlib}")
TOKEN=fuzz-token-0123456789

VENV=$TARGET_DIR/schemathesis-venv
st() { "$VENV/bin/python" -m schemathesis.cli "$@"; }
if [ "$(st --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  if ! python3 -m venv --clear "$VENV"; then
    echo "api-fuzz: cannot create a Python virtual environment; install python3-venv" >&2
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
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
  : >"$work/stdout"
  "$STREAMLIB" serve --demo --port 0 --rate-limit 0 --auth-failure-limit 0 --media-dir "$work/media" "$@" >"$work/stdout" 2>"$work/stderr" &
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

# Stops the server as Ctrl-C would; it must shut down cleanly (exit 0) within 20 s.
stop_server() {
  local pid=$server_pid status=0
  server_pid=""
  if ! kill -INT "$pid" 2>/dev/null; then
    wait "$pid" || status=$?
    echo "api-fuzz: the server died during the run (status $status):" >&2
    tail -n 40 "$work/stderr" >&2
    exit 1
  fi
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "api-fuzz: the server did not shut down within 20 s of SIGINT:" >&2
    tail -n 40 "$work/stderr" >&2
    exit 1
  fi
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "api-fuzz: the server exited with status $status after the run:" >&2
    tail -n 40 "$work/stderr" >&2
    exit 1
  fi
}

# `GET /api/ready` is left out: it answers 503 by design while the runtime is stopped (the
# fuzzer stops it) or a processor has failed, which schemathesis counts as a server error. It
# takes no input; `api_routes::health_answers_without_a_token_and_readiness_names_what_is_wrong`
# checks its answers.
fuzz() {
  local label=$1
  shift
  echo "=== schemathesis $SCHEMATHESIS_VERSION against $url ($label, ${SECONDS_PER_RUN}s)"
  # From the temporary folder: schemathesis keeps a cache in the working directory.
  (cd "$work" && st run "$url/api/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing \
    --max-time "$SECONDS_PER_RUN" \
    --request-timeout 10 \
    --seed 1 \
    --exclude-path /api/ready \
    --no-color \
    "$@")
}

start_server
fuzz "no token"
stop_server

STREAMLIB_API_TOKEN=$TOKEN start_server
# The server really has the token: a request without it is refused.
"$VENV/bin/python" - "$url" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/api/openapi.json")
    sys.exit("api-fuzz: the server answered without the token")
except urllib.error.HTTPError as e:
    if e.code != 401:
        sys.exit(f"api-fuzz: expected 401 without the token, got {e.code}")
PY
fuzz "with --token" -H "Authorization: Bearer $TOKEN"
stop_server
