#!/usr/bin/env bash
# Runs the benchmarks recorded in BENCHMARKS.md, installing the peers they compare against.
#   bash scripts/bench.sh            # link transport (vs GStreamer), idle CPU, HTTP/WebSocket API,
#                                    # graph apply (vs single requests), snapshots, live preview,
#                                    # the dashboard in headless Chromium (vs the demo graph),
#                                    # file transcode (vs the ffmpeg command line)
#   bash scripts/bench.sh --quick    # every bench once on little work, built in the dev profile:
#                                    # CI runs it so these commands keep working (no figures)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
profile=()
case "${1:-}" in
  "") ;;
  --quick) quick=(-- --quick); profile=(--profile dev) ;;
  *) echo "usage: bash scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac

# What the benches build against (FFmpeg's libraries, ALSA, X11...): the same packages as the
# tests.
bash scripts/install-system-deps.sh

need_apt=()
command -v gst-launch-1.0 >/dev/null || need_apt+=(gstreamer1.0-tools gstreamer1.0-plugins-base)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing ${need_apt[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
  else
    echo "warning: cannot install ${need_apt[*]} (need root and apt); comparisons will be skipped" >&2
  fi
fi

echo "## machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "## gstreamer: $(gst-launch-1.0 --version 2>/dev/null | head -1 || echo absent)"
if [ ${#quick[@]} -gt 0 ]; then
  echo "## quick mode: dev profile, little work; it checks that the benches run, its figures are not measurements"
fi
echo
echo '$ cargo bench -p streamlib --bench links'
cargo bench -q "${profile[@]}" -p streamlib --bench links "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --bench idle_cpu'
cargo bench -q "${profile[@]}" -p streamlib --bench idle_cpu "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --bench api'
cargo bench -q "${profile[@]}" -p streamlib --bench api "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --bench graph_apply'
cargo bench -q "${profile[@]}" -p streamlib --bench graph_apply "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --bench snapshot'
cargo bench -q "${profile[@]}" -p streamlib --bench snapshot "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --bench preview'
cargo bench -q "${profile[@]}" -p streamlib --bench preview "${quick[@]}"
echo
echo '$ cargo bench -p streamlib-cli --bench dashboard'
cargo bench -q "${profile[@]}" -p streamlib-cli --bench dashboard "${quick[@]}"
echo
echo '$ cargo bench -p streamlib --features ffmpeg --bench transcode'
cargo bench -q "${profile[@]}" -p streamlib --features ffmpeg --bench transcode "${quick[@]}"
