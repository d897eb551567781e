#!/usr/bin/env bash
# The shared middleware stack (metrics + JSON access log + tracing + request id) against a bare
# Hummingbird route, side by side in one run: wrk -t1 -c64 against each, alternating, ROUNDS
# rounds of DURATION each; medians and the ratio at the end. Access logs go to a file, as they
# would to a container runtime's log pipe.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
# PIN=1 pins both servers to CPU 0 and wrk to CPU 1: less noise from the two competing for cores.
SERVER_CPU=""; CLIENT_CPU=""
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU="taskset -c 0"; CLIENT_CPU="taskset -c 1"; fi
BARE_PORT=7901
KIT_PORT=7902

command -v wrk >/dev/null || bash scripts/install-deps.sh bench
swift build -c release --product kit-overhead-server >/dev/null
bin="$(swift build -c release --show-bin-path)/kit-overhead-server"
work="$(mktemp -d)"
$SERVER_CPU "$bin" bare "$BARE_PORT" >"$work/bare.log" 2>&1 & bare_pid=$!
LOG_LEVEL=info $SERVER_CPU "$bin" kit "$KIT_PORT" >"$work/kit.log" 2>&1 & kit_pid=$!
trap 'kill $bare_pid $kit_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for port in $BARE_PORT $KIT_PORT; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/bench" >/dev/null && break; sleep 0.1; done
done

run() { # prints "requests_per_second p99_ms"
  $CLIENT_CPU wrk -t1 -c64 -d"$DURATION" --latency "http://127.0.0.1:$1/bench" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v = v * 1000 }; p99 = v }
    END { printf "%s %s\n", rps, p99 }'
}

# Warm-up: connections, caches, the first metric series.
wrk -t1 -c64 -d3s "http://127.0.0.1:$BARE_PORT/bench" >/dev/null
wrk -t1 -c64 -d3s "http://127.0.0.1:$KIT_PORT/bench" >/dev/null

echo "round bare_rps bare_p99_ms kit_rps kit_p99_ms"
: >"$work/results"
for round in $(seq 1 "$ROUNDS"); do
  bare=$(run $BARE_PORT); kit=$(run $KIT_PORT)
  echo "$round $bare $kit" | tee -a "$work/results"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split()[1:])) for line in open(sys.argv[1])]
bare_rps = statistics.median(r[0] for r in rows); bare_p99 = statistics.median(r[1] for r in rows)
kit_rps = statistics.median(r[2] for r in rows); kit_p99 = statistics.median(r[3] for r in rows)
print(f"median bare: {bare_rps:,.0f} req/s, p99 {bare_p99:.2f} ms")
print(f"median kit:  {kit_rps:,.0f} req/s, p99 {kit_p99:.2f} ms")
print(f"kit/bare throughput, medians: {kit_rps / bare_rps:.3f} (loss {100 * (1 - kit_rps / bare_rps):.1f} %)")
ratios = [r[2] / r[0] for r in rows]
print(f"kit/bare throughput, median of per-round ratios: {statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
PY
echo "per access line (render + buffered write, in-process): $("$bin" micro | awk '/accesslog-buffered/ {printf "%.0f ns", $2}')"
echo "access log lines written by the kit server: $(grep -c '"message":"request"' "$work/kit.log")"
