#!/usr/bin/env bash
# Creates (or reuses) .venv and installs the project into it.
#   bash scripts/install.sh          # the platform
#   bash scripts/install.sh --test   # plus the test extra, and Chromium for the report's rendering test
# torch must come first: ax-platform -> botorch pulls torch, and without the CPU wheel
# already installed pip fetches a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$want_test
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  if [ $want_test = 1 ]; then extra=".[test,data]"; else extra=".[data]"; fi
  .venv/bin/python -m pip install -q -e "$extra"
  touch "$stamp"
fi
if [ $want_test = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  # The report test renders the HTML in headless Chromium; it skips, saying why, where
  # Chromium cannot be installed (no root, no apt).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "note: could not install chromium; the report rendering test will be skipped" >&2
  fi
fi
