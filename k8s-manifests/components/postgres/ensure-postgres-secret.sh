#!/bin/sh
# Creates the titanium-postgres Secret (POSTGRES_PASSWORD of the PostgreSQL role titanium, hex so
# that it is URL-safe in DATABASE_URL) in the namespace given as $1 (default titanium-local) when
# it does not exist yet. Run by `skaffold dev -p postgres` before each deploy; idempotent. Needs
# kubectl and openssl on the machine running skaffold. An existing Secret is never replaced: the
# database keeps the password it was created with.
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
if kubectl "$@" -n "$namespace" get secret titanium-postgres >/dev/null 2>&1; then
  exit 0
fi
kubectl "$@" -n "$namespace" create secret generic titanium-postgres \
  --from-literal=POSTGRES_PASSWORD="$(openssl rand -hex 24)" >/dev/null
kubectl "$@" -n "$namespace" label secret titanium-postgres app.kubernetes.io/name=postgres app.kubernetes.io/part-of=titanium >/dev/null
echo "created secret $namespace/titanium-postgres (a new POSTGRES_PASSWORD)"
