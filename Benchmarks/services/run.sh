#!/usr/bin/env bash
# Read paths of the data services, side by side in one run, with wrk -t1 -c64:
#   users-cached    GET /api/users/{id} on user-service with Redis (cache hits)
#   users-sqlite    GET /api/users/{id} on user-service without Redis (every read from SQLite)
#   posts           GET /api/posts (20 newest of 200) on blog-service
# ROUNDS rounds of DURATION each, alternating; medians at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"

command -v wrk >/dev/null || bash scripts/install-deps.sh bench
swift build -c release >/dev/null
bin="$(swift build -c release --show-bin-path)"
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port); CACHED_PORT=$(free_port); SQLITE_PORT=$(free_port); BLOG_PORT=$(free_port); NO_REDIS=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
LOG_LEVEL=info HTTP_PORT=$CACHED_PORT DATA_DIR="$work/cached" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$bin/user-service" >"$work/cached.log" 2>&1 & pids+=($!)
LOG_LEVEL=info HTTP_PORT=$SQLITE_PORT DATA_DIR="$work/sqlite" REDIS_URL="redis://127.0.0.1:$NO_REDIS" "$bin/user-service" >"$work/sqlite.log" 2>&1 & pids+=($!)
LOG_LEVEL=info HTTP_PORT=$BLOG_PORT DATA_DIR="$work/blog" "$bin/blog-service" >"$work/blog.log" 2>&1 & pids+=($!)
for port in $CACHED_PORT $SQLITE_PORT $BLOG_PORT; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
done
for port in $CACHED_PORT $SQLITE_PORT; do
  curl -fs -X POST "http://127.0.0.1:$port/api/users" -H 'Content-Type: application/json' \
    -d '{"username":"bench","email":"bench@example.com","password":"benchmark password"}' >/dev/null
done
# 200 posts straight into blog.db (the service created the schema; WAL lets both write).
python3 - "$work/blog/blog.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=5)
now = int(time.time() * 1000)
db.executemany("INSERT INTO posts (author_id, author, title, body, created_at, updated_at) VALUES (1, 'bench', ?, ?, ?, ?)",
               [(f"Post {i}", "Lorem ipsum dolor sit amet. " * 20, now + i, now + i) for i in range(200)])
db.commit()
PY
curl -fs "http://127.0.0.1:$CACHED_PORT/api/users/1" >/dev/null   # fill the cache

run() { # URL -> "requests_per_second p99_ms"
  wrk -t1 -c64 -d"$DURATION" --latency "$1" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v = v * 1000 }; p99 = v }
    END { printf "%s %s\n", rps, p99 }'
}
echo "round users_cached_rps p99_ms users_sqlite_rps p99_ms posts_rps p99_ms"
: >"$work/results"
for round in $(seq 1 "$ROUNDS"); do
  a=$(run "http://127.0.0.1:$CACHED_PORT/api/users/1")
  b=$(run "http://127.0.0.1:$SQLITE_PORT/api/users/1")
  c=$(run "http://127.0.0.1:$BLOG_PORT/api/posts")
  echo "$round $a $b $c" | tee -a "$work/results"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split()[1:])) for line in open(sys.argv[1])]
for name, i in [("users cached (Redis hit)", 0), ("users from SQLite (no Redis)", 2), ("posts list", 4)]:
    print(f"median {name}: {statistics.median(r[i] for r in rows):,.0f} req/s, p99 {statistics.median(r[i + 1] for r in rows):.2f} ms")
PY
echo "cache results on the cached instance: $(curl -fs "http://127.0.0.1:$CACHED_PORT/metrics" | grep '^cache_requests_total' | tr '\n' ' ')"
