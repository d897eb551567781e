#!/usr/bin/env bash
# CI chaos test: starts its own stack from prebuilt binaries (two gateway processes, ADMIN_TOKEN
# set), runs every load-tests/chaos.sh scenario against it at a short duration, one after
# another, always stops the stack, and exits 1 when a scenario's verdict is FAIL.
#
#   TITANIUM_BIN_DIR=$(swift build --show-bin-path) bash load-tests/chaos-smoke.sh [SCENARIO ...]
#
# Environment:
#   TITANIUM_BIN_DIR          required: the folder holding the five service executables
#   CHAOS_SMOKE_PORT_OFFSET   added to every service port (default 50: load balancer on 7150,
#                             gateways on 7250 and 7251)
#   CHAOS_SMOKE_REDIS_PORT    Redis port for this stack (default 6379 + offset)
#   CHAOS_SMOKE_DURATION      each fault scenario's load, in seconds (default 16: the fault holds 12 s)
#   CHAOS_SMOKE_VAR           state folder (default: a new temporary folder, removed on success)
# The stack is tuned for short runs, each setting one an operator may choose too: the load
# balancer checks the gateways every 500 ms and ejects for 10 s, services drain for 2 s after
# SIGTERM, and registration allows 60 a minute (every scenario's load registers a user).
# Exit status: 0 every verdict PASS, 1 a FAIL, 2 misuse, 3 a scenario could not run, 70 the
# stack did not start.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ALL=(slow-blog flaky-users hung-auth cache-down gateway-crash rolling-restart)

if [ -z "${TITANIUM_BIN_DIR:-}" ]; then
  echo "chaos-smoke: set TITANIUM_BIN_DIR to the folder with the built service executables" >&2
  exit 2
fi
for name in load-balancer api-gateway auth-service user-service blog-service; do
  [ -x "$TITANIUM_BIN_DIR/$name" ] || { echo "chaos-smoke: $TITANIUM_BIN_DIR/$name is missing or not executable" >&2; exit 2; }
done
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL[@]}")
OFFSET="${CHAOS_SMOKE_PORT_OFFSET:-50}"
REDIS_PORT="${CHAOS_SMOKE_REDIS_PORT:-$((6379 + OFFSET))}"
DURATION="${CHAOS_SMOKE_DURATION:-16}"
LB_PORT=$((7100 + OFFSET))
URL="http://127.0.0.1:$LB_PORT"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$LB_PORT" $((7200 + OFFSET)) $((7201 + OFFSET)) $((7301 + OFFSET)) $((7302 + OFFSET)) $((7303 + OFFSET)) "$REDIS_PORT"; do
  if port_in_use "$port"; then
    echo "chaos-smoke: port $port is already in use; choose another CHAOS_SMOKE_PORT_OFFSET / CHAOS_SMOKE_REDIS_PORT" >&2
    exit 2
  fi
done

KEEP_VAR=1
if [ -n "${CHAOS_SMOKE_VAR:-}" ]; then
  VAR="$CHAOS_SMOKE_VAR"
  mkdir -p "$VAR"
else
  VAR="$(mktemp -d "${TMPDIR:-/tmp}/titanium-chaos-smoke.XXXXXX")"
  KEEP_VAR=0
fi
TOKEN="chaos-smoke-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

stack() {
  TITANIUM_BIN_DIR="$TITANIUM_BIN_DIR" TITANIUM_VAR="$VAR" TITANIUM_PORT_OFFSET="$OFFSET" REDIS_PORT="$REDIS_PORT" \
    GATEWAY_REPLICAS=2 ADMIN_TOKEN="$TOKEN" SHUTDOWN_DELAY_SECONDS=2 BACKEND_CHECK_INTERVAL_MS=500 \
    BACKEND_EJECT_SECONDS=10 RATE_LIMIT_REGISTER=60/60 \
    bash "$ROOT/scripts/stack.sh" "$@"
}

status=70
finish() {
  stack down >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    echo "chaos-smoke: status $status; logs kept in $VAR/log (scenario outputs in $VAR/chaos-*.out); their last warnings and errors:" >&2
    for log in "$VAR"/log/*.log; do
      [ -f "$log" ] || continue
      grep -E '"level":"(warning|error|critical)"' "$log" | tail -n 3 | cut -c1-400 | sed "s|^|$(basename "$log" .log): |" >&2 || true
    done
  elif [ "$KEEP_VAR" = 0 ]; then
    rm -rf "$VAR"
  fi
  exit "$status"
}
trap 'finish' EXIT
trap 'status=130; exit 130' INT TERM

started=$(date +%s)
echo "chaos-smoke: starting a stack with two gateways on $URL (Redis $REDIS_PORT, state $VAR)"
if ! stack up --detach >"$VAR/stack-up.log" 2>&1; then
  cat "$VAR/stack-up.log" >&2
  echo "chaos-smoke: the stack did not start" >&2
  exit 70
fi
grep '^Titanium is up' "$VAR/stack-up.log" || true

status=0
summary=()
set +e
for scenario in "${SCENARIOS[@]}"; do
  duration="$DURATION"
  # Six restarts one after another (a 2 s drain and a start each) need a longer load.
  [ "$scenario" = rolling-restart ] && duration=$((DURATION * 3))
  t=$(date +%s)
  echo
  echo "== chaos-smoke: $scenario, ${duration} s"
  TITANIUM_VAR="$VAR" bash "$HERE/chaos.sh" --url "$URL" --scenario "$scenario" --duration "$duration" --admin-token "$TOKEN" \
    >"$VAR/chaos-$scenario.out" 2>&1
  rc=$?
  # The scenario's own lines and its verdict; the load's report is in the file.
  grep -E '^chaos: |^  \[(PASS|FAIL)\]|^  \(info\)|^(PASS|FAIL): ' "$VAR/chaos-$scenario.out"
  took=$(( $(date +%s) - t ))
  case $rc in
    0) summary+=("PASS  $scenario (${took} s)") ;;
    1) summary+=("FAIL  $scenario (${took} s)"); status=1 ;;
    *) summary+=("ERROR $scenario (${took} s, chaos.sh exited $rc)"); tail -n 30 "$VAR/chaos-$scenario.out"; [ "$status" = 0 ] && status=3 ;;
  esac
done
set -e
echo
echo "chaos-smoke: $(( $(date +%s) - started )) s in all (stack start included)"
printf '  %s\n' "${summary[@]}"
# finish (the EXIT trap) stops the stack and exits with $status
