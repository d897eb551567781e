#!/usr/bin/env bash
# The local stack: Redis (when installed) and the five services, data under var/.
#   scripts/stack.sh up            build (release), start, wait until ready, stay in the
#                                  foreground; Ctrl-C stops everything
#   scripts/stack.sh up --detach   the same, returning once the stack is ready
#   scripts/stack.sh down          stop a stack started with --detach
#   scripts/stack.sh stop NAME     stop one service of a running stack (e.g. blog-service)
#   scripts/stack.sh start NAME    start it again, exactly as `up` did, and wait until ready
#   scripts/stack.sh restart NAME  stop it (SIGTERM: it drains) and start it again; a gateway
#                                  replica is restarted only once the load balancer sees every
#                                  other replica healthy, and `restart` returns once the load
#                                  balancer sees the new one healthy again; a service whose
#                                  listener shares its port (SO_REUSEPORT: its "listening" log
#                                  line says "reuse_port":"true") gets its new process first,
#                                  listening beside the old one, which is stopped once the new
#                                  one is ready, so its port never refuses a connection
#   scripts/stack.sh names         the service names of the running stack, in start order
# Environment: TITANIUM_VAR (state folder, default var/), TITANIUM_PORT_OFFSET (added to every
# service port, default 0), REDIS_PORT (6379), TITANIUM_BIN_DIR (use these binaries, no build),
# GATEWAY_REPLICAS (api-gateway processes, default 1: the second is `api-gateway-2` on the next
# port, 7201, and so on; the load balancer balances over all of them and its /stats lists each).
# `up` records the binaries, ports, replicas and Redis port it used in $TITANIUM_VAR/run/stack.env,
# and `start` reuses them, so only TITANIUM_VAR has to match. Every service gets this script's
# environment: exported TRACE_*, BACKEND_*, RATE_LIMIT_*, SHUTDOWN_*_SECONDS, DATABASE_* (user- and
# blog-service on PostgreSQL: DATABASE_URL=postgres://…), OTEL_* and ADMIN_TOKEN settings reach them, and `up` records them in stack.env too (mode 600), so `start` launches
# with the same.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VAR="${TITANIUM_VAR:-$ROOT/var}"
RUN="$VAR/run"
LOGS="$VAR/log"
DATA="$VAR/data"
REDIS_PORT="${REDIS_PORT:-6379}"

OFFSET="${TITANIUM_PORT_OFFSET:-0}"
GATEWAY_REPLICAS="${GATEWAY_REPLICAS:-1}"
declare -A PORTS
# PORTS, ORDER (start order) and GATEWAYS (the api-gateway processes) from OFFSET and GATEWAY_REPLICAS.
set_ports() {
  case "$GATEWAY_REPLICAS" in
    [1-9]) ;;
    *) echo "GATEWAY_REPLICAS must be 1 to 9: $GATEWAY_REPLICAS" >&2; exit 2 ;;
  esac
  PORTS=([auth-service]=$((7301 + OFFSET)) [user-service]=$((7302 + OFFSET)) [blog-service]=$((7303 + OFFSET))
         [api-gateway]=$((7200 + OFFSET)) [load-balancer]=$((7100 + OFFSET)))
  GATEWAYS=(api-gateway)
  local n
  for (( n=2; n<=GATEWAY_REPLICAS; n++ )); do
    PORTS[api-gateway-$n]=$((7200 + n - 1 + OFFSET))
    GATEWAYS+=("api-gateway-$n")
  done
  ORDER=(auth-service user-service blog-service "${GATEWAYS[@]}" load-balancer)
}
set_ports

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
  load_stack_env
  # Front first, so nothing is routed to a stopped backend.
  for (( i=${#ORDER[@]}-1; i>=0; i-- )); do stop_pid_file "$RUN/${ORDER[$i]}.pid"; done
  # Gateway replicas of a stack started with more GATEWAY_REPLICAS than this shell has.
  local extra
  for extra in "$RUN"/api-gateway-*.pid; do [ -e "$extra" ] && stop_pid_file "$extra"; done
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
  local name="$1" bin="$2" exe="$1" gateway gateway_urls="" stats_gateways=""
  case "$name" in api-gateway-*) exe=api-gateway ;; esac
  for gateway in "${GATEWAYS[@]}"; do
    gateway_urls+="${gateway_urls:+,}http://127.0.0.1:${PORTS[$gateway]}"
    stats_gateways+="api-gateway=http://127.0.0.1:${PORTS[$gateway]},"
  done
  env HTTP_HOST=127.0.0.1 HTTP_PORT="${PORTS[$name]}" DATA_DIR="$DATA/$name" LOG_LEVEL="${LOG_LEVEL:-info}" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    AUTH_SERVICE_URL="http://127.0.0.1:${PORTS[auth-service]}" USER_SERVICE_URL="http://127.0.0.1:${PORTS[user-service]}" \
    BLOG_SERVICE_URL="http://127.0.0.1:${PORTS[blog-service]}" JWKS_URL="http://127.0.0.1:${PORTS[auth-service]}/.well-known/jwks.json" \
    GATEWAY_URLS="$gateway_urls" DASHBOARD_DIR="$ROOT/dashboard-ui" TRUSTED_PROXIES="127.0.0.1/32" \
    STATS_TARGETS="${stats_gateways}auth-service=http://127.0.0.1:${PORTS[auth-service]},user-service=http://127.0.0.1:${PORTS[user-service]},blog-service=http://127.0.0.1:${PORTS[blog-service]}" \
    setsid "$bin/$exe" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# What `up` recorded (binaries, ports, replicas, settings), when there is a stack in $RUN.
load_stack_env() {
  [ -f "$RUN/stack.env" ] || return 0
  # shellcheck disable=SC1091
  source "$RUN/stack.env"
  set_ports
}

known_service() {
  [ -n "${1:-}" ] && [ -n "${PORTS[$1]:-}" ] && return 0
  echo "unknown service '${1:-}': one of ${ORDER[*]}" >&2
  exit 2
}

stop_one() {
  load_stack_env
  known_service "$1"
  stop_pid_file "$RUN/$1.pid"
  echo "$1 stopped"
}

start_one() {
  local name="$1"
  [ -f "$RUN/stack.env" ] || { echo "no stack recorded in $RUN (start one with: $0 up --detach)" >&2; exit 1; }
  local BIN
  load_stack_env
  known_service "$name"
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name is already running (pid $(cat "$RUN/$name.pid"))"
    return 0
  fi
  launch "$name" "$BIN"
  wait_ready "$name" "http://127.0.0.1:${PORTS[$name]}/health/ready" || { stop_pid_file "$RUN/$name.pid"; exit 1; }
  echo "$name is up on port ${PORTS[$name]}"
}

# gateways_in_rotation [EXCEPT]: waits (up to 60 s) until the load balancer's /stats shows every
# gateway replica but EXCEPT healthy and not ejected. Without jq it waits 8 s instead (four
# health checks at the default BACKEND_CHECK_INTERVAL_MS).
gateways_in_rotation() {
  local except="${1:-}" wanted="" gateway
  for gateway in "${GATEWAYS[@]}"; do
    [ "$gateway" = "$except" ] || wanted+="${wanted:+ }http://127.0.0.1:${PORTS[$gateway]}"
  done
  [ -n "$wanted" ] || return 0
  if ! command -v jq >/dev/null 2>&1; then sleep 8; return 0; fi
  local stats
  for _ in $(seq 1 120); do
    stats="$(curl -fsS -m 2 "http://127.0.0.1:${PORTS[load-balancer]}/stats" 2>/dev/null || true)"
    if [ -n "$stats" ] && jq -e --arg wanted "$wanted" '
        ($wanted | split(" ")) as $urls
        | [.backends[] | select(.url as $u | $urls | index($u)) | select(.healthy and (.ejected | not))] | length == ($urls | length)
      ' >/dev/null 2>&1 <<<"$stats"; then
      return 0
    fi
    sleep 0.5
  done
  echo "the load balancer does not see every gateway replica ($wanted) healthy after 60 s" >&2
  return 1
}

# Whether NAME's running process listens with SO_REUSEPORT (its last "listening" line says so),
# so that a new process can listen on its port beside it.
shares_port() {
  grep '"message":"listening"' "$LOGS/$1.log" 2>/dev/null | tail -n 1 | grep -q '"reuse_port":"true"'
}

# handover NAME: a new process on NAME's port beside the running one; once it listens and the
# port answers ready, the old one gets SIGTERM and drains (its listener closes, its connections
# end after their answers), so the port never refuses a connection.
handover() {
  local name="$1" old listening
  old="$(cat "$RUN/$name.pid")"
  listening="$(grep -c '"message":"listening"' "$LOGS/$name.log" || true)"
  launch "$name" "$BIN"
  for _ in $(seq 1 300); do
    [ "$(grep -c '"message":"listening"' "$LOGS/$name.log" || true)" -gt "$listening" ] && break
    kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || { echo "$name: the new process exited; last log lines:" >&2; tail -n 20 "$LOGS/$name.log" >&2; echo "$old" >"$RUN/$name.pid"; exit 1; }
    sleep 0.1
  done
  wait_ready "$name" "http://127.0.0.1:${PORTS[$name]}/health/ready" || exit 1
  local new
  new="$(cat "$RUN/$name.pid")"
  echo "$old" >"$RUN/$name.old.pid"
  stop_pid_file "$RUN/$name.old.pid"
  echo "$new" >"$RUN/$name.pid"
}

# Stops one service (SIGTERM: it drains) and starts it again. A gateway replica goes only when
# the load balancer has every other replica in rotation, and is back once it has this one again,
# so that the load balancer always has a gateway to send to (its port is not handed over: the
# load balancer would take the draining answers of the old process for the new one's). The other
# services run one process each: when it shares its port the new process takes over (handover);
# otherwise its port is closed between the old one's exit and the new one's readiness.
restart_one() {
  local name="$1"
  [ -f "$RUN/stack.env" ] || { echo "no stack recorded in $RUN (start one with: $0 up --detach)" >&2; exit 1; }
  load_stack_env
  known_service "$name"
  local gateway=0 started
  case "$name" in api-gateway | api-gateway-*) gateway=1 ;; esac
  if [ "$gateway" = 1 ] && [ "${#GATEWAYS[@]}" -gt 1 ]; then gateways_in_rotation "$name" || exit 1; fi
  started="$(date +%s.%N)"
  if [ "$gateway" = 0 ] && shares_port "$name"; then
    handover "$name"
  else
    stop_pid_file "$RUN/$name.pid"
    ( start_one "$name" ) >/dev/null || exit 1
  fi
  if [ "$gateway" = 1 ] || [ "$name" = load-balancer ]; then gateways_in_rotation || exit 1; fi
  echo "$name restarted (pid $(cat "$RUN/$name.pid"), $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s)"
}

# The service names of the stack, in start order (one line each).
names() {
  load_stack_env
  printf '%s\n' "${ORDER[@]}"
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
  # In a subshell: down reads the previous stack's stack.env, which must not replace this one's settings.
  ( down ) >/dev/null 2>&1 || true

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
      printf 'BIN=%q\nOFFSET=%q\nREDIS_PORT=%q\nLOG_LEVEL=%q\nGATEWAY_REPLICAS=%q\n' \
        "$bin" "$OFFSET" "$REDIS_PORT" "${LOG_LEVEL:-info}" "$GATEWAY_REPLICAS"
      for var in $(compgen -e | grep -E '^(TRACE_[A-Z_]+|BACKEND_[A-Z_]+|RATE_LIMIT_[A-Z_]+|SHUTDOWN_(DELAY|GRACE)_SECONDS|DATABASE_[A-Z_]+|OTEL_[A-Z_]+|ADMIN_TOKEN)$' || true); do printf 'export %s=%q\n' "$var" "${!var}"; done
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
  restart) restart_one "${2:-}" ;;
  names) names ;;
  *) echo "usage: $0 up [--detach] | down | stop NAME | start NAME | restart NAME | names" >&2; exit 2 ;;
esac
