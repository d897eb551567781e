#!/usr/bin/env bash
# The public API fuzzed against its contract: starts its own stack from prebuilt binaries,
# registers a few users and logs them in, runs schemathesis with openapi/titanium.yaml as the
# gateway serves it (GET /api/openapi.json, through the load balancer) and a real user's token,
# then checks that nothing was damaged: every user made before the run still logs in, and every
# SQLite database of the stack passes PRAGMA integrity_check. Always stops the stack.
#
#   TITANIUM_BIN_DIR=$(swift build --show-bin-path) bash scripts/fuzz-api.sh
#
# schemathesis checks: not_a_server_error (no 5xx), status_code_conformance (only documented
# statuses), response_schema_conformance and content_type_conformance (each answer as its
# status documents it). Its phases: examples, coverage, fuzzing (at most FUZZ_MAX_EXAMPLES
# cases an operation each) and stateful (links: a created post read, changed, deleted), within
# FUZZ_MAX_TIME seconds and a hard `timeout`.
#
# The stack's rate limits are raised (RATE_LIMIT_* below): schemathesis sends hundreds of logins,
# registrations and post writes from one address in a minute, and at the default limits nearly all
# of them would be 429s (documented, so still conforming, but exploring nothing). The limiter still
# runs on every request. BCRYPT_COST=4 keeps the registrations and logins it sends fast.
#
# Environment:
#   TITANIUM_BIN_DIR     required: the folder holding the five service executables
#   FUZZ_PORT_OFFSET     added to every service port (default 40: load balancer on 7140)
#   FUZZ_REDIS_PORT      Redis port for this stack (default 6379 + offset)
#   FUZZ_MAX_EXAMPLES    schemathesis --max-examples (default 40)
#   FUZZ_MAX_TIME        schemathesis --max-time in seconds (default 90); the run is killed at +60 s
#   FUZZ_SEED            schemathesis --seed (default: a new one each run, printed)
#   FUZZ_CHECKS          schemathesis --checks instead of the four above (e.g. all)
#   FUZZ_OUTPUT          reports (JUnit XML, the stack's logs on failure): default test-output/fuzz
#   FUZZ_VAR             state folder (default: a new temporary folder, removed on success)
# Installs schemathesis (pinned in scripts/lib/tools.sh) in $VENV_DIR/fuzz; needs sqlite3 and curl
# (scripts/install-deps.sh test). Exit status: 0 pass, 1 a failure, 2 misuse, 70 no stack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# ensure_venv, install_apt, VENV_DIR and FUZZ_REQUIREMENTS.
# shellcheck source=scripts/lib/tools.sh
. scripts/lib/tools.sh

if [ -z "${TITANIUM_BIN_DIR:-}" ]; then
  echo "fuzz-api: set TITANIUM_BIN_DIR to the folder with the built service executables" >&2
  exit 2
fi
TITANIUM_BIN_DIR="$(cd "$TITANIUM_BIN_DIR" && pwd)"
for name in load-balancer api-gateway auth-service user-service blog-service; do
  [ -x "$TITANIUM_BIN_DIR/$name" ] || { echo "fuzz-api: $TITANIUM_BIN_DIR/$name is missing or not executable" >&2; exit 2; }
done
OFFSET="${FUZZ_PORT_OFFSET:-40}"
REDIS_PORT="${FUZZ_REDIS_PORT:-$((6379 + OFFSET))}"
LB="http://127.0.0.1:$((7100 + OFFSET))"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-40}"
MAX_TIME="${FUZZ_MAX_TIME:-90}"
SEED="${FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
OUT="${FUZZ_OUTPUT:-$ROOT/test-output/fuzz}"

install_apt sqlite3 curl python3 python3-venv || exit 2
ensure_venv "$VENV_DIR/fuzz" "$FUZZ_REQUIREMENTS" || { echo "fuzz-api: cannot create $VENV_DIR/fuzz" >&2; exit 2; }

# The stack must be our own: refuse ports that already answer (stack.sh would reuse a Redis it finds).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $((7100 + OFFSET)) $((7200 + OFFSET)) $((7301 + OFFSET)) $((7302 + OFFSET)) $((7303 + OFFSET)) "$REDIS_PORT"; do
  if port_in_use "$port"; then
    echo "fuzz-api: port $port is already in use; choose another FUZZ_PORT_OFFSET / FUZZ_REDIS_PORT" >&2
    exit 2
  fi
done

KEEP_VAR=1
if [ -n "${FUZZ_VAR:-}" ]; then
  VAR="$FUZZ_VAR"
  mkdir -p "$VAR"
else
  VAR="$(mktemp -d "${TMPDIR:-/tmp}/titanium-fuzz.XXXXXX")"
  KEEP_VAR=0
fi
rm -rf "$OUT" && mkdir -p "$OUT"

stack() {
  TITANIUM_BIN_DIR="$TITANIUM_BIN_DIR" TITANIUM_VAR="$VAR" TITANIUM_PORT_OFFSET="$OFFSET" REDIS_PORT="$REDIS_PORT" \
    RATE_LIMIT_LOGIN=100000/60 RATE_LIMIT_LOGIN_IP=100000/60 RATE_LIMIT_REGISTER=100000/60 RATE_LIMIT_POST_WRITES=100000/60 \
    BCRYPT_COST=4 bash scripts/stack.sh "$@"
}

status=70
finish() {
  stack down >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    mkdir -p "$OUT/log"
    cp "$VAR"/log/*.log "$OUT/log/" 2>/dev/null || true
    echo "fuzz-api: FAILED (status $status); the stack's logs are in $OUT/log" >&2
  elif [ "$KEEP_VAR" = 0 ]; then
    rm -rf "$VAR"
  fi
  exit "$status"
}
trap 'finish' EXIT
trap 'status=130; exit 130' INT TERM

started=$(date +%s)
echo "fuzz-api: starting a stack on $LB (Redis $REDIS_PORT, state $VAR)"
if ! stack up --detach >"$VAR/stack-up.log" 2>&1; then
  cat "$VAR/stack-up.log" >&2
  echo "fuzz-api: the stack did not start" >&2
  exit 70
fi

# --- users made before the run ----------------------------------------------------------------

# POST $2 (JSON) to $1 with the token $3 (may be empty); prints the status, then the body.
post() {
  curl -sS -m 10 -o "$VAR/body" -w '%{http_code}' -X POST "$LB$1" -H 'Content-Type: application/json' \
    ${3:+-H "Authorization: Bearer $3"} --data-binary "$2" || echo 000
  echo
  cat "$VAR/body" 2>/dev/null || true
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# A token for $1 with password $2, or nothing.
login() {
  local answer
  answer="$(post /api/auth/login "{\"username\":\"$1\",\"password\":\"$2\"}" "")"
  [ "$(head -n 1 <<<"$answer")" = 200 ] || { echo "fuzz-api: login of $1: $answer" >&2; return 1; }
  tail -n +2 <<<"$answer" | json_field access_token
}

status=1
declare -A PASSWORDS
USERS=()
for n in 1 2 3; do
  name="fuzz${n}_$SEED"
  password="pw-$n-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  answer="$(post /api/users "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"$password\"}" "")"
  if [ "$(head -n 1 <<<"$answer")" != 201 ]; then echo "fuzz-api: registering $name: $answer" >&2; exit 1; fi
  PASSWORDS[$name]="$password"
  USERS+=("$name")
done
TOKEN="$(login "${USERS[0]}" "${PASSWORDS[${USERS[0]}]}")" || exit 1
OTHER_TOKEN="$(login "${USERS[1]}" "${PASSWORDS[${USERS[1]}]}")" || exit 1
# Posts of the fuzzing user (its own to change) and of another (403 to change).
for token in "$TOKEN" "$TOKEN" "$OTHER_TOKEN"; do
  answer="$(post /api/posts '{"title":"Seeded","body":"A post made before the run"}' "$token")"
  [ "$(head -n 1 <<<"$answer")" = 201 ] || { echo "fuzz-api: seeding a post: $answer" >&2; exit 1; }
done
echo "fuzz-api: ${#USERS[@]} users registered and logged in (${USERS[*]}), 3 posts; fuzzing as ${USERS[0]}"

# --- schemathesis -----------------------------------------------------------------------------

echo "fuzz-api: schemathesis $("$VENV_DIR/fuzz/bin/schemathesis" --version | awk '{print $NF}') against $LB/api/openapi.json" \
  "(max examples $MAX_EXAMPLES, max time $MAX_TIME s, seed $SEED)"
set +e
timeout --kill-after=10 $((MAX_TIME + 60)) "$VENV_DIR/fuzz/bin/schemathesis" run "$LB/api/openapi.json" \
  --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance}" \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --seed "$SEED" --workers 1 \
  --request-timeout 10 --generation-database none --no-color \
  --report junit --report-junit-path "$OUT/schemathesis.xml"
fuzz_status=$?
set -e
echo "fuzz-api: schemathesis exited with $fuzz_status"

# --- nothing damaged --------------------------------------------------------------------------

damaged=0
for name in "${USERS[@]}"; do
  if login "$name" "${PASSWORDS[$name]}" >/dev/null; then
    echo "fuzz-api: $name still logs in"
  else
    damaged=1
  fi
done
# Quiet files: the services flush and exit first (the trace stores too).
stack down >/dev/null 2>&1 || true
databases=0
while IFS= read -r db; do
  databases=$((databases + 1))
  result="$(sqlite3 "$db" 'PRAGMA integrity_check' 2>&1)"
  if [ "$result" = ok ]; then
    echo "fuzz-api: integrity_check ok: ${db#"$VAR"/}"
  else
    echo "fuzz-api: integrity_check of $db: $result" >&2
    damaged=1
  fi
done < <(find "$VAR/data" -type f -name '*.db' | sort)
if [ "$databases" -lt 2 ]; then echo "fuzz-api: found only $databases databases under $VAR/data" >&2; damaged=1; fi

echo "fuzz-api: took $(( $(date +%s) - started )) s"
if [ "$fuzz_status" -ne 0 ] || [ "$damaged" -ne 0 ]; then
  status=1
  exit 1
fi
status=0
echo "fuzz-api: passed"
