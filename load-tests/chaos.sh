#!/usr/bin/env bash
# Named chaos scenarios with a verdict: runs mixed_load.sh against the load balancer, breaks one
# thing on purpose while it runs (a fault through the load balancer's /admin/faults/{service}, or
# a process killed or restarted), undoes it, and says PASS or FAIL against the scenario's stated
# expectation, with the numbers measured. It reads only what a user can read: the load
# balancer's /stats and /metrics, the alert rules in monitoring/rules (evaluated by promtool on
# series built from what was measured), and the load script's own report.
#
#   load-tests/chaos.sh --list
#   load-tests/chaos.sh --url http://127.0.0.1:7100 --scenario slow-blog [--duration 60s]
#                       [--admin-token T] [--var DIR] [--break] [-- mixed_load.sh options]
#
# Needs bash, curl and jq; flaky-users needs promtool (Debian's prometheus package);
# gateway-crash and rolling-restart need the stack's state folder (--var, or TITANIUM_VAR as
# scripts/stack.sh takes it) for its pid files, and gateway-crash a stack started with
# GATEWAY_REPLICAS=2 or more. See docs/chaos.md.
# Exit status: 0 PASS, 1 FAIL, 2 usage, 3 the scenario could not be run (stack not answering,
# load setup failed, fault refused, a fault already active, ...).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SCENARIOS=(slow-blog flaky-users hung-auth cache-down gateway-crash rolling-restart)

# ---------------------------------------------------------------------------------------------
# what each scenario does

describe() {
  case "$1" in
    slow-blog) cat <<'EOF'
slow-blog
  breaks   blog-service answers 300 ms late: PUT /admin/faults/blog-service {"latency_ms":300}
  expects  the blog-service p95 on /stats is >= 300 ms within 10 s of the fault; no request
           fails; the fault is shown on /stats (services[].stats.faults)
  --break  reads the p95 from a field /stats does not have (the p95 tile hidden): FAIL
EOF
      ;;
    flaky-users) cat <<'EOF'
flaky-users
  breaks   user-service answers 20 % of its requests 503: {"error_rate":0.2,"error_status":503};
           besides the load, GET /api/users/{id} at 5/s keeps user-service busy
  expects  the user-service error rate on /stats is above 5 % (HighErrorRate's threshold) within
           10 s of the fault; the
           HighErrorRate rule of monitoring/rules fires (promtool test rules on series built
           from the measured user-service rates, held for 10 min: its 5 m window and 5 m for)
           and stays silent on the series measured before the fault; the fault is shown on /stats
  --break  evaluates a copy of the rules without HighErrorRate: FAIL
EOF
      ;;
    hung-auth) cat <<'EOF'
hung-auth
  breaks   auth-service never answers /api/auth/*: {"hang":true,"routes":["/api/auth/*"]};
           a login (an unknown user each time) is sent every 4 s while it hangs
  expects  every login during the fault is answered 504 in <= 2.2 s (the gateway's 2 s
           upstream timeout), at least 2 of them; reads (GET /api/posts, /api/posts/{id}) do not
           fail and their p95 stays under 1000 ms; the fault is shown on /stats
  --break  the login probe gives up after 1 s (before the gateway's 504): FAIL
EOF
      ;;
    cache-down) cat <<'EOF'
cache-down
  breaks   user-service's Redis is "down": {"dependency":"cache"}; besides the load,
           GET /api/users/{id} at 5/s reads through the cache
  expects  no request fails (reads fall back to SQLite); /stats shows the cache OFFLINE within
           5 s of the fault and ONLINE again within 10 s of its removal; the fault is shown on /stats
  --break  reads the cache status from .database.status (the cache tile showing the database): FAIL
EOF
      ;;
    gateway-crash) cat <<'EOF'
gateway-crash
  breaks   the last api-gateway replica is killed with SIGKILL (a stack with GATEWAY_REPLICAS >= 2),
           and started again (scripts/stack.sh start) when the fault phase ends
  expects  < 0.1 % of requests fail; the load balancer's /stats backends show the killed
           gateway out of rotation (ejected or unhealthy) within 10 s
  --break  watches the surviving gateway's backend entry instead: FAIL
EOF
      ;;
    rolling-restart) cat <<'EOF'
rolling-restart
  breaks   every process of the stack is restarted in turn under load (scripts/stack.sh
           restart NAME: SIGTERM, drain, start again; a gateway replica only while the others
           are in rotation), auth-service first, the load balancer last
  expects  0 failed requests; every restart done before the load ends (at the default 5 s
           drain the six restarts take about 50 s: give it --duration 75s or more)
  --break  restarts with SIGKILL (no drain) instead: FAIL
EOF
      ;;
  esac
}

usage() {
  cat <<EOF
usage: load-tests/chaos.sh --scenario NAME [options] [-- mixed_load.sh options]
       load-tests/chaos.sh --list

  --url URL            the load balancer                                  [http://127.0.0.1:7100]
  --scenario NAME      one of: ${SCENARIOS[*]}
  --duration D         the load's duration: 20, 20s, 5m (at least 15 s)   [60s]
                       (the fault holds from +10 % to -10 % of it, at least 2 s, at most 6 s each side)
  --admin-token T      the load balancer's ADMIN_TOKEN                     [\$ADMIN_TOKEN]
  --var DIR            the stack's state folder (pid files)                [\$TITANIUM_VAR or var/]
  --break              sabotage the observation or the expectation on purpose: the verdict must FAIL
  --keep               keep the work folder (samples of /stats, the load's output)
  --list               what each scenario breaks and expects
  -- OPTIONS           passed to mixed_load.sh (e.g. -- --rate-list 20 --rate-create 2)
EOF
}

say() { printf 'chaos: %s\n' "$*"; }
die() { printf 'chaos: %s\n' "$2" >&2; exit "$1"; }

URL=http://127.0.0.1:7100 SCENARIO="" DURATION=60s TOKEN="${ADMIN_TOKEN:-}" VAR="${TITANIUM_VAR:-$ROOT/var}"
BREAK=0 KEEP=0 LOAD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) for s in "${SCENARIOS[@]}"; do describe "$s"; echo; done; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    --url) URL="${2:?--url needs a value}"; shift 2 ;;
    --url=*) URL="${1#*=}"; shift ;;
    --scenario) SCENARIO="${2:?--scenario needs a value}"; shift 2 ;;
    --scenario=*) SCENARIO="${1#*=}"; shift ;;
    --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --admin-token) TOKEN="${2?--admin-token needs a value}"; shift 2 ;;
    --admin-token=*) TOKEN="${1#*=}"; shift ;;
    --var) VAR="${2:?--var needs a value}"; shift 2 ;;
    --var=*) VAR="${1#*=}"; shift ;;
    --break) BREAK=1; shift ;;
    --keep) KEEP=1; shift ;;
    --) shift; LOAD_ARGS=("$@"); break ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done
URL="${URL%/}"
[ -n "$SCENARIO" ] || { usage >&2; die 2 "--scenario is required (or --list)"; }
case " ${SCENARIOS[*]} " in *" $SCENARIO "*) ;; *) die 2 "unknown scenario: $SCENARIO (one of: ${SCENARIOS[*]})" ;; esac
case "$DURATION" in
  *[!0-9smh]* | '' | [smh]*) D="" ;;
  *s) D="${DURATION%s}" ;; *m) D=$(( ${DURATION%m} * 60 )) ;; *h) D=$(( ${DURATION%h} * 3600 )) ;; *) D="$DURATION" ;;
esac
case "$D" in '' | *[!0-9]*) die 2 "--duration must be a number of seconds (20, 20s, 5m): $DURATION" ;; esac
D=$((10#$D))
[ "$D" -ge 15 ] || die 2 "--duration must be at least 15 s: $DURATION"
command -v curl >/dev/null 2>&1 || die 2 "curl is required"
command -v jq >/dev/null 2>&1 || die 2 "jq is required (apt-get install jq)"
if [ "$SCENARIO" = flaky-users ]; then
  command -v promtool >/dev/null 2>&1 || die 2 "flaky-users evaluates the alert rules with promtool (apt-get install prometheus)"
fi

# ---------------------------------------------------------------------------------------------
# time and the work folder

now_ms() { date +%s%3N; }
T0=$(now_ms)
rel() { awk -v t="$1" -v z="$T0" 'BEGIN { printf "+%.1f s", (t - z) / 1000 }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
# sleep_until MS
sleep_until() {
  local left
  while :; do
    left=$(( $1 - $(now_ms) ))
    [ "$left" -gt 0 ] || return 0
    [ "$left" -gt 1000 ] && left=1000
    sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
  done
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/chaos.XXXXXX")" || die 3 "cannot create a work folder"
AUTH=()
[ -n "$TOKEN" ] && AUTH=(-H "Authorization: Bearer $TOKEN")
UA="titanium-chaos/1"

# Every side job this script starts (load, sampler, probes, restarts), stopped on exit by pid.
JOBS=()
FAULT_SERVICE=""    # a fault to remove on exit
KILLED_NAME=""      # a gateway replica to start again on exit
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local pid
  for pid in "${JOBS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ -n "$FAULT_SERVICE" ]; then
    curl -sS -o /dev/null -m 5 -X DELETE "${AUTH[@]}" -A "$UA" "$URL/admin/faults/$FAULT_SERVICE" 2>/dev/null || true
    say "exit: fault on $FAULT_SERVICE removed"
  fi
  if [ -n "$KILLED_NAME" ]; then
    TITANIUM_VAR="$VAR" bash "$ROOT/scripts/stack.sh" start "$KILLED_NAME" >/dev/null 2>&1 || true
    say "exit: $KILLED_NAME started again"
  fi
  for pid in "${JOBS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then say "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# the fault API and /stats

# fault_request METHOD SERVICE [JSON]: the load balancer's answer in $WORK/fault.json; status on stdout
fault_request() {
  local args=(-sS -o "$WORK/fault.json" -w '%{http_code}' -m 10 -X "$1" "${AUTH[@]}" -A "$UA")
  [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data "$3")
  curl "${args[@]}" "$URL/admin/faults/$2" 2>"$WORK/fault.err" || true
}

fetch_stats() { curl -sS -m 5 -A "$UA" -o "$1" -w '%{http_code}' "$URL/stats" 2>/dev/null || true; }

# lb_5xx: the load balancer's own /metrics, 5xx answers on /api routes (a sum of its counters)
lb_5xx() {
  curl -sS -m 5 -A "$UA" "$URL/metrics" 2>/dev/null |
    awk '/^http_requests_total\{/ && /status="5[0-9][0-9]"/ && /route="\/api/ { n += $NF } END { printf "%d\n", n }'
}

# The state folder's pid files and recorded settings (process scenarios).
stack_names() { TITANIUM_VAR="$VAR" bash "$ROOT/scripts/stack.sh" names; }

# ---------------------------------------------------------------------------------------------
# preflight

code=$(fetch_stats "$WORK/stats0.json")
[ "$code" = 200 ] || die 3 "$URL/stats answered '${code:-nothing}': is the stack up?"
jq -e '.services' "$WORK/stats0.json" >/dev/null 2>&1 || die 3 "$URL/stats is not the load balancer's aggregate"
active=$(jq -r '[.services[] | select(.stats.faults != null) | .name] | unique | join(", ")' "$WORK/stats0.json")
[ -z "$active" ] || die 3 "a fault is already active on: $active (GET/DELETE $URL/admin/faults/NAME); its effects would mix with this scenario's"

PRE=$(( D / 10 )); [ "$PRE" -lt 2 ] && PRE=2; [ "$PRE" -gt 6 ] && PRE=6
POST=$PRE
FAULT_S=$(( D - PRE - POST ))

case "$SCENARIO" in
  gateway-crash | rolling-restart)
    [ -f "$VAR/run/stack.env" ] || die 3 "$SCENARIO controls processes: no stack recorded in $VAR/run (pass --var or TITANIUM_VAR, as for scripts/stack.sh)"
    mapfile -t NAMES < <(stack_names) || die 3 "scripts/stack.sh names failed for $VAR"
    for name in "${NAMES[@]}"; do
      pid="$(cat "$VAR/run/$name.pid" 2>/dev/null)"
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then die 3 "$name of the stack in $VAR is not running"; fi
    done
    ;;
esac
if [ "$SCENARIO" = gateway-crash ]; then
  GATEWAY_NAMES=()
  for name in "${NAMES[@]}"; do case "$name" in api-gateway*) GATEWAY_NAMES+=("$name") ;; esac; done
  [ "${#GATEWAY_NAMES[@]}" -ge 2 ] || die 3 "gateway-crash needs two gateway processes: start the stack with GATEWAY_REPLICAS=2"
  VICTIM="${GATEWAY_NAMES[-1]}" SURVIVOR="${GATEWAY_NAMES[0]}"
  offset="$(sed -n 's/^OFFSET=//p' "$VAR/run/stack.env")"
  port_of() { case "$1" in api-gateway) echo $((7200 + offset)) ;; *) echo $((7200 + offset + ${1##*-} - 1)) ;; esac; }
  VICTIM_URL="http://127.0.0.1:$(port_of "$VICTIM")" SURVIVOR_URL="http://127.0.0.1:$(port_of "$SURVIVOR")"
  jq -e --arg u "$VICTIM_URL" '[.backends[] | select(.url == $u)] | length == 1' "$WORK/stats0.json" >/dev/null ||
    die 3 "the load balancer at $URL does not balance over $VICTIM_URL ($VICTIM of the stack in $VAR): another stack?"
fi

# ---------------------------------------------------------------------------------------------
# side jobs: the load, the /stats sampler, probes

M5XX_BEFORE=$(lb_5xx)
say "scenario $SCENARIO against $URL: load for $D s, the scenario from +$PRE s$( [ "$SCENARIO" != rolling-restart ] && printf ' for %s s' "$FAULT_S")$( [ "$BREAK" = 1 ] && printf ' (--break: the verdict must FAIL)')"

sh "$HERE/mixed_load.sh" --url "$URL" --duration "$D" --max-failure-rate 100 "${LOAD_ARGS[@]}" >"$WORK/load.out" 2>&1 &
LOAD_PID=$!
JOBS+=("$LOAD_PID")
# The mix starts once setup (register, login, 5 seed posts) is done: mixed_load.sh says "mix: ...".
for _ in $(seq 1 1200); do
  grep -q '^mix: ' "$WORK/load.out" && break
  kill -0 "$LOAD_PID" 2>/dev/null || { cat "$WORK/load.out" >&2; die 3 "mixed_load.sh stopped before its mix began"; }
  sleep 0.1
done
grep -q '^mix: ' "$WORK/load.out" || { cat "$WORK/load.out" >&2; die 3 "mixed_load.sh did not begin its mix within 120 s"; }
MIX_START=$(( $(now_ms) + 200 ))
MIX_END=$(( MIX_START + D * 1000 ))
T_FAULT_DUE=$(( MIX_START + PRE * 1000 ))
T_REMOVE_DUE=$(( MIX_START + (D - POST) * 1000 ))
say "$(rel "$MIX_START") load: $(grep '^mix: ' "$WORK/load.out" | head -n 1 | cut -c6-)"

# The sampler: the load balancer's /stats every 0.5 s (it reuses an answer for 1 s), one line each:
# "ms<TAB>json".
sampler() {
  local t code
  while :; do
    t=$(now_ms)
    code=$(fetch_stats "$WORK/sample.json")
    [ "$code" = 200 ] && printf '%s\t%s\n' "$t" "$(tr -d '\n' <"$WORK/sample.json")" >>"$WORK/samples.tsv"
    [ -e "$WORK/sampler.stop" ] && return 0
    sleep 0.5
  done
}
: >"$WORK/samples.tsv"
sampler &
JOBS+=($!)

# user_probe RATE: GET /api/users/{id} at RATE/s until told to stop; "ms status seconds" lines.
user_probe() {
  local rate="$1" k=0 id=1 start due out
  for candidate in 1 2 3 4 5; do
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -m 5 -A "$UA" "$URL/api/users/$candidate" 2>/dev/null)" = 200 ] && { id=$candidate; break; }
  done
  start=$(now_ms)
  while [ ! -e "$WORK/probe.stop" ]; do
    due=$(( start + k * 1000 / rate ))
    sleep_until "$due"
    ( out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -m 10 -A "$UA" "$URL/api/users/$id" 2>/dev/null) || true
      printf '%s %s\n' "$due" "${out:-000 0}" >>"$WORK/users.probe" ) &
    k=$((k + 1))
  done
  wait
}

# login_probe: a login of an unknown user every 4 s while the fault holds (unknown names: the
# per-username limit is 5 a minute; the per-address one, 20, allows 15).
login_probe() {
  local k=0 due out max=10
  [ "$BREAK" = 1 ] && max=1
  while :; do
    due=$(( T_FAULT + 1000 + k * 4000 ))
    # Each login must be over (2.2 s and a margin) before the fault is removed.
    [ $(( due + 3000 )) -le "$T_REMOVE_DUE" ] || break
    sleep_until "$due"
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -m "$max" -A "$UA" -H 'Content-Type: application/json' \
      --data "{\"username\":\"chaos_probe_${T0}_$k\",\"password\":\"not-the-password\"}" "$URL/api/auth/login" 2>/dev/null) || true
    case "$out" in 000* | '') out="curl $(awk -v ms="$(( $(now_ms) - due ))" 'BEGIN { printf "%.3f", ms / 1000 }')" ;; esac
    printf '%s %s\n' "$due" "$out" >>"$WORK/login.probe"
    k=$((k + 1))
  done
}

case "$SCENARIO" in
  flaky-users | cache-down) user_probe 5 & JOBS+=($!) ;;
esac

# ---------------------------------------------------------------------------------------------
# the scenario

sleep_until "$T_FAULT_DUE"
apply_fault() { # SERVICE JSON
  local status
  status=$(fault_request PUT "$1" "$2")
  T_FAULT=$(now_ms)
  if [ "$status" != 200 ]; then
    FAULT_SERVICE="$1"
    die 3 "PUT /admin/faults/$1 answered ${status:-nothing}: $(head -c 400 "$WORK/fault.json" 2>/dev/null) $(cat "$WORK/fault.err")"
  fi
  FAULT_SERVICE="$1"
  say "$(rel "$T_FAULT") PUT /admin/faults/$1 $2 -> 200, $(jq -r '"\(.instances | length) instance(s): " + ([.instances[] | "\(.url) kinds \(.fault.kinds // [] | join("+"))"] | join(", "))' "$WORK/fault.json" 2>/dev/null)"
}
remove_fault() {
  local status
  status=$(fault_request DELETE "$FAULT_SERVICE")
  T_REMOVED=$(now_ms)
  say "$(rel "$T_REMOVED") DELETE /admin/faults/$FAULT_SERVICE -> ${status:-nothing} $(jq -c '[.instances[]? | .removed // .status]' "$WORK/fault.json" 2>/dev/null)"
  [ "$status" = 200 ] && FAULT_SERVICE=""
}
FAULT_TTL=$(( FAULT_S + 60 ))

case "$SCENARIO" in
  slow-blog) apply_fault blog-service "{\"latency_ms\":300,\"duration_s\":$FAULT_TTL}" ;;
  flaky-users) apply_fault user-service "{\"error_rate\":0.2,\"error_status\":503,\"duration_s\":$FAULT_TTL}" ;;
  hung-auth)
    apply_fault auth-service "{\"hang\":true,\"routes\":[\"/api/auth/*\"],\"duration_s\":$FAULT_TTL}"
    : >"$WORK/login.probe"
    login_probe & JOBS+=($!)
    ;;
  cache-down) apply_fault user-service "{\"dependency\":\"cache\",\"duration_s\":$FAULT_TTL}" ;;
  gateway-crash)
    victim_pid="$(cat "$VAR/run/$VICTIM.pid")"
    kill -KILL "$victim_pid"
    for _ in $(seq 1 50); do kill -0 "$victim_pid" 2>/dev/null || break; sleep 0.1; done
    T_FAULT=$(now_ms)
    KILLED_NAME="$VICTIM"
    say "$(rel "$T_FAULT") kill -KILL $victim_pid ($VICTIM, $VICTIM_URL)"
    ;;
  rolling-restart)
    : >"$WORK/restarts.log"
    T_FAULT=$(now_ms)
    # One after another, in the stack's order: "ms name status seconds" lines in restarts.log.
    (
      for name in "${NAMES[@]}"; do
        started=$(now_ms)
        if [ "$BREAK" = 1 ]; then
          victim="$(cat "$VAR/run/$name.pid")"
          kill -KILL "$victim" 2>/dev/null
          for _ in $(seq 1 50); do kill -0 "$victim" 2>/dev/null || break; sleep 0.1; done
          TITANIUM_VAR="$VAR" bash "$ROOT/scripts/stack.sh" start "$name" >>"$WORK/restarts.out" 2>&1
        else
          TITANIUM_VAR="$VAR" bash "$ROOT/scripts/stack.sh" restart "$name" >>"$WORK/restarts.out" 2>&1
        fi
        rc=$?
        printf '%s %s %s %s\n' "$started" "$name" "$rc" "$(secs $(( $(now_ms) - started )))" >>"$WORK/restarts.log"
        [ "$rc" = 0 ] || exit 1
      done
    ) &
    RESTARTS_PID=$!
    JOBS+=("$RESTARTS_PID")
    say "$(rel "$T_FAULT") restarting in turn$( [ "$BREAK" = 1 ] && printf ' with SIGKILL'): ${NAMES[*]}"
    ;;
esac

if [ "$SCENARIO" = rolling-restart ]; then
  while kill -0 "$RESTARTS_PID" 2>/dev/null && kill -0 "$LOAD_PID" 2>/dev/null; do sleep 0.2; done
  T_REMOVED=$(now_ms)
  if kill -0 "$RESTARTS_PID" 2>/dev/null; then
    say "$(rel "$T_REMOVED") the load ended while restarts were still under way; waiting for them"
    wait "$RESTARTS_PID" 2>/dev/null
  fi
  while read -r started name rc took; do
    say "$(rel "$started") restart $name: $( [ "$rc" = 0 ] && printf 'done' || printf 'FAILED (status %s)' "$rc") in $took s"
  done <"$WORK/restarts.log"
else
  sleep_until "$T_REMOVE_DUE"
  if [ "$SCENARIO" = gateway-crash ]; then
    T_REMOVED=$(now_ms)
    if TITANIUM_VAR="$VAR" bash "$ROOT/scripts/stack.sh" start "$VICTIM" >"$WORK/restart.out" 2>&1; then
      KILLED_NAME=""
      say "$(rel "$T_REMOVED") $VICTIM started again ($(tail -n 1 "$WORK/restart.out"))"
    else
      say "$(rel "$T_REMOVED") $VICTIM could not be started again: $(tail -n 3 "$WORK/restart.out" | tr '\n' ' ')"
    fi
  else
    remove_fault
  fi
fi

# The load ends by itself; then the sampler keeps going until the after-checks have what they need.
wait "$LOAD_PID"
LOAD_STATUS=$?
: >"$WORK/probe.stop"
case "$SCENARIO" in
  cache-down)
    # Until the cache is seen ONLINE again, at most 10 s after the fault was removed.
    while [ "$(now_ms)" -lt $(( T_REMOVED + 10000 )) ]; do
      tail -n 1 "$WORK/samples.tsv" | cut -f2 | jq -e '.cache.status == "ONLINE"' >/dev/null 2>&1 && break
      sleep 0.5
    done ;;
  gateway-crash)
    # Back in rotation: at most 40 s (an ejection lasts BACKEND_EJECT_SECONDS, 30 by default).
    while [ "$(now_ms)" -lt $(( T_REMOVED + 40000 )) ]; do
      tail -n 1 "$WORK/samples.tsv" | cut -f2 |
        jq -e --arg u "$VICTIM_URL" '.backends[] | select(.url == $u) | .healthy and (.ejected | not)' >/dev/null 2>&1 && break
      sleep 0.5
    done ;;
esac
: >"$WORK/sampler.stop"
for pid in "${JOBS[@]}"; do wait "$pid" 2>/dev/null; done
JOBS=()
M5XX_AFTER=$(lb_5xx)

# ---------------------------------------------------------------------------------------------
# the report

echo
echo "== mixed_load.sh (exit $LOAD_STATUS) =="
sed 's/^/  /' "$WORK/load.out"
[ "$LOAD_STATUS" = 0 ] || [ "$LOAD_STATUS" = 1 ] || die 3 "mixed_load.sh exited with $LOAD_STATUS: no verdict"

TOTAL=$(sed -n 's/^failure rate: .*(\([0-9]*\) of \([0-9]*\) requests failed.*/\2/p' "$WORK/load.out")
FAILED=$(sed -n 's/^failure rate: .*(\([0-9]*\) of \([0-9]*\) requests failed.*/\1/p' "$WORK/load.out")
if [ -z "$TOTAL" ] || [ -z "$FAILED" ]; then die 3 "no failure line in mixed_load.sh's report"; fi
# op_column OP N: a column of the load's per-operation table (5 requests, 8 failed, 10 p95 ms)
op_column() { awk -v op="$1" -v n="$2" '$1 == op && NF == 11 { v = $n } END { print (v ~ /^[0-9.]+$/) ? v : 0 }' "$WORK/load.out"; }

# samples between two times, as a JSON array of {t, s} (t: ms after the fault began)
samples_json() { # FROM_MS TO_MS
  awk -F '\t' -v a="$1" -v b="$2" '$1 >= a && $1 <= b' "$WORK/samples.tsv" |
    jq -sR --argjson z "$T_FAULT" '[split("\n")[] | select(length > 0) | split("\t") | {t: ((.[0] | tonumber) - $z), s: (.[1] | fromjson)}]'
}
samples_json "$T_FAULT" "$T_REMOVED" >"$WORK/during.json"
samples_json 0 "$T_FAULT" >"$WORK/before.json"
samples_json "$T_REMOVED" 99999999999999 >"$WORK/after.json"

CHECKS=0 FAILS=0
check() { # PASS|FAIL TEXT
  CHECKS=$((CHECKS + 1))
  [ "$1" = PASS ] || FAILS=$((FAILS + 1))
  printf '  [%s] %s\n' "$1" "$2"
}
verdict_of() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }

# first_seen FILE JQ-CONDITION: ms after the fault of the first sample where the condition holds
# for the sample .s, or nothing
first_seen() { jq -r "[.[] | select(.s | $2) | .t] | first // empty" "$1"; }

# fault_shown SERVICE: the fault on that service's /stats entry (services[].stats.faults)
fault_shown() {
  local at
  at=$(first_seen "$WORK/during.json" "[.services[] | select(.name == \"$1\") | .stats.faults // empty] | length > 0")
  if [ -n "$at" ] && [ "$at" -le 10000 ]; then
    check PASS "the fault is shown on /stats (services[$1].stats.faults: $(jq -r "[.[] | .s.services[] | select(.name == \"$1\") | .stats.faults // empty] | first | \"kinds \" + (.kinds | join(\"+\")) + \", \" + (.remaining_s | tostring) + \" s left\"" "$WORK/during.json")) $(secs "$at") s after it was applied"
  else
    check FAIL "the fault is shown on /stats (services[$1].stats.faults): $( [ -n "$at" ] && printf 'only after %s s' "$(secs "$at")" || printf 'never seen')"
  fi
  local left
  left=$(jq -r --argjson after "$(( T_REMOVED - T_FAULT + 1500 ))" "[.[] | select(.t > \$after) | .s.services[] | select(.name == \"$1\") | .stats.faults // empty] | length" "$WORK/after.json")
  [ "${left:-0}" = 0 ] || check FAIL "the fault is gone from /stats after its removal: still shown in $left sample(s)"
}

echo
echo "== verdict: $SCENARIO$( [ "$BREAK" = 1 ] && printf ' (--break)') =="
FAILED_PCT=$(awk -v f="$FAILED" -v t="$TOTAL" 'BEGIN { printf "%.2f", t ? f * 100 / t : 0 }')
case "$SCENARIO" in
  slow-blog)
    p95=".stats.p95_ms"
    [ "$BREAK" = 1 ] && p95=".stats.p95_hidden_ms"
    cond="([.services[] | select(.name == \"blog-service\") | $p95 // empty] | max // -1) >= 300"
    at=$(first_seen "$WORK/during.json" "$cond")
    max=$(jq -r "[.[] | .s.services[] | select(.name == \"blog-service\") | $p95 // empty] | max // \"not reported\"" "$WORK/during.json")
    before=$(jq -r "[.[] | .s.services[] | select(.name == \"blog-service\") | $p95 // empty] | last // \"not reported\"" "$WORK/before.json")
    if [ -n "$at" ] && [ "$at" -le 10000 ]; then
      check PASS "blog-service p95 on /stats >= 300 ms within 10 s: $(secs "$at") s after the fault (p95 before $before ms, highest during $max ms)"
    else
      check FAIL "blog-service p95 on /stats >= 300 ms within 10 s: $( [ -n "$at" ] && printf 'only after %s s' "$(secs "$at")" || printf 'never') (p95 before $before ms, highest during $max ms; read from $p95)"
    fi
    check "$(verdict_of $(( FAILED == 0 )))" "no request failed: $FAILED of $TOTAL failed"
    fault_shown blog-service
    ;;
  flaky-users)
    at=$(first_seen "$WORK/during.json" '([.services[] | select(.name == "user-service") | .stats.error_rate] | max // 0) > 0.05')
    max=$(jq -r '[.[] | .s.services[] | select(.name == "user-service") | .stats.error_rate] | max // "not reported"' "$WORK/during.json")
    if [ -n "$at" ] && [ "$at" -le 10000 ]; then
      check PASS "user-service error rate on /stats above 5 % within 10 s: $(secs "$at") s after the fault (highest $max)"
    else
      check FAIL "user-service error rate on /stats above 5 % within 10 s: $( [ -n "$at" ] && printf 'only after %s s' "$(secs "$at")" || printf 'never') (highest $max)"
    fi
    # The measured user-service rates: requests/s from requests_total over the phase; the 5xx
    # share, the mean error_rate of the samples whose 10 s window lies inside the phase (the last
    # sample's when there is none).
    rates() { # FILE -> "requests_per_s error_share samples"
      jq -r '[.[] | {t, r: ([.s.services[] | select(.name == "user-service") | .stats.requests_total] | add), e: ([.s.services[] | select(.name == "user-service") | .stats.error_rate] | max)}
              | select(.r != null)] as $x
             | if ($x | length) < 2 then "0 0 \($x | length)"
               else ([$x[] | select(.t - $x[0].t >= 10000) | .e] | if length > 0 then add / length else $x[-1].e end) as $e
                 | "\((($x[-1].r - $x[0].r) / (($x[-1].t - $x[0].t) / 1000)) * 1000 | round / 1000) \($e * 10000 | round / 10000) \($x | length)" end' "$1"
    }
    read -r fr fe _ <<<"$(rates "$WORK/during.json")"
    read -r br be _ <<<"$(rates "$WORK/before.json")"
    rules_dir="$ROOT/monitoring/rules"
    if [ "$BREAK" = 1 ]; then
      mkdir -p "$WORK/rules"
      for f in "$rules_dir"/*.yml; do
        awk '/^      - alert: / { skip = ($3 == "HighErrorRate") } !skip' "$f" >"$WORK/rules/$(basename "$f")"
      done
      rules_dir="$WORK/rules"
    fi
    # promtool_fires REQUESTS_PER_S ERROR_SHARE: whether HighErrorRate fires at 10 m on counters
    # growing at those rates (15 s scrapes); prints its description when it does.
    promtool_fires() {
      local ok err
      ok=$(awk -v r="$1" -v e="$2" 'BEGIN { printf "%.4f", 15 * r * (1 - e) }')
      err=$(awk -v r="$1" -v e="$2" 'BEGIN { printf "%.4f", 15 * r * e }')
      {
        echo "rule_files:"
        for f in "$rules_dir"/*.yml; do echo "  - $f"; done
        cat <<EOF
evaluation_interval: 1m
tests:
  - interval: 15s
    input_series:
      - series: 'http_requests_total{service="user-service",method="GET",route="/api/users/{id}",status="200"}'
        values: '0+${ok}x40'
      - series: 'http_requests_total{service="user-service",method="GET",route="/api/users/{id}",status="503"}'
        values: '0+${err}x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: HighErrorRate
        exp_alerts: []
EOF
      } >"$WORK/alert-test.yml"
      promtool test rules "$WORK/alert-test.yml" >"$WORK/promtool.out" 2>&1 && return 1
      grep -q 'alertname="HighErrorRate", service="user-service"' "$WORK/promtool.out" || { sed 's/^/      /' "$WORK/promtool.out" | head -n 20; return 2; }
      grep -o 'description="[^"]*"' "$WORK/promtool.out" | head -n 1
      return 0
    }
    desc=$(promtool_fires "$fr" "$fe"); fired=$?
    if [ "$fired" = 0 ]; then
      check PASS "HighErrorRate fires (promtool test rules, $(basename "$rules_dir")/: user-service at the measured $fr requests/s with $fe of them 5xx, held 10 min): $desc"
    else
      check FAIL "HighErrorRate fires (promtool test rules, $rules_dir: user-service at the measured $fr requests/s with $fe of them 5xx, held 10 min): $( [ "$fired" = 1 ] && printf 'no alert' || printf 'promtool failed: %s' "$desc")"
    fi
    desc=$(promtool_fires "$br" "$be"); quiet=$?
    if [ "$quiet" = 1 ]; then
      check PASS "HighErrorRate stays silent before the fault (the measured $br requests/s with $be of them 5xx, held 10 min)"
    else
      check FAIL "HighErrorRate stays silent before the fault ($br requests/s, $be 5xx): $( [ "$quiet" = 0 ] && printf 'it fires: %s' "$desc" || printf 'promtool failed: %s' "$desc")"
    fi
    probe_n=$(wc -l <"$WORK/users.probe" | tr -d ' ')
    probe_5xx=$(awk '$2 ~ /^5/' "$WORK/users.probe" | wc -l | tr -d ' ')
    printf '  (info) GET /api/users/{id} probe: %s requests, %s answered 5xx; the load: %s of %s failed (%s %%: writes ask user-service too)\n' "$probe_n" "$probe_5xx" "$FAILED" "$TOTAL" "$FAILED_PCT"
    fault_shown user-service
    ;;
  hung-auth)
    n=$(wc -l <"$WORK/login.probe" | tr -d ' ')
    good=$(awk '$2 == 504 && $3 <= 2.2' "$WORK/login.probe" | wc -l | tr -d ' ')
    slowest=$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { printf "%.3f", m }' "$WORK/login.probe")
    answers=$(awk '{ c[$2]++ } END { for (k in c) printf "%s%s x%d", (n++ ? ", " : ""), k, c[k] }' "$WORK/login.probe")
    check "$(verdict_of $(( n >= 2 && good == n )))" "logins during the fault answered 504 in <= 2.2 s: $good of $n (answers: ${answers:-none}; slowest ${slowest} s)"
    read_failed=$(( $(op_column list 7) + $(op_column detail 7) ))
    read_total=$(( $(op_column list 4) + $(op_column detail 4) ))
    read_p95=$(awk -v a="$(op_column list 9)" -v b="$(op_column detail 9)" 'BEGIN { print (a + 0 > b + 0) ? a : b }')
    check "$(verdict_of $(( read_failed == 0 )))" "reads (list, detail) did not fail: $read_failed of $read_total failed"
    check "$(verdict_of "$(awk -v p="$read_p95" 'BEGIN { print (p < 1000) ? 1 : 0 }')")" "reads stayed fast: p95 $read_p95 ms (< 1000 ms; a read waiting on auth would take >= 2000)"
    printf '  (info) all requests of the load: %s of %s failed\n' "$FAILED" "$TOTAL"
    fault_shown auth-service
    ;;
  cache-down)
    path=".cache.status"
    [ "$BREAK" = 1 ] && path=".database.status"
    at=$(first_seen "$WORK/during.json" "$path == \"OFFLINE\"")
    user_at=$(first_seen "$WORK/during.json" '[.services[] | select(.name == "user-service") | .stats.dependencies.cache.status] | index("OFFLINE") != null')
    if [ -n "$at" ] && [ "$at" -le 5000 ]; then
      check PASS "/stats shows the cache OFFLINE within 5 s: after $(secs "$at") s ($path; user-service's own cache dependency after $( [ -n "$user_at" ] && secs "$user_at" || printf 'never') s)"
    else
      check FAIL "/stats shows the cache OFFLINE within 5 s ($path): $( [ -n "$at" ] && printf 'only after %s s' "$(secs "$at")" || printf 'never')"
    fi
    back=$(jq -r --argjson r "$(( T_REMOVED - T_FAULT ))" "[.[] | select(.s | $path == \"ONLINE\") | .t - \$r] | first // empty" "$WORK/after.json")
    if [ -n "$back" ] && [ "$back" -le 10000 ]; then
      check PASS "the cache ONLINE again within 10 s of the fault's removal: after $(secs "$back") s"
    else
      check FAIL "the cache ONLINE again within 10 s of the fault's removal: $( [ -n "$back" ] && printf 'only after %s s' "$(secs "$back")" || printf 'not seen')"
    fi
    probe_n=$(wc -l <"$WORK/users.probe" | tr -d ' ')
    probe_bad=$(awk '$2 != 200 && $2 != 404' "$WORK/users.probe" | wc -l | tr -d ' ')
    check "$(verdict_of $(( FAILED == 0 && probe_bad == 0 )))" "no request failed: the load $FAILED of $TOTAL, GET /api/users/{id} $probe_bad of $probe_n"
    fault_shown user-service
    ;;
  gateway-crash)
    watched="$VICTIM_URL"
    [ "$BREAK" = 1 ] && watched="$SURVIVOR_URL"
    at=$(first_seen "$WORK/during.json" "[.backends[] | select(.url == \"$watched\") | (.ejected or (.healthy | not))] | any")
    how=$(jq -r --arg u "$watched" '[.[] | .s.backends[] | select(.url == $u) | select(.ejected or (.healthy | not))] | first | if . then "ejected \(.ejected), healthy \(.healthy), errors \(.errors)" else "" end' "$WORK/during.json")
    if [ -n "$at" ] && [ "$at" -le 10000 ]; then
      check PASS "the killed gateway ($watched) out of rotation in /stats backends within 10 s: after $(secs "$at") s ($how)"
    else
      check FAIL "the killed gateway out of rotation in /stats backends within 10 s (watching $watched): $( [ -n "$at" ] && printf 'only after %s s' "$(secs "$at")" || printf 'never')"
    fi
    check "$(verdict_of "$(awk -v f="$FAILED" -v t="$TOTAL" 'BEGIN { print (t > 0 && f * 1000 < t) ? 1 : 0 }')")" "< 0.1 % of requests failed: $FAILED of $TOTAL ($FAILED_PCT %)"
    back=$(jq -r --arg u "$VICTIM_URL" --argjson r "$(( T_REMOVED - T_FAULT ))" '[.[] | select([.s.backends[] | select(.url == $u) | .healthy and (.ejected | not)] | any) | .t - $r] | first // empty' "$WORK/after.json")
    printf '  (info) %s back in rotation %s\n' "$VICTIM" "$( [ -n "$back" ] && printf '%s s after it was started again' "$(secs "$back")" || printf 'not seen within 40 s of its start (an ejection lasts BACKEND_EJECT_SECONDS)')"
    ;;
  rolling-restart)
    done_n=$(awk '$3 == 0' "$WORK/restarts.log" | wc -l | tr -d ' ')
    last_end=$(awk '{ e = $1 + $4 * 1000 } e > m { m = e } END { printf "%.0f", m }' "$WORK/restarts.log")
    check "$(verdict_of $(( done_n == ${#NAMES[@]} )))" "every process restarted: $done_n of ${#NAMES[@]} (${NAMES[*]})"
    check "$(verdict_of $(( last_end > 0 && last_end <= MIX_END )))" "the restarts were over before the load ended: the last at $(rel "$last_end"), the load until $(rel "$MIX_END")"
    check "$(verdict_of $(( FAILED == 0 )))" "no request failed: $FAILED of $TOTAL failed"
    [ "$FAILED" = 0 ] || sed -n '/^first failures/,/^$/p' "$WORK/load.out" | sed -n '2,6p'
    ;;
esac
delta=$(( M5XX_AFTER - M5XX_BEFORE ))
lb_started_before=$(jq -r '.started_at' "$WORK/stats0.json")
lb_started_after=$(tail -n 1 "$WORK/samples.tsv" | cut -f2 | jq -r '.started_at' 2>/dev/null)
if [ "$lb_started_before" = "$lb_started_after" ]; then
  printf '  (info) load balancer /metrics: %d answer(s) 5xx on /api routes during the run\n' "$delta"
else
  printf '  (info) load balancer /metrics: its counters began again (it was restarted); %d 5xx on /api since\n' "$M5XX_AFTER"
fi
echo
if [ "$FAILS" = 0 ]; then
  echo "PASS: $SCENARIO ($CHECKS checks)"
  exit 0
fi
echo "FAIL: $SCENARIO ($FAILS of $CHECKS checks failed)"
exit 1
