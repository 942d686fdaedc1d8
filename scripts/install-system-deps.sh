#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that streamlib's device processors and its tests need
# (see the README, "System packages"). Installs only what is missing, so it is cheap to re-run;
# uses sudo when not root.
set -euo pipefail

PACKAGES=(
  # Building: pkg-config finds ALSA; bindgen (V4L2 headers) needs libclang and clang's headers.
  pkg-config libasound2-dev libclang-dev clang linux-libc-dev
  # DisplayProcessor: X11 client libraries, loaded at run time by winit and softbuffer.
  libx11-6 libx11-xcb1 libxcb1 libxcursor1 libxrender1 libxfixes3 libxi6 libxext6
  libxkbcommon0 libxkbcommon-x11-0 libxcb-xkb1
  # Building the `ffmpeg` feature: FFmpeg's development libraries.
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  # Tests: a display server without a screen (window tests); ffmpeg/ffprobe (media checks);
  # Python with venv for the API fuzzing (scripts/api-fuzz.sh installs schemathesis in one);
  # procps for `kill`, which the CLI tests use to send signals; promtool (package prometheus)
  # checks the output of GET /metrics; tmux runs `streamlib top` in a terminal for its test;
  # Chromium and its WebDriver drive the dashboard headless.
  xvfb ffmpeg python3 python3-venv procps prometheus tmux chromium chromium-driver
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  echo "install-system-deps: not a Debian-like system; make sure the equivalents of these are installed: ${PACKAGES[*]}" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "install-system-deps: installing ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
