#!/usr/bin/env bash
# The trace store's costs (release build): batch ingest into SQLite in records/s, the
# per-record cost of enqueueing on the request path, and 10,000 records/s sustained through the
# real writer with default settings (drops must be zero), then the same while retention deletes
# 300,000 expired rows. ROUNDS runs of ingest and enqueue; medians. Then ingest into a store that
# already holds 1,000,000 rows, with random and with time-ordered trace ids.
#   SECONDS_SUSTAINED=60 ROUNDS=3 bash Benchmarks/trace/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-3}"
SUSTAIN="${SECONDS_SUSTAINED:-60}"
swift build -c release --product trace-bench >/dev/null
bin="$(swift build -c release --show-bin-path)/trace-bench"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ingest=(); enqueue=()
for round in $(seq 1 "$ROUNDS"); do
  line="$("$bin" ingest 200000)"; echo "round $round: $line"
  ingest+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) records\/s.*/\1/')")
  line="$("$bin" enqueue 1000000)"; echo "round $round: $line"
  enqueue+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) ns each.*/\1/')")
done
echo "median ingest: $(printf '%s\n' "${ingest[@]}" | median) records/s (target >= 100,000)"
# A store that has been recording a while: 200,000 more rows into one already holding 1,000,000,
# with random trace ids (as clients that send their own traceparent give them) and with the
# time-ordered ids the services make for the traces they start.
PRELOAD=1000000 "$bin" ingest 200000
PRELOAD=1000000 IDS=time "$bin" ingest 200000
echo "median enqueue: $(printf '%s\n' "${enqueue[@]}" | median) ns per record"
"$bin" sustain "$SUSTAIN"
# The same while retention deletes 300,000 expired rows (it shares no lock with the writer).
EXPIRED=300000 "$bin" sustain "$SUSTAIN"
