#!/usr/bin/env bash
# The local stack: Redis (when installed) and the five services, data under var/.
#   scripts/stack.sh up            build (release), start, wait until ready, stay in the
#                                  foreground; Ctrl-C stops everything
#   scripts/stack.sh up --detach   the same, returning once the stack is ready
#   scripts/stack.sh down          stop a stack started with --detach
#   scripts/stack.sh stop NAME     stop one service of a running stack (e.g. blog-service)
#   scripts/stack.sh start NAME    start it again, exactly as `up` did, and wait until ready
# Environment: TITANIUM_VAR (state folder, default var/), TITANIUM_PORT_OFFSET (added to every
# service port, default 0), REDIS_PORT (6379), TITANIUM_BIN_DIR (use these binaries, no build).
# `up` records the binaries, ports and Redis port it used in $TITANIUM_VAR/run/stack.env, and
# `start` reuses them, so only TITANIUM_VAR has to match. Every service gets this script's
# environment: exported TRACE_* (e.g. TRACE_FLUSH_INTERVAL=500ms) and ADMIN_TOKEN settings reach
# them, and `up` records them in stack.env too (mode 600), so `start` launches with the same.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VAR="${TITANIUM_VAR:-$ROOT/var}"
RUN="$VAR/run"
LOGS="$VAR/log"
DATA="$VAR/data"
REDIS_PORT="${REDIS_PORT:-6379}"

OFFSET="${TITANIUM_PORT_OFFSET:-0}"
declare -A PORTS
set_ports() {
  PORTS=([auth-service]=$((7301 + OFFSET)) [user-service]=$((7302 + OFFSET)) [blog-service]=$((7303 + OFFSET))
         [api-gateway]=$((7200 + OFFSET)) [load-balancer]=$((7100 + OFFSET)))
}
set_ports
ORDER=(auth-service user-service blog-service api-gateway load-balancer)

stop_pid_file() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  # Front first, so nothing is routed to a stopped backend.
  for (( i=${#ORDER[@]}-1; i>=0; i-- )); do stop_pid_file "$RUN/${ORDER[$i]}.pid"; done
  stop_pid_file "$RUN/redis.pid"
  echo "stack stopped"
}

wait_ready() {
  local name="$1" url="$2"
  for _ in $(seq 1 300); do
    if curl -fsS -m 2 "$url" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name exited; last log lines:" >&2; tail -n 20 "$LOGS/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
  echo "$name not ready after 60 s: $url" >&2
  return 1
}

# Starts one service in the background with the stack's environment; its pid goes to $RUN.
launch() {
  local name="$1" bin="$2"
  env HTTP_HOST=127.0.0.1 HTTP_PORT="${PORTS[$name]}" DATA_DIR="$DATA/$name" LOG_LEVEL="${LOG_LEVEL:-info}" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    AUTH_SERVICE_URL="http://127.0.0.1:${PORTS[auth-service]}" USER_SERVICE_URL="http://127.0.0.1:${PORTS[user-service]}" \
    BLOG_SERVICE_URL="http://127.0.0.1:${PORTS[blog-service]}" JWKS_URL="http://127.0.0.1:${PORTS[auth-service]}/.well-known/jwks.json" \
    GATEWAY_URLS="http://127.0.0.1:${PORTS[api-gateway]}" DASHBOARD_DIR="$ROOT/dashboard-ui" TRUSTED_PROXIES="127.0.0.1/32" \
    STATS_TARGETS="api-gateway=http://127.0.0.1:${PORTS[api-gateway]},auth-service=http://127.0.0.1:${PORTS[auth-service]},user-service=http://127.0.0.1:${PORTS[user-service]},blog-service=http://127.0.0.1:${PORTS[blog-service]}" \
    setsid "$bin/$name" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

known_service() {
  [ -n "${1:-}" ] && [ -n "${PORTS[$1]:-}" ] && return 0
  echo "unknown service '${1:-}': one of ${ORDER[*]}" >&2
  exit 2
}

stop_one() {
  known_service "$1"
  stop_pid_file "$RUN/$1.pid"
  echo "$1 stopped"
}

start_one() {
  local name="$1"
  known_service "$name"
  [ -f "$RUN/stack.env" ] || { echo "no stack recorded in $RUN (start one with: $0 up --detach)" >&2; exit 1; }
  local BIN
  # shellcheck disable=SC1091
  source "$RUN/stack.env"
  set_ports
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name is already running (pid $(cat "$RUN/$name.pid"))"
    return 0
  fi
  launch "$name" "$BIN"
  wait_ready "$name" "http://127.0.0.1:${PORTS[$name]}/health/ready" || { stop_pid_file "$RUN/$name.pid"; exit 1; }
  echo "$name is up on port ${PORTS[$name]}"
}

up() {
  local detach="${1:-}"
  bash scripts/install-deps.sh run
  local bin="${TITANIUM_BIN_DIR:-}"
  if [ -z "$bin" ]; then
    swift build -c release
    bin="$(swift build -c release --show-bin-path)"
  fi
  # Chart.js comes from Debian's libjs-chart.js, linked in so nothing is fetched at run time.
  mkdir -p "$ROOT/dashboard-ui/vendor"
  ln -sf /usr/share/javascript/chart.js/chart.min.js "$ROOT/dashboard-ui/vendor/chart.min.js"
  mkdir -p "$RUN" "$LOGS" "$DATA"
  down >/dev/null 2>&1 || true

  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p "$DATA/redis"
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
      echo "redis: using the server already on port $REDIS_PORT"
    else
      setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" --save "" --appendonly no \
        >"$LOGS/redis.log" 2>&1 &
      echo $! >"$RUN/redis.pid"
    fi
  else
    echo "redis-server not installed: the cache and rate limiter run fail-open without it"
  fi

  # What `start NAME` needs to launch a service exactly as here.
  rm -f "$RUN/stack.env"
  (
    umask 077 # ADMIN_TOKEN may be in it
    {
      printf 'BIN=%q\nOFFSET=%q\nREDIS_PORT=%q\nLOG_LEVEL=%q\n' "$bin" "$OFFSET" "$REDIS_PORT" "${LOG_LEVEL:-info}"
      for var in $(compgen -e | grep -E '^(TRACE_[A-Z_]+|ADMIN_TOKEN)$' || true); do printf 'export %s=%q\n' "$var" "${!var}"; done
    } >"$RUN/stack.env"
  )
  for name in "${ORDER[@]}"; do launch "$name" "$bin"; done
  for name in "${ORDER[@]}"; do
    wait_ready "$name" "http://127.0.0.1:${PORTS[$name]}/health/ready" || { down; exit 1; }
  done
  echo "Titanium is up: http://127.0.0.1:${PORTS[load-balancer]}  (logs: $LOGS, data: $DATA)"

  if [ "$detach" = "--detach" ]; then
    echo "stop it with: make down"
    return 0
  fi
  trap 'echo; down; exit 0' INT TERM
  echo "Ctrl-C stops the stack"
  while true; do
    for name in "${ORDER[@]}"; do
      # A service stopped on purpose (`stop NAME`) has no pid file.
      [ -f "$RUN/$name.pid" ] || continue
      if ! kill -0 "$(cat "$RUN/$name.pid" 2>/dev/null)" 2>/dev/null; then
        echo "$name stopped unexpectedly; see $LOGS/$name.log" >&2
        down; exit 1
      fi
    done
    sleep 1
  done
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  stop) stop_one "${2:-}" ;;
  start) start_one "${2:-}" ;;
  *) echo "usage: $0 up [--detach] | down | stop NAME | start NAME" >&2; exit 2 ;;
esac
