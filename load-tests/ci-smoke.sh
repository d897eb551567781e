#!/usr/bin/env bash
# CI load test: starts its own stack from prebuilt binaries, runs the requirement's two
# documented load commands against it for 60 s each (mixed_load.sh at list 64/s, detail 12/s,
# create 4/s; mixed_load_plus.sh at 40, 15, 8, update 4, delete 3), under 2 % failures, always
# stops the stack, and exits with the first failing script's status.
#
#   TITANIUM_BIN_DIR=$(swift build --show-bin-path) bash load-tests/ci-smoke.sh [extra mixed_load.sh options]
#
# Environment:
#   TITANIUM_BIN_DIR         required: the folder holding the five service executables
#   LOAD_SMOKE_PORT_OFFSET   added to every service port (default 2500: load balancer on 9600)
#   LOAD_SMOKE_REDIS_PORT    Redis port for this stack (default 6379 + offset)
#   LOAD_SMOKE_VAR           state folder (default: a new temporary folder, removed on success)
# Exit status: mixed_load.sh's (0 pass, 1 failures, 3 setup failed, ...); 2 when this script
# is misused; 70 when the stack does not start.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

if [ -z "${TITANIUM_BIN_DIR:-}" ]; then
  echo "ci-smoke: set TITANIUM_BIN_DIR to the folder with the built service executables" >&2
  exit 2
fi
for name in load-balancer api-gateway auth-service user-service blog-service; do
  [ -x "$TITANIUM_BIN_DIR/$name" ] || { echo "ci-smoke: $TITANIUM_BIN_DIR/$name is missing or not executable" >&2; exit 2; }
done
OFFSET="${LOAD_SMOKE_PORT_OFFSET:-2500}"
REDIS_PORT="${LOAD_SMOKE_REDIS_PORT:-$((6379 + OFFSET))}"
LB_PORT=$((7100 + OFFSET))

# The stack must be our own: refuse ports that already answer (stack.sh would reuse a Redis it
# finds, and another stack's rate-limit counters would leak into this run).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$LB_PORT" $((7200 + OFFSET)) $((7301 + OFFSET)) $((7302 + OFFSET)) $((7303 + OFFSET)) "$REDIS_PORT"; do
  if port_in_use "$port"; then
    echo "ci-smoke: port $port is already in use; choose another LOAD_SMOKE_PORT_OFFSET / LOAD_SMOKE_REDIS_PORT" >&2
    exit 2
  fi
done

KEEP_VAR=1
if [ -n "${LOAD_SMOKE_VAR:-}" ]; then
  VAR="$LOAD_SMOKE_VAR"
else
  VAR="$(mktemp -d "${TMPDIR:-/tmp}/titanium-load-smoke.XXXXXX")"
  KEEP_VAR=0
fi

stack() {
  TITANIUM_BIN_DIR="$TITANIUM_BIN_DIR" TITANIUM_VAR="$VAR" TITANIUM_PORT_OFFSET="$OFFSET" REDIS_PORT="$REDIS_PORT" \
    bash "$ROOT/scripts/stack.sh" "$@"
}

status=70
finish() {
  stack down >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    echo "ci-smoke: status $status; logs kept in $VAR/log; their last warnings and errors:" >&2
    for log in "$VAR"/log/*.log; do
      [ -f "$log" ] || continue
      grep -E '"level":"(warning|error|critical)"' "$log" | tail -n 5 | sed "s|^|$(basename "$log" .log): |" >&2 || true
    done
  elif [ "$KEEP_VAR" = 0 ]; then
    rm -rf "$VAR"
  fi
  exit "$status"
}
trap 'finish' EXIT
trap 'status=130; exit 130' INT TERM

echo "ci-smoke: starting a stack on http://127.0.0.1:$LB_PORT (Redis $REDIS_PORT, state $VAR)"
if ! stack up --detach >"$VAR/stack-up.log" 2>&1; then
  cat "$VAR/stack-up.log" >&2
  echo "ci-smoke: the stack did not start" >&2
  exit 70
fi
grep '^Titanium is up' "$VAR/stack-up.log" || true

# The requirement's two documented commands (shared/reference/monitoring.md), each for 60 s,
# under 2 % failures; 429s are reported apart and are not failures.
set +e
sh "$HERE/mixed_load.sh" --url "http://127.0.0.1:$LB_PORT" --duration 60s --rate-list 64 --rate-detail 12 --rate-create 4 \
  --max-failure-rate 2 "$@"
status=$?
echo "ci-smoke: mixed_load.sh exited with $status"
if [ "$status" -eq 0 ]; then
  sh "$HERE/mixed_load_plus.sh" --url "http://127.0.0.1:$LB_PORT" --duration 60s --rate-list 40 --rate-detail 15 \
    --rate-create 8 --rate-update 4 --rate-delete 3 --max-failure-rate 2 "$@"
  status=$?
  echo "ci-smoke: mixed_load_plus.sh exited with $status"
fi
set -e
# finish (the EXIT trap) stops the stack and exits with $status
