#!/usr/bin/env bash
# Installs the Debian packages Titanium needs, only those that are missing.
#   scripts/install-deps.sh          packages to build and run the stack
#   scripts/install-deps.sh test     plus what the test suite uses (promtool, curl, jq)
#   scripts/install-deps.sh bench    plus the load generators (wrk, nginx for comparisons)
set -euo pipefail

packages=(libhiredis-dev libsqlite3-dev libssl-dev redis-server curl libjs-chart.js)
case "${1:-run}" in
  test) packages+=(prometheus jq sqlite3) ;;
  bench) packages+=(prometheus jq sqlite3 wrk nginx-light hey) ;;
esac

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps package scripts from starting daemons (redis, prometheus) on install.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
