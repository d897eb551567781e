#!/bin/sh
# Creates the auth-jwt-key Secret (the ES256 key every auth-service replica signs with) in the
# namespace given as $1 (default titanium-local) when it does not exist yet. Run by skaffold
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
