#!/usr/bin/env bash
# The load balancer as a proxy, side by side in one run:
#   1. lb     vs nginx   the load balancer and nginx proxy_pass (1 worker, keepalive upstream)
#                        in front of the same backend (a separate nginx answering `return 200`
#                        with a small JSON body), GET /api/bench, wrk -t1 -c64; beside them a
#                        second load balancer with TRACE_SAMPLE_RATIO=0.01 (SAMPLED_RATIO), which
#                        records a trace row for 1 % of the requests instead of every one
#   2. chain  vs direct  GET /api/posts through load-balancer → api-gateway → blog-service
#                        against blog-service direct (200 posts, the newest 20 per page), wrk -t1 -c64
#   3. chain  vs direct  at a fixed 1,000 requests/s: hey -c 10 -q 100 (Debian `hey`; -q is per
#                        worker, and the workers tick together: 10 requests every 10 ms)
# Rounds alternate the two targets of each part (A, B, A, B, …); medians, ratios and the
# verdicts at the end.
#
# Environment:
#   ROUNDS (3), DURATION (10s)      rounds of each part, length of one wrk run
#   RATE_DURATION (DURATION)        length of one fixed-rate hey run
#   RATE (1000), RATE_WORKERS (10)  the fixed rate and hey's workers (-q RATE/RATE_WORKERS each)
#   LOG_LEVEL (info)                the services' level: info writes one JSON access line per
#                                   request (to a file), as the other benchmarks and the stack do;
#                                   notice turns access lines off
#   PIN=1                           servers (nginx, Titanium) on CPU 0, wrk/hey on CPU 1
#   PORT_BASE (12100)               ports PORT_BASE+1 … PORT_BASE+15 on 127.0.0.1
#   SAMPLED_RATIO (0.01)            TRACE_SAMPLE_RATIO of the sampled load balancer in part 1
#   TITANIUM_BIN_DIR                release binaries (default .build/release); nothing is built
#   PARTS ("proxy chain rate")      which parts to run; the summary covers those run. Also
#                                   "breakdown": the load balancer as in part 1 against copies with
#                                   the trace store off, with the trace store and access lines
#                                   off, and with one event-loop thread (HTTP_EVENT_LOOPS=1),
#                                   alternating; requests/s, p99 and CPU per request of each.
#                                   "floor": what SwiftNIO itself costs a proxy. proxy-floor (the
#                                   least HTTP/1 proxy on NIOHTTP1, Benchmarks/proxy/Floor) and
#                                   its byte relay (`tcp`, no HTTP parsed) against the load balancer
#                                   bare and in full and nginx proxy_pass, same backend, alternating;
#                                   and the chain with two proxy-floor hops in front of blog-service
#                                   against the real chain and blog-service direct
#   THREADS=1                       each wrk run also prints, per process under test, the CPU per
#                                   request of its event loops and of its other threads (trace
#                                   writer, Swift concurrency) and its involuntary context
#                                   switches per request (from /proc/<pid>/task/*), to stderr
#   PERF=1                          afterwards, one more lb run under `perf record -g` on the
#                                   load balancer; prints the top symbols (perf report --no-children);
#                                   PERF_DATA=FILE keeps perf.data
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
RATE_DURATION="${RATE_DURATION:-$DURATION}"
RATE="${RATE:-1000}"
RATE_WORKERS="${RATE_WORKERS:-10}"
LOG_LEVEL="${LOG_LEVEL:-info}"
PARTS="${PARTS:-proxy chain rate}"
PORT_BASE="${PORT_BASE:-12100}"
BIN_DIR="${TITANIUM_BIN_DIR:-$ROOT/.build/release}"
SERVER_CPU=(); CLIENT_CPU=()
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi

command -v wrk >/dev/null && command -v nginx >/dev/null || bash scripts/install-deps.sh bench
command -v hey >/dev/null || { echo "hey is missing: apt-get install hey" >&2; exit 1; }
binaries="load-balancer api-gateway blog-service"
if [[ " $PARTS " == *" floor "* ]]; then binaries+=" proxy-floor"; fi
for name in $binaries; do
  [ -x "$BIN_DIR/$name" ] || { echo "no release binary $BIN_DIR/$name (swift build -c release, or set TITANIUM_BIN_DIR)" >&2; exit 1; }
done

BACKEND_PORT=$((PORT_BASE + 1))   # nginx return 200
NGINX_PORT=$((PORT_BASE + 2))     # nginx proxy_pass → backend
LB_PORT=$((PORT_BASE + 3))        # load balancer → backend
BLOG_PORT=$((PORT_BASE + 4))
GATEWAY_PORT=$((PORT_BASE + 5))
CHAIN_PORT=$((PORT_BASE + 6))     # load balancer → gateway → blog
UNUSED_PORT=$((PORT_BASE + 9))    # auth, user, Redis, JWKS: not needed for GET /api/posts
NOTRACE_PORT=$((PORT_BASE + 7))   # breakdown: load balancer, trace store off
BARE_PORT=$((PORT_BASE + 8))      # breakdown: trace store and access lines off
ONELOOP_PORT=$((PORT_BASE + 10))  # breakdown: one event-loop thread
TCP_FLOOR_PORT=$((PORT_BASE + 11))   # floor: proxy-floor tcp → backend
HTTP_FLOOR_PORT=$((PORT_BASE + 12))  # floor: proxy-floor http → backend
FLOOR_HOP2_PORT=$((PORT_BASE + 13))  # floor: proxy-floor http → blog
FLOOR_CHAIN_PORT=$((PORT_BASE + 14)) # floor: proxy-floor http → proxy-floor http → blog
SAMPLED_PORT=$((PORT_BASE + 15))     # load balancer → backend at TRACE_SAMPLE_RATIO=SAMPLED_RATIO
SAMPLED_RATIO="${SAMPLED_RATIO:-0.01}"
for port in $BACKEND_PORT $NGINX_PORT $LB_PORT $BLOG_PORT $GATEWAY_PORT $CHAIN_PORT $UNUSED_PORT $NOTRACE_PORT $BARE_PORT $ONELOOP_PORT \
            $TCP_FLOOR_PORT $HTTP_FLOOR_PORT $FLOOR_HOP2_PORT $FLOOR_CHAIN_PORT $SAMPLED_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is taken: set PORT_BASE" >&2; exit 1; fi
done

work="$(mktemp -d)"
chmod 755 "$work"   # nginx workers run as nobody
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy of the binaries: a rebuild in the tree during the run does not swap them underneath.
mkdir -p "$work/bin"
for name in $binaries; do cp "$BIN_DIR/$name" "$work/bin/"; done

nginx_start() { # NAME, http block body
  local dir="$work/$1"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  $2
}
EOF
  "${SERVER_CPU[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 & pids+=($!)
  eval "nginx_${1}_pid=$!"
}
# keepalive_requests: the backend never closes a proxy's connection, for either proxy.
nginx_start backend "keepalive_requests 10000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { default_type application/json; return 200 '{\"ok\":true}'; } }"
nginx_start proxy "upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

service_start() { # NAME BINARY PORT [VAR=VALUE…]
  local name="$1" binary="$2" port="$3"; shift 3
  env HTTP_HOST=127.0.0.1 HTTP_PORT="$port" DATA_DIR="$work/$name" LOG_LEVEL="$LOG_LEVEL" "$@" \
    "${SERVER_CPU[@]}" "$work/bin/$binary" >"$work/$name.log" 2>&1 & pids+=($!)
  eval "${name//-/_}_pid=$!"
}
stats="STATS_TARGETS=api-gateway=http://127.0.0.1:$GATEWAY_PORT,blog-service=http://127.0.0.1:$BLOG_PORT"
service_start lb load-balancer "$LB_PORT" GATEWAY_URLS="http://127.0.0.1:$BACKEND_PORT" "$stats" DASHBOARD_DIR="$ROOT/dashboard-ui"
if [[ " $PARTS " == *" proxy "* ]]; then
  service_start lb_sampled load-balancer "$SAMPLED_PORT" GATEWAY_URLS="http://127.0.0.1:$BACKEND_PORT" "$stats" \
    DASHBOARD_DIR="$ROOT/dashboard-ui" TRACE_SAMPLE_RATIO="$SAMPLED_RATIO"
fi
if [[ " $PARTS " == *" breakdown "* ]]; then
  service_start lb_notrace load-balancer "$NOTRACE_PORT" GATEWAY_URLS="http://127.0.0.1:$BACKEND_PORT" "$stats" TRACE_ENABLED=false
fi
if [[ " $PARTS " == *" breakdown "* || " $PARTS " == *" floor "* ]]; then
  service_start lb_bare load-balancer "$BARE_PORT" GATEWAY_URLS="http://127.0.0.1:$BACKEND_PORT" "$stats" TRACE_ENABLED=false LOG_LEVEL=notice
fi
if [[ " $PARTS " == *" floor "* ]]; then
  floor_start() { # NAME MODE PORT UPSTREAM_PORT
    "${SERVER_CPU[@]}" "$work/bin/proxy-floor" "$2" "$3" "$4" >"$work/$1.log" 2>&1 & pids+=($!)
    eval "${1}_pid=$!"
  }
  floor_start tcp_floor tcp "$TCP_FLOOR_PORT" "$BACKEND_PORT"
  floor_start http_floor http "$HTTP_FLOOR_PORT" "$BACKEND_PORT"
  floor_start floor_hop2 http "$FLOOR_HOP2_PORT" "$BLOG_PORT"
  floor_start floor_chain http "$FLOOR_CHAIN_PORT" "$FLOOR_HOP2_PORT"
fi
if [[ " $PARTS " == *" breakdown "* ]]; then
  service_start lb_oneloop load-balancer "$ONELOOP_PORT" GATEWAY_URLS="http://127.0.0.1:$BACKEND_PORT" "$stats" HTTP_EVENT_LOOPS=1
fi
service_start blog blog-service "$BLOG_PORT" JWKS_URL="http://127.0.0.1:$UNUSED_PORT/.well-known/jwks.json"
service_start gateway api-gateway "$GATEWAY_PORT" BLOG_SERVICE_URL="http://127.0.0.1:$BLOG_PORT" \
  AUTH_SERVICE_URL="http://127.0.0.1:$UNUSED_PORT" USER_SERVICE_URL="http://127.0.0.1:$UNUSED_PORT" \
  REDIS_URL="redis://127.0.0.1:$UNUSED_PORT" RATE_LIMIT_ENABLED=false TRUSTED_PROXIES=127.0.0.1/32
service_start chain load-balancer "$CHAIN_PORT" GATEWAY_URLS="http://127.0.0.1:$GATEWAY_PORT" "$stats" DASHBOARD_DIR="$ROOT/dashboard-ui"

wait_for() { # URL NAME
  for _ in $(seq 1 150); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$2 did not answer $1; last log lines:" >&2; tail -n 20 "$work/$2"*.log "$work/$2"/*.log 2>/dev/null >&2 || true
  exit 1
}
wait_for "http://127.0.0.1:$BACKEND_PORT/api/bench" backend
wait_for "http://127.0.0.1:$NGINX_PORT/api/bench" proxy
wait_for "http://127.0.0.1:$BLOG_PORT/health/live" blog
# 200 posts straight into blog.db, as in Benchmarks/services (the service created the schema).
python3 - "$work/blog/blog.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=5)
now = int(time.time() * 1000)
db.executemany("INSERT INTO posts (author_id, author, title, body, created_at, updated_at) VALUES (1, 'bench', ?, ?, ?, ?)",
               [(f"Post {i}", "Lorem ipsum dolor sit amet. " * 20, now + i, now + i) for i in range(200)])
db.commit()
PY
wait_for "http://127.0.0.1:$LB_PORT/api/bench" lb
if [[ " $PARTS " == *" proxy "* ]]; then wait_for "http://127.0.0.1:$SAMPLED_PORT/api/bench" lb_sampled; fi
if [[ " $PARTS " == *" breakdown "* ]]; then
  wait_for "http://127.0.0.1:$NOTRACE_PORT/api/bench" lb_notrace
  wait_for "http://127.0.0.1:$ONELOOP_PORT/api/bench" lb_oneloop
fi
if [[ " $PARTS " == *" breakdown "* || " $PARTS " == *" floor "* ]]; then
  wait_for "http://127.0.0.1:$BARE_PORT/api/bench" lb_bare
fi
if [[ " $PARTS " == *" floor "* ]]; then
  wait_for "http://127.0.0.1:$TCP_FLOOR_PORT/api/bench" tcp_floor
  wait_for "http://127.0.0.1:$HTTP_FLOOR_PORT/api/bench" http_floor
  wait_for "http://127.0.0.1:$FLOOR_CHAIN_PORT/api/posts" floor_chain
fi
wait_for "http://127.0.0.1:$GATEWAY_PORT/api/posts" gateway
wait_for "http://127.0.0.1:$CHAIN_PORT/api/posts" chain
direct_body=$(curl -fs "http://127.0.0.1:$BLOG_PORT/api/posts")
chain_body=$(curl -fs "http://127.0.0.1:$CHAIN_PORT/api/posts")
[ "$direct_body" = "$chain_body" ] || { echo "the chain answers differently from blog-service direct" >&2; exit 1; }
if [[ " $PARTS " == *" floor "* ]]; then
  [ "$direct_body" = "$(curl -fs "http://127.0.0.1:$FLOOR_CHAIN_PORT/api/posts")" ] || { echo "the floor chain answers differently from blog-service direct" >&2; exit 1; }
fi
echo "GET /api/posts: ${#direct_body} bytes; backend: $(curl -fs "http://127.0.0.1:$BACKEND_PORT/api/bench")"

cpu_ticks() { # PID… -> user + system clock ticks of these processes and their children (nginx workers)
  local pid total=0
  for pid in "$@" $(pgrep -P "$(IFS=,; echo "$*")" || true); do
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
: >"$work/errors"
thread_stats() { # PID… -> per process (and its children): "NAME LOOP_TICKS OTHER_TICKS INVOLUNTARY_SWITCHES" lines
  local pid task ticks name
  for pid in "$@" $(pgrep -P "$(IFS=,; echo "$*")" || true); do
    local loops=0 others=0 switches=0
    for task in /proc/"$pid"/task/*; do
      ticks=$(sed 's/.*) //' "$task/stat" | awk '{ print $12 + $13 }')
      name=$(cat "$task/comm")
      # SwiftNIO's event-loop threads are named NIO-…; nginx's worker is single-threaded.
      if [[ "$name" == NIO-* || "$name" == nginx ]]; then loops=$((loops + ticks)); else others=$((others + ticks)); fi
      switches=$((switches + $(awk '/^nonvoluntary_ctxt_switches/ { print $2 }' "$task/status")))
    done
    echo "$(cat "/proc/$pid/comm") $loops $others $switches"
  done
}
run() { # [--split] URL PID… -> "requests_per_second p99_ms cpu_us_per_request" (CPU of the PIDs); errors are counted
  # --split: the CPU per request of each PID follows (for the chain).
  # THREADS=1: per process, the CPU per request of its event loops and of its other threads, and
  # its involuntary context switches per request, to stderr.
  local each=0
  if [ "$1" = --split ]; then each=1; shift; fi
  local url="$1"; shift
  local before=() after=() out pid split="" threads_before=""
  for pid in "$@"; do before+=("$(cpu_ticks "$pid")"); done
  if [ "${THREADS:-0}" = 1 ]; then threads_before=$(thread_stats "$@"); fi
  out=$("${CLIENT_CPU[@]}" wrk -t1 -c64 -d"$DURATION" --latency "$url")
  for pid in "$@"; do after+=("$(cpu_ticks "$pid")"); done
  if [ "${THREADS:-0}" = 1 ]; then
    paste -d' ' <(echo "$threads_before") <(thread_stats "$@") | awk -v n="$(awk '/ requests in / { print $1 }' <<<"$out")" -v tick="$TICK_US" -v url="$url" '
      $6 + $7 == $2 + $3 { next }  # idle (nginx'"'"'s master)
      { printf "threads %s %s: event loops %.1f µs, other threads %.1f µs, %.3f involuntary switches per request\n", url, $1, ($6 - $2) * tick / n, ($7 - $3) * tick / n, ($8 - $4) / n }' >&2
  fi
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "errors from $url: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" >&2; echo "$url" >>"$work/errors"
  fi
  local total=0 i
  for i in "${!before[@]}"; do
    total=$((total + after[i] - before[i])); split+=" $(((after[i] - before[i]) * TICK_US))"
  done
  awk -v cpu_us=$((total * TICK_US)) -v each="$( [ "$each" = 1 ] && echo "$split" )" '
    / requests in / { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v = v * 1000 }; p99 = v }
    END { printf "%s %s %.1f", rps, p99, cpu_us / n; c = split(each, parts, " "); for (k = 1; k <= c; k++) printf " %.1f", parts[k] / n; printf "\n" }' <<<"$out"
}
run_rate() { # URL PID… -> the same at RATE requests/s (hey: RATE_WORKERS workers, -q per worker)
  local url="$1"; shift
  local before out after
  before=$(cpu_ticks "$@")
  out=$("${CLIENT_CPU[@]}" hey -c "$RATE_WORKERS" -q $((RATE / RATE_WORKERS)) -z "$RATE_DURATION" "$url")
  after=$(cpu_ticks "$@")
  if [ "$(grep -cE '^\s*\[[0-9]+\]' <<<"$out")" != 1 ] || ! grep -qE '^\s*\[200\]' <<<"$out" || grep -q 'Error distribution' <<<"$out"; then
    echo "errors from $url: $(sed -n '/Status code distribution/,$p' <<<"$out" | tr '\n' ' ')" >&2; echo "$url" >>"$work/errors"
  fi
  awk -v cpu_us=$(((after - before) * TICK_US)) '
    /^ +\[200\]/ { n = $2 }
    /Requests\/sec/ { rps = $2 }
    /^ +99% in/ { p99 = $3 * 1000 }
    END { printf "%.2f %.2f %.1f\n", rps, p99, cpu_us / (n ? n : 1) }' <<<"$out"
}

# Warm-up: connections, pools, the first metric series.
warm=("http://127.0.0.1:$LB_PORT/api/bench" "http://127.0.0.1:$NGINX_PORT/api/bench"
      "http://127.0.0.1:$CHAIN_PORT/api/posts" "http://127.0.0.1:$BLOG_PORT/api/posts")
if [[ " $PARTS " == *" floor "* ]]; then
  warm+=("http://127.0.0.1:$TCP_FLOOR_PORT/api/bench" "http://127.0.0.1:$HTTP_FLOOR_PORT/api/bench"
         "http://127.0.0.1:$BARE_PORT/api/bench" "http://127.0.0.1:$FLOOR_CHAIN_PORT/api/posts")
fi
for url in "${warm[@]}"; do
  "${CLIENT_CPU[@]}" wrk -t1 -c64 -d3s "$url" >/dev/null
done

# cpu_us: CPU time per request of the proxy under test (lb, nginx proxy_pass), of the three
# services (chain) or of blog-service (direct).
if [[ " $PARTS " == *" proxy "* ]]; then
  echo "round lb_rps lb_p99_ms lb_cpu_us nginx_rps nginx_p99_ms nginx_cpu_us sampled_rps sampled_p99_ms sampled_cpu_us"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(run "http://127.0.0.1:$LB_PORT/api/bench" "$lb_pid")
    b=$(run "http://127.0.0.1:$NGINX_PORT/api/bench" "$nginx_proxy_pid")
    c=$(run "http://127.0.0.1:$SAMPLED_PORT/api/bench" "$lb_sampled_pid")
    echo "$round $a $b $c" | tee -a "$work/proxy.results"
  done
  echo "trace rows written: ratio 1 $(curl -fs "http://127.0.0.1:$LB_PORT/metrics" | awk '$1 == "trace_records_written_total" {print $2}'), ratio $SAMPLED_RATIO $(curl -fs "http://127.0.0.1:$SAMPLED_PORT/metrics" | awk '$1 == "trace_records_written_total" {print $2}') (unsampled, not recorded: $(curl -fs "http://127.0.0.1:$SAMPLED_PORT/metrics" | awk '$1 == "trace_records_unsampled_total" {print $2}'))"
fi
if [[ " $PARTS " == *" breakdown "* ]]; then
  echo "round lb_rps lb_p99_ms lb_cpu_us notrace_rps notrace_p99_ms notrace_cpu_us bare_rps bare_p99_ms bare_cpu_us oneloop_rps oneloop_p99_ms oneloop_cpu_us"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(run "http://127.0.0.1:$LB_PORT/api/bench" "$lb_pid")
    b=$(run "http://127.0.0.1:$NOTRACE_PORT/api/bench" "$lb_notrace_pid")
    c=$(run "http://127.0.0.1:$BARE_PORT/api/bench" "$lb_bare_pid")
    d=$(run "http://127.0.0.1:$ONELOOP_PORT/api/bench" "$lb_oneloop_pid")
    echo "$round $a $b $c $d" | tee -a "$work/breakdown.results"
  done
  python3 - "$work/breakdown.results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split()[1:])) for line in open(sys.argv[1])]
for k, name in enumerate(["lb", "notrace", "bare", "oneloop"]):
    rps, p99, cpu = (statistics.median(r[3 * k + j] for r in rows) for j in range(3))
    print(f"median {name}: {rps:,.0f} req/s, p99 {p99:.2f} ms, {cpu:.1f} µs CPU per request")
PY
fi
if [[ " $PARTS " == *" chain "* ]]; then
  echo "round chain_rps chain_p99_ms chain_cpu_us direct_rps direct_p99_ms direct_cpu_us   chain_cpu_us: lb gateway blog"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(run --split "http://127.0.0.1:$CHAIN_PORT/api/posts" "$chain_pid" "$gateway_pid" "$blog_pid")
    b=$(run "http://127.0.0.1:$BLOG_PORT/api/posts" "$blog_pid")
    read -r rps p99 cpu lbcpu gwcpu blogcpu <<<"$a"
    echo "$round $rps $p99 $cpu $b   $lbcpu $gwcpu $blogcpu" | tee -a "$work/chain.results"
  done
fi
if [[ " $PARTS " == *" rate "* ]]; then
  echo "round chain_rps chain_p99_ms chain_cpu_us direct_rps direct_p99_ms direct_cpu_us   (hey -c $RATE_WORKERS -q $((RATE / RATE_WORKERS)) -z $RATE_DURATION)"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(run_rate "http://127.0.0.1:$CHAIN_PORT/api/posts" "$chain_pid" "$gateway_pid" "$blog_pid")
    b=$(run_rate "http://127.0.0.1:$BLOG_PORT/api/posts" "$blog_pid")
    echo "$round $a $b" | tee -a "$work/rate.results"
  done
fi

# Last: its many requests grow the stores of the load balancer and blog-service that the parts above use.
keep_row() { # NAME ROW: appended to NAME.results and shown; a run without figures (16 fields a row) stops the script
  [ "$(wc -w <<<"$2")" = 16 ] || { echo "a $1 run gave no figures: $2" >&2; exit 1; }
  echo "$2" | tee -a "$work/$1.results"
}
if [[ " $PARTS " == *" floor "* ]]; then
  echo "round tcp_floor_rps p99_ms cpu_us http_floor_rps p99_ms cpu_us lb_bare_rps p99_ms cpu_us lb_rps p99_ms cpu_us nginx_rps p99_ms cpu_us"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(run "http://127.0.0.1:$TCP_FLOOR_PORT/api/bench" "$tcp_floor_pid")
    b=$(run "http://127.0.0.1:$HTTP_FLOOR_PORT/api/bench" "$http_floor_pid")
    c=$(run "http://127.0.0.1:$BARE_PORT/api/bench" "$lb_bare_pid")
    d=$(run "http://127.0.0.1:$LB_PORT/api/bench" "$lb_pid")
    e=$(run "http://127.0.0.1:$NGINX_PORT/api/bench" "$nginx_proxy_pid")
    keep_row floor "$round $a $b $c $d $e"
  done
  echo "round floor_chain_rps p99_ms cpu_us chain_rps p99_ms cpu_us direct_rps p99_ms cpu_us   floor_chain_cpu_us: hop1 hop2 blog   chain_cpu_us: lb gateway blog"
  for round in $(seq 1 "$ROUNDS"); do
    read -r a1 a2 a3 as1 as2 as3 <<<"$(run --split "http://127.0.0.1:$FLOOR_CHAIN_PORT/api/posts" "$floor_chain_pid" "$floor_hop2_pid" "$blog_pid")"
    read -r b1 b2 b3 bs1 bs2 bs3 <<<"$(run --split "http://127.0.0.1:$CHAIN_PORT/api/posts" "$chain_pid" "$gateway_pid" "$blog_pid")"
    c=$(run "http://127.0.0.1:$BLOG_PORT/api/posts" "$blog_pid")
    keep_row floor_chain "$round $a1 $a2 $a3 $b1 $b2 $b3 $c   $as1 $as2 $as3   $bs1 $bs2 $bs3"
  done
  python3 - "$work/floor.results" "$work/floor_chain.results" <<'PY'
import statistics, sys
def medians(path, names):
    rows = [list(map(float, line.split()[1:])) for line in open(path)]
    m = {name: [statistics.median(r[3 * k + j] for r in rows) for j in range(3)] for k, name in enumerate(names)}
    return m, rows
m, rows = medians(sys.argv[1], ["tcp floor", "http floor", "lb bare", "lb", "nginx"])
for name, (rps, p99, cpu) in m.items():
    print(f"median {name}: {rps:,.0f} req/s, p99 {p99:.2f} ms, {cpu:.1f} µs CPU per request")
ng = m["nginx"]
for name in ["tcp floor", "http floor", "lb bare", "lb"]:
    k = ["tcp floor", "http floor", "lb bare", "lb"].index(name)
    per = ", ".join(f"{r[3 * k] / r[12]:.2f}" for r in rows)
    print(f"{name} / nginx: {m[name][0] / ng[0]:.2f}× throughput (per round {per}), p99 {m[name][1] / ng[1]:.2f}×")
c, rows = medians(sys.argv[2], ["floor chain", "chain", "direct"])
for name, (rps, p99, cpu) in c.items():
    print(f"median {name}: {rps:,.0f} req/s, p99 {p99:.2f} ms, {cpu:.1f} µs CPU per request")
for k, name in enumerate(["floor chain", "chain"]):
    per = ", ".join(f"{r[3 * k] / r[6]:.2f}" for r in rows)
    print(f"{name} / direct: {c[name][0] / c['direct'][0]:.2f}× (per round {per})")
split = lambda at: " / ".join(f"{statistics.median(r[at + j] for r in rows):.1f}" for j in range(3))
print(f"CPU µs per request, median: floor chain hop 1 / hop 2 / blog {split(9)}; chain lb / gateway / blog {split(12)}")
PY
fi

SAMPLED_RATIO="$SAMPLED_RATIO" python3 - "$work" "$RATE" <<'PY'
import os, statistics, sys
work, rate = sys.argv[1], int(sys.argv[2])
errors = len(open(f"{work}/errors").read().split())
def load(name):
    path = f"{work}/{name}.results"
    if not os.path.exists(path):
        return None
    rows = [list(map(float, line.split()[1:])) for line in open(path)]
    return [statistics.median(r[i] for r in rows) for i in range(6)] + [rows] + [statistics.median(r[i] for r in rows) for i in range(6, len(rows[0]))]
proxy, chain, fixed = load("proxy"), load("chain"), load("rate")
verdict = lambda ok: "met" if ok else "NOT MET"
per_round = lambda rows: ", ".join(f"{r[0] / r[3]:.3f}" for r in rows)
if not (proxy or chain or fixed):
    if errors:
        print(f"WARNING: {errors} run(s) saw non-2xx answers or socket errors (see above)")
    sys.exit(0)
print()
print("| target | requests/s | p99 ms | CPU µs/request |")
print("|---|---|---|---|")
if proxy:
    lb, lb99, lbcpu, ng, ng99, ngcpu = proxy[:6]
    print(f"| nginx proxy_pass → nginx return 200 | {ng:,.0f} | {ng99:.2f} | {ngcpu:.0f} (nginx proxy) |")
    print(f"| load balancer → nginx return 200 | {lb:,.0f} | {lb99:.2f} | {lbcpu:.0f} (load balancer) |")
    if len(proxy) >= 10:
        sa, sa99, sacpu = proxy[7:10]
        ratio = os.environ.get("SAMPLED_RATIO", "0.01")
        print(f"| load balancer, TRACE_SAMPLE_RATIO={ratio} → nginx return 200 | {sa:,.0f} | {sa99:.2f} | {sacpu:.0f} (load balancer) |")
if chain:
    ch, ch99, chcpu, di, di99, dicpu, _ = chain
    print(f"| blog-service GET /api/posts, direct | {di:,.0f} | {di99:.2f} | {dicpu:.0f} (blog) |")
    print(f"| load balancer → gateway → blog-service GET /api/posts | {ch:,.0f} | {ch99:.2f} | {chcpu:.0f} (all three) |")
if fixed:
    rch, rch99, rchcpu, rdi, rdi99, rdicpu, _ = fixed
    print(f"| blog-service direct at {rate:,} req/s (hey) | {rdi:,.0f} | {rdi99:.2f} | {rdicpu:.0f} (blog) |")
    print(f"| chain at {rate:,} req/s (hey) | {rch:,.0f} | {rch99:.2f} | {rchcpu:.0f} (all three) |")
print()
if proxy:
    print(f"lb/nginx throughput: {lb / ng:.3f} (per round: {per_round(proxy[6])}); p99 lb/nginx: {lb99 / ng99:.2f}; CPU per request lb/nginx: {lbcpu / ngcpu:.1f}")
    if len(proxy) >= 10:
        print(f"sampled lb/nginx throughput: {sa / ng:.3f} (per round: {', '.join(f'{r[6] / r[3]:.3f}' for r in proxy[6])}); "
              f"sampled/ratio-1 lb: {sa / lb:.3f}; CPU per request sampled/ratio-1: {sacpu / lbcpu:.2f}")
if chain:
    print(f"chain/direct throughput: {ch / di:.3f} (per round: {per_round(chain[6])}); p99 chain/direct: {ch99 / di99:.2f}; CPU per request chain/direct: {chcpu / dicpu:.1f}")
if proxy:
    print(f"target 1, load balancer ≥ 0.75× nginx throughput and p99 ≤ 2× nginx: {verdict(lb >= 0.75 * ng and lb99 <= 2 * ng99)}"
          f" ({lb / ng:.2f}×, p99 {lb99:.2f} ms vs {ng99:.2f} ms = {lb99 / ng99:.2f}×)")
if chain:
    print(f"target 2, chain ≥ 0.4× direct throughput: {verdict(ch >= 0.4 * di)} ({ch / di:.2f}×)")
if fixed:
    # hey drops the ticks a busy worker misses: a rate below 95 % of the target means the chain could not keep up.
    print(f"target 3, p99 ≤ 10 ms at {rate:,} req/s through the chain: {verdict(rch99 <= 10 and rch >= 0.95 * rate)}"
          f" (p99 {rch99:.2f} ms at {rch:,.0f} req/s)")
if errors:
    print(f"WARNING: {errors} run(s) saw non-2xx answers or socket errors (see above)")
PY

if [ "${PERF:-0}" = 1 ]; then
  echo; echo "perf: load balancer → nginx, one more $DURATION run"
  perf record -F 999 -g -o "$work/perf.data" -p "$lb_pid" -- sleep "${DURATION%s}" >/dev/null 2>&1 & perf_pid=$!
  run "http://127.0.0.1:$LB_PORT/api/bench" "$lb_pid" >/dev/null
  wait "$perf_pid" || true
  if [ -n "${PERF_DATA:-}" ]; then cp "$work/perf.data" "$PERF_DATA"; fi
  echo "by library:"
  perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9.]+%' | sed -n 1,8p
  echo "top symbols (self time):"
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9.]+%' \
    | sed -E 's/ +- +- *$//' | { command -v swift-demangle >/dev/null && swift-demangle --simplified || cat; } | cut -c1-160 | sed -n 1,30p
fi
