#!/usr/bin/env bash
# Installs the Debian packages Titanium needs, only those that are missing.
#   scripts/install-deps.sh          packages to build and run the stack
#   scripts/install-deps.sh test     plus what the test suite uses (promtool, jq, sqlite3, openssl,
#                                    python3-venv for the virtualenvs of its Python tools, and
#                                    Debian's PostgreSQL server: the tests start their own clusters
#                                    in temporary directories and never use the system one, which
#                                    the package creates but, with package scripts starting no
#                                    daemons, does not start)
#   scripts/install-deps.sh bench    plus the load generators (wrk, nginx for comparisons) and
#                                    PostgreSQL (Benchmarks/services starts its own cluster)
set -euo pipefail
# install_apt (as root; package scripts start no daemons), shared with the other scripts.
# shellcheck source=scripts/lib/tools.sh
. "$(dirname "$0")/lib/tools.sh"

packages=(libhiredis-dev libsqlite3-dev libssl-dev redis-server curl libjs-chart.js)
case "${1:-run}" in
  test) packages+=(prometheus jq sqlite3 python3 python3-venv postgresql openssl) ;;
  bench) packages+=(prometheus jq sqlite3 wrk nginx-light hey postgresql) ;;
esac

install_apt "${packages[@]}"
