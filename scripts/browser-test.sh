#!/usr/bin/env bash
# The dashboard in a real browser (tests/browser/test_dashboard.py): starts its own stack from
# prebuilt binaries, drives headless Chromium with Selenium, always stops the stack.
#   TITANIUM_BIN_DIR=.build/debug bash scripts/browser-test.sh
# Installs what is missing: Debian chromium, chromium-driver, python3, python3-venv, libjs-chart.js
# (apt-get, as root), and Selenium (tests/browser/requirements.txt) in .venv-browser/.
# Screenshots (the page, and the trace waterfall, at 1280 px and 390 px) and the stack's logs go
# to test-output/dashboard/.
# Environment: TITANIUM_BIN_DIR (required: the built services), BROWSER_TEST_PORT_OFFSET (5700:
# load balancer on 12800, Redis on 13079), BROWSER_TEST_OUTPUT, BROWSER_TEST_VENV,
# BROWSER_TEST_TRACE_FLUSH (the stack's TRACE_FLUSH_INTERVAL, 500ms).
set -euo pipefail
cd "$(dirname "$0")/.."
# install_apt, shared with the other scripts.
# shellcheck source=scripts/lib/tools.sh
. scripts/lib/tools.sh

if [ -z "${TITANIUM_BIN_DIR:-}" ]; then
  echo "TITANIUM_BIN_DIR is not set: point it at the built services (e.g. .build/debug)" >&2
  exit 2
fi
TITANIUM_BIN_DIR="$(cd "$TITANIUM_BIN_DIR" && pwd)"
export TITANIUM_BIN_DIR

install_apt chromium chromium-driver python3 python3-venv libjs-chart.js

# Debian's python3, the one python3-venv belongs to (a pyenv or other python3 may come first on PATH).
python=/usr/bin/python3
[ -x "$python" ] || python="$(command -v python3)"
venv="${BROWSER_TEST_VENV:-$PWD/.venv-browser}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/browser/requirements.txt

# Bounded: the test takes about 70 s; a hung browser must not hold CI.
exec timeout --kill-after=20 300 "$venv/bin/python" -u tests/browser/test_dashboard.py
