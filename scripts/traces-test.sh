#!/usr/bin/env bash
# The traces suite (tests/traces, pytest) against the built executables, each started on a port
# of its own by the edge suite's harness:
#   - OTLP export: one request through load balancer → api-gateway → blog-service arrives at an
#     OTLP/HTTP receiver (every body parsed into ExportTraceServiceRequest with the
#     opentelemetry-proto package) as one trace of three spans whose ids and parent links are
#     the trace stores' rows; with the receiver down requests keep their latency and
#     otlp_export_failures_total rises;
#   - sampling: TRACE_SAMPLE_RATIO=0.1, 2,000 requests → 200 ± 60 complete traces, nothing of
#     the others recorded, every slow and every 5xx request kept at every hop.
# 11-15 s with a debug build on an idle machine, 30 s under other builds (measured; 5 tests).
#
#   TITANIUM_BIN_DIR=$(swift build --show-bin-path) bash scripts/traces-test.sh [pytest arguments]
#
# Installs opentelemetry-proto and pytest (pinned in scripts/lib/tools.sh) in $VENV_DIR/traces.
# Exit status: pytest's (0 pass), 2 misuse.
set -euo pipefail
cd "$(dirname "$0")/.."
# ensure_venv, install_apt, VENV_DIR and TRACES_REQUIREMENTS.
# shellcheck source=scripts/lib/tools.sh
. scripts/lib/tools.sh

if [ -z "${TITANIUM_BIN_DIR:-}" ]; then
  echo "traces-test: set TITANIUM_BIN_DIR to the folder with the built service executables" >&2
  exit 2
fi
TITANIUM_BIN_DIR="$(cd "$TITANIUM_BIN_DIR" && pwd)"
export TITANIUM_BIN_DIR
for name in load-balancer api-gateway blog-service; do
  [ -x "$TITANIUM_BIN_DIR/$name" ] || { echo "traces-test: $TITANIUM_BIN_DIR/$name is missing or not executable" >&2; exit 2; }
done
install_apt python3 python3-venv || exit 2
ensure_venv "$VENV_DIR/traces" "$TRACES_REQUIREMENTS" || { echo "traces-test: cannot create $VENV_DIR/traces" >&2; exit 2; }
# A hung test fails the run.
timeout 300 "$VENV_DIR/traces/bin/python" -m pytest -q -p no:cacheprovider tests/traces "$@"
