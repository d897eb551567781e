#!/bin/sh
# Creates the auth-jwt-key Secret (the ES256 key every auth-service replica signs with) and the
# titanium-admin-token Secret (ADMIN_TOKEN, guarding /traces*) in the namespace given as $1
# (default titanium-local) when they do not exist yet. Run by skaffold
# before each deploy; idempotent. Needs kubectl and openssl on the machine running skaffold.
# The key never touches the repository: it goes from openssl to a private temporary folder
# to the cluster.
set -eu

namespace="${1:-titanium-local}"
if [ -n "${SKAFFOLD_KUBE_CONTEXT:-}" ]; then
  set -- --context "$SKAFFOLD_KUBE_CONTEXT"
else
  set --
fi

if ! kubectl "$@" get namespace "$namespace" >/dev/null 2>&1; then
  kubectl "$@" create namespace "$namespace"
fi
# ADMIN_TOKEN for every service (it guards /traces*): a random one, made once per namespace.
if ! kubectl "$@" -n "$namespace" get secret titanium-admin-token >/dev/null 2>&1; then
  kubectl "$@" -n "$namespace" create secret generic titanium-admin-token \
    --from-literal=ADMIN_TOKEN="$(openssl rand -hex 16)" >/dev/null
  kubectl "$@" -n "$namespace" label secret titanium-admin-token app.kubernetes.io/part-of=titanium >/dev/null
  echo "created secret $namespace/titanium-admin-token (a new ADMIN_TOKEN)"
fi
if kubectl "$@" -n "$namespace" get secret auth-jwt-key >/dev/null 2>&1; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$work/jwt-es256.pem"
kubectl "$@" -n "$namespace" create secret generic auth-jwt-key --from-file=jwt-es256.pem="$work/jwt-es256.pem"
kubectl "$@" -n "$namespace" label secret auth-jwt-key app.kubernetes.io/name=auth-service app.kubernetes.io/part-of=titanium >/dev/null
echo "created secret $namespace/auth-jwt-key (a new ES256 key)"
