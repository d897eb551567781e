#!/usr/bin/env bash
# Builds everything once (debug), then runs the whole suite: unit tests and the integration
# tests, which start the built executables (and redis-server) as real processes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh test
swift build --build-tests
export TITANIUM_BIN_DIR="$(swift build --show-bin-path)"
swift test --skip-build
