#!/usr/bin/env bash
# The data services on SQLite and on PostgreSQL, side by side in one run, with wrk -t1 -c64:
#   users-cached    GET /api/users/{id} on user-service with Redis (cache hits)
#   users-uncached  GET /api/users/{id} on user-service without Redis (every read from the database)
#   posts-list      GET /api/posts (20 newest of 200 or more) on blog-service
#   posts-create    POST /api/posts with a bearer token on blog-service (token checked against
#                   auth-service's keys, password version asked of user-service, one insert)
# Each path runs on a SQLite process and on a PostgreSQL process back to back (which goes first
# alternates by round); ROUNDS rounds of DURATION each; medians and ratios at the end.
# PostgreSQL is Debian's, started here in a temporary directory on a port of its own, with its
# durable defaults (fsync, synchronous_commit on), as SQLite commits with synchronous=FULL.
# SKIP_BUILD=1 uses the release binaries already built; TITANIUM_BIN_DIR=DIR the binaries in DIR
# (to try the script out with a debug build: its numbers mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"

# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
{ command -v wrk >/dev/null && postgres_bin >/dev/null; } || bash scripts/install-deps.sh bench
if [ -n "${TITANIUM_BIN_DIR:-}" ]; then
  bin="$TITANIUM_BIN_DIR"
else
  if [ "${SKIP_BUILD:-0}" != 1 ]; then swift build -c release >/dev/null; fi
  bin="$(swift build -c release --show-bin-path)"
fi
pgbin="$(postgres_bin)"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  postgres_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL with its defaults (scripts/lib/postgres.sh's test clusters run with fsync off).
mkdir -p "$work/pg"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work/pg"; chmod 755 "$work"; fi
PG_PORT=$(postgres_free_port)
(cd "$work/pg" && postgres_as_server_user "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres -E UTF8 --no-locale >/dev/null)
(cd "$work/pg" && postgres_as_server_user "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 \
  -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null)
psql -X -q -d "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c "CREATE DATABASE titanium"
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/titanium"

free_port() { postgres_free_port; }
REDIS_SQLITE=$(free_port); REDIS_PG=$(free_port); NO_REDIS=$(free_port); AUTH_PORT=$(free_port)
CACHED_SQLITE=$(free_port); UNCACHED_SQLITE=$(free_port); BLOG_SQLITE=$(free_port)
CACHED_PG=$(free_port); UNCACHED_PG=$(free_port); BLOG_PG=$(free_port)
JWKS="http://127.0.0.1:$AUTH_PORT/.well-known/jwks.json"
# A Redis each for the SQLite and the PostgreSQL user-service: user 1 is cached under one key.
for port in "$REDIS_SQLITE" "$REDIS_PG"; do
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis-$port.log" 2>&1 & pids+=($!)
done
start() { # NAME BINARY PORT VAR=VALUE...
  local name="$1" exe="$2" port="$3"; shift 3
  mkdir -p "$work/$name"
  env LOG_LEVEL=info HTTP_HOST=127.0.0.1 HTTP_PORT="$port" DATA_DIR="$work/$name" JWKS_URL="$JWKS" "$@" \
    "$bin/$exe" >"$work/$name.log" 2>&1 & pids+=($!)
}
start cached-sqlite user-service "$CACHED_SQLITE" REDIS_URL="redis://127.0.0.1:$REDIS_SQLITE"
start uncached-sqlite user-service "$UNCACHED_SQLITE" REDIS_URL="redis://127.0.0.1:$NO_REDIS"
start blog-sqlite blog-service "$BLOG_SQLITE" USER_SERVICE_URL="http://127.0.0.1:$CACHED_SQLITE"
start cached-pg user-service "$CACHED_PG" REDIS_URL="redis://127.0.0.1:$REDIS_PG" DATABASE_URL="$DATABASE_URL"
start uncached-pg user-service "$UNCACHED_PG" REDIS_URL="redis://127.0.0.1:$NO_REDIS" DATABASE_URL="$DATABASE_URL"
start blog-pg blog-service "$BLOG_PG" USER_SERVICE_URL="http://127.0.0.1:$CACHED_PG" DATABASE_URL="$DATABASE_URL"
start auth auth-service "$AUTH_PORT" USER_SERVICE_URL="http://127.0.0.1:$CACHED_SQLITE"
for port in "$CACHED_SQLITE" "$UNCACHED_SQLITE" "$BLOG_SQLITE" "$CACHED_PG" "$UNCACHED_PG" "$BLOG_PG" "$AUTH_PORT"; do
  ok=0
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && { ok=1; break; }; sleep 0.1; done
  [ "$ok" = 1 ] || { echo "the service on port $port is not ready; logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
done
# "bench" is user 1 everywhere: in each SQLite file and in the one PostgreSQL database the two
# PostgreSQL user-services share. auth-service (on the SQLite one) signs a token that both
# blog-services accept (same keys, same user id and password version).
register() {
  curl -fs -X POST "http://127.0.0.1:$1/api/users" -H 'Content-Type: application/json' \
    -d '{"username":"bench","email":"bench@example.com","password":"benchmark password"}' | jq -r .id
}
for port in "$CACHED_SQLITE" "$UNCACHED_SQLITE" "$CACHED_PG"; do
  [ "$(register "$port")" = 1 ] || { echo "bench is not user 1 on port $port" >&2; exit 1; }
done
TOKEN=$(curl -fs -X POST "http://127.0.0.1:$AUTH_PORT/api/auth/login" -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"benchmark password"}' | jq -r .access_token)
export TOKEN
# 200 posts through the API on each blog-service.
body=$(python3 -c 'import json; print(json.dumps({"title": "Post", "body": "Lorem ipsum dolor sit amet. " * 20}))')
for port in "$BLOG_SQLITE" "$BLOG_PG"; do
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/api/posts" -H 'Content-Type: application/json' \
      -H "Authorization: Bearer $TOKEN" -d "$body"
  done
done
for port in "$CACHED_SQLITE" "$CACHED_PG"; do curl -fs "http://127.0.0.1:$port/api/users/1" >/dev/null; done  # fill the cache
cat >"$work/create.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"Benchmark post","body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA

run() { # URL [wrk args] -> "requests_per_second p99_ms non_2xx"
  local url="$1"; shift
  wrk -t1 -c64 -d"$DURATION" --latency "$@" "$url" | awk '
    /Requests\/sec/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $NF }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v = v * 1000 }; p99 = v }
    END { printf "%s %s %d\n", rps, p99, bad }'
}
declare -A sqlite_url=(
  [users-cached]="http://127.0.0.1:$CACHED_SQLITE/api/users/1" [users-uncached]="http://127.0.0.1:$UNCACHED_SQLITE/api/users/1"
  [posts-list]="http://127.0.0.1:$BLOG_SQLITE/api/posts" [posts-create]="http://127.0.0.1:$BLOG_SQLITE/api/posts"
)
declare -A pg_url=(
  [users-cached]="http://127.0.0.1:$CACHED_PG/api/users/1" [users-uncached]="http://127.0.0.1:$UNCACHED_PG/api/users/1"
  [posts-list]="http://127.0.0.1:$BLOG_PG/api/posts" [posts-create]="http://127.0.0.1:$BLOG_PG/api/posts"
)
paths=(users-cached users-uncached posts-list posts-create)

echo "round path sqlite_rps p99_ms non2xx postgres_rps p99_ms non2xx"
: >"$work/results"
for round in $(seq 1 "$ROUNDS"); do
  for path in "${paths[@]}"; do
    extra=()
    [ "$path" = posts-create ] && extra=(-s "$work/create.lua")
    s_url="${sqlite_url[$path]}"; p_url="${pg_url[$path]}"
    if [ $((round % 2)) = 1 ]; then
      s=$(run "$s_url" "${extra[@]}"); p=$(run "$p_url" "${extra[@]}")
    else
      p=$(run "$p_url" "${extra[@]}"); s=$(run "$s_url" "${extra[@]}")
    fi
    echo "$round $path $s $p" | tee -a "$work/results"
  done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print()
print("| path | SQLite req/s | SQLite p99 ms | PostgreSQL req/s | PostgreSQL p99 ms | PostgreSQL/SQLite req/s |")
print("|---|---|---|---|---|---|")
for path in ["users-cached", "users-uncached", "posts-list", "posts-create"]:
    mine = [r for r in rows if r[1] == path]
    s, sp = statistics.median(float(r[2]) for r in mine), statistics.median(float(r[3]) for r in mine)
    p, pp = statistics.median(float(r[5]) for r in mine), statistics.median(float(r[6]) for r in mine)
    print(f"| {path} | {s:,.0f} | {sp:.2f} | {p:,.0f} | {pp:.2f} | {p / s:.2f} |")
bad = sum(int(r[4]) + int(r[7]) for r in rows)
print(f"\nnon-2xx answers in all runs: {bad}")
PY
for port in "$CACHED_SQLITE" "$CACHED_PG"; do
  echo "cache results on port $port: $(curl -fs "http://127.0.0.1:$port/metrics" | grep '^cache_requests_total' | tr '\n' ' ')"
done
echo "posts: SQLite $(curl -fs "http://127.0.0.1:$BLOG_SQLITE/api/posts?limit=1" | jq .total), PostgreSQL $(curl -fs "http://127.0.0.1:$BLOG_PG/api/posts?limit=1" | jq .total)"
