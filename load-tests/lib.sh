# shellcheck shell=sh
# Shared by mixed_load.sh and mixed_load_plus.sh (sourced, never run). POSIX sh + curl; jq is
# used when present, otherwise an awk JSON reader gives the same answers.
#
# The caller sets LOAD_NAME (script name) and LOAD_PLUS (0: list/detail/create, 1: plus
# update/delete and --cleanup), then calls load_main "$@".
#
# How a run works:
#   setup   register a unique user, log in (JWT), create 5 seed posts (retrying once after
#           Retry-After when the gateway answers 429)
#   mix     one background loop per operation; request k of an operation is due at
#           start + k / rate and is sent in the background, so a slow answer does not lower
#           the rate (open loop); loops stop sending at start + duration, then wait for the
#           requests still in flight (each bounded by --timeout)
#   report  requests, failures by operation and status, failure rate, p50/p95/p99 latency
#           (curl's time_total), the load balancer's /stats; exit 1 above --max-failure-rate
# Every request line is "op status seconds ok|fail" in $WORK/results.

# ---------------------------------------------------------------------------------------------
# small helpers

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$LOAD_NAME" "$*" >&2; }
# die CODE MESSAGE
die() { printf '%s: %s\n' "$LOAD_NAME" "$2" >&2; exit "$1"; }

# is_number TEXT: a non-negative decimal such as 5, 0.5 or .25
is_number() {
    case $1 in
        '' | . | *[!0-9.]* | *.*.*) return 1 ;;
    esac
    return 0
}

# to_milli NUMBER: NUMBER × 1000, rounded, on stdout
to_milli() { awk -v v="$1" 'BEGIN { printf "%d\n", v * 1000 + 0.5 }'; }

# seconds_of DURATION: 20, 20s, 5m or 1h → seconds on stdout, nothing when invalid
seconds_of() {
    case $1 in
        *[!0-9smh]* | '' | [smh]*) return 0 ;;
        *s) _n=${1%s} _f=1 ;;
        *m) _n=${1%m} _f=60 ;;
        *h) _n=${1%h} _f=3600 ;;
        *) _n=$1 _f=1 ;;
    esac
    case $_n in '' | *[!0-9]*) return 0 ;; esac
    # strip leading zeros so that $(( )) does not read octal
    while case $_n in 0?*) true ;; *) false ;; esac; do _n=${_n#0}; done
    say "$((_n * _f))"
}

# ---------------------------------------------------------------------------------------------
# clock and sleep: milliseconds without forking where the system allows it

clock_init() {
    CLOCK=seconds
    if [ -r /proc/uptime ] && read -r _up _ </proc/uptime 2>/dev/null; then
        case $_up in *.*) CLOCK=uptime ;; esac
    fi
    if [ "$CLOCK" = seconds ]; then
        _t=$(date +%s%N 2>/dev/null)
        case $_t in '' | *[!0-9]*) ;; *) CLOCK=date_ns ;; esac
    fi
    [ "$CLOCK" = seconds ] && warn "no sub-second clock (/proc/uptime or date +%N): pacing is coarse"
    sleep 0.01 2>/dev/null || die 2 "this system's sleep does not take fractions of a second (needed for pacing)"
}

# now_ms: sets NOW_MS
now_ms() {
    case $CLOCK in
        uptime)
            read -r _up _ </proc/uptime
            _s=${_up%.*} _f=${_up#*.}
            _len=${#_f}
            while case $_f in 0?*) true ;; *) false ;; esac; do _f=${_f#0}; done
            case $_len in
                1) NOW_MS=$((_s * 1000 + _f * 100)) ;;
                2) NOW_MS=$((_s * 1000 + _f * 10)) ;;
                *) NOW_MS=$((_s * 1000 + _f)) ;;
            esac
            ;;
        date_ns) NOW_MS=$(($(date +%s%N) / 1000000)) ;;
        *) NOW_MS=$(($(date +%s) * 1000)) ;;
    esac
}

# sleep_ms MILLISECONDS
sleep_ms() {
    [ "$1" -gt 0 ] || return 0
    _r=$(($1 % 1000))
    case ${#_r} in 1) _r=00$_r ;; 2) _r=0$_r ;; esac
    sleep "$(($1 / 1000)).$_r"
}

# sleep_until MS: sleeps in steps of at most 1 s until the clock reaches MS or a stop is asked
sleep_until() {
    while :; do
        [ -e "$WORK/stop" ] && return 1
        now_ms
        [ "$NOW_MS" -lt "$1" ] || return 0
        _d=$(($1 - NOW_MS))
        [ "$_d" -gt 1000 ] && _d=1000
        sleep_ms "$_d"
    done
}

# rand_next: a linear congruential generator in shell arithmetic (no $RANDOM in POSIX sh)
rand_next() { RAND=$(((RAND * 1103515245 + 12345) % 2147483648)); }

# ---------------------------------------------------------------------------------------------
# JSON: jq when present, otherwise awk. Both produce "path<TAB>value" lines with jq-style paths
# (.services[0].name), so everything after the flattening is shared.

# json_flatten_awk [FILE]
json_flatten_awk() {
    awk '
function path(   i, s) {
    s = ""
    for (i = 1; i <= depth; i++) s = s (kind[i] == "a" ? "[" idx[i] "]" : "." key[i])
    return s
}
{ buf = buf $0 "\n" }
END {
    n = length(buf); i = 1; depth = 0; want_key = 0
    while (i <= n) {
        c = substr(buf, i, 1)
        if (c == "{") { depth++; kind[depth] = "o"; key[depth] = ""; want_key = 1; i++ }
        else if (c == "[") { depth++; kind[depth] = "a"; idx[depth] = 0; want_key = 0; i++ }
        else if (c == "}" || c == "]") { depth--; want_key = 0; i++ }
        else if (c == ",") { if (kind[depth] == "a") idx[depth]++; else want_key = 1; i++ }
        else if (c == ":") { want_key = 0; i++ }
        else if (c == "\"") {
            s = ""; j = i + 1
            while (j <= n) {
                ch = substr(buf, j, 1)
                if (ch == "\\") {
                    e = substr(buf, j + 1, 1)
                    if (e == "n" || e == "t" || e == "r") s = s " "
                    else if (e == "u") { s = s "\\u" substr(buf, j + 2, 4); j += 4 }
                    else if (e == "b" || e == "f") s = s ""
                    else s = s e
                    j += 2
                } else if (ch == "\"") break
                else { s = s ch; j++ }
            }
            i = j + 1
            if (depth > 0 && kind[depth] == "o" && want_key) key[depth] = s
            else print path() "\t" s
        }
        else if (c == " " || c == "\t" || c == "\n" || c == "\r") i++
        else {
            j = i
            while (j <= n && index(",}] \t\r\n", substr(buf, j, 1)) == 0) j++
            print path() "\t" substr(buf, i, j - i)
            i = j
        }
    }
}' "$@"
}


# json_flatten < JSON
json_flatten() {
    if [ "$USE_JQ" = 1 ]; then
        jq -r 'paths(type != "object" and type != "array") as $p
  | "\($p | map(if type == "number" then "[\(.)]" else ".\(.)" end) | join(""))\t\(getpath($p) | if type == "string" then gsub("[\t\n\r]"; " ") else tostring end)"' 2>/dev/null
    else
        json_flatten_awk
    fi
}

# json_get FILE PATH: one scalar (".access_token", ".id"), nothing when absent or null
json_get() {
    if [ "$USE_JQ" = 1 ]; then
        jq -r "$2 | select(. != null)" "$1" 2>/dev/null
    else
        json_flatten_awk "$1" | awk -F '\t' -v p="$2" '$1 == p { print $2; exit }'
    fi
}

# header_value FILE NAME: a response header from curl -D (case-insensitive name)
header_value() {
    awk -v want="$2" 'BEGIN { want = tolower(want) }
        { sub(/\r$/, "") }
        index($0, ":") { name = tolower(substr($0, 1, index($0, ":") - 1)); if (name == want) { v = substr($0, index($0, ":") + 1); sub(/^[ \t]+/, "", v); print v; exit } }' "$1"
}

# ---------------------------------------------------------------------------------------------
# arguments

# op_rate OP: sets OP_RATE (as given) and OP_MILLI (requests per 1000 s)
op_rate() {
    case $1 in
        list) OP_RATE=$RATE_list OP_MILLI=${MILLI_list:-0} ;;
        detail) OP_RATE=$RATE_detail OP_MILLI=${MILLI_detail:-0} ;;
        create) OP_RATE=$RATE_create OP_MILLI=${MILLI_create:-0} ;;
        update) OP_RATE=$RATE_update OP_MILLI=${MILLI_update:-0} ;;
        delete) OP_RATE=$RATE_delete OP_MILLI=${MILLI_delete:-0} ;;
    esac
}

load_usage() {
    cat <<EOF
usage: $LOAD_NAME [options]

Registers a user, logs in, creates 5 seed posts, then runs list, detail$( [ "$LOAD_PLUS" = 1 ] && printf ', create, update and delete' || printf ' and create')
concurrently, each at its own rate, for the duration; prints totals, failures by operation and
status, the failure rate, p50/p95/p99 latency per operation and the load balancer's /stats.
Exit status: 0 pass, 1 failure rate above --max-failure-rate, 2 usage, 3 setup failed$( [ "$LOAD_PLUS" = 1 ] && printf ',\n4 --cleanup could not delete every post this run created')

  --url URL                 load balancer base URL                  [$DEF_URL]
  --duration D              20, 20s, 5m, 1h                         [$DEF_DURATION]
  --rate-list R             GET /api/posts, requests/s (0 = off)    [$DEF_RATE_LIST]
  --rate-detail R           GET /api/posts/{random seed}            [$DEF_RATE_DETAIL]
  --rate-create R           POST /api/posts                         [$DEF_RATE_CREATE]
EOF
    if [ "$LOAD_PLUS" = 1 ]; then
        cat <<EOF
  --rate-update R           PATCH /api/posts/{random seed}          [$DEF_RATE_UPDATE]
  --rate-delete R           DELETE a post created during this run   [$DEF_RATE_DELETE]
  --cleanup                 afterwards, delete every post this run created (seeds too),
                            by id, and nothing else
EOF
    fi
    cat <<EOF
  --max-failure-rate P      allowed failures in % of all requests   [$DEF_MAX_FAILURE_RATE]
  --timeout S               per-request timeout in seconds          [$DEF_TIMEOUT]
  --no-jq                   parse JSON with awk even when jq is installed
  -h, --help                this text

Rates may be fractions (0.5 = one request every 2 s). The gateway limits post writes
(create + update + delete) to 1200/min per signed-in user by default (RATE_LIMIT_POST_WRITES),
register to 3/min per IP and login to 5/min per username and 20/min per IP. 429 answers are
reported apart ("limited"): they are neither successes nor failures.
EOF
}

DEF_URL=http://127.0.0.1:7100
DEF_DURATION=30
DEF_RATE_LIST=5
DEF_RATE_DETAIL=5
DEF_RATE_CREATE=0.5
DEF_RATE_UPDATE=0.2
DEF_RATE_DELETE=0.1
DEF_MAX_FAILURE_RATE=2
DEF_TIMEOUT=10

load_parse_args() {
    URL=$DEF_URL DURATION=$DEF_DURATION MAX_FAILURE_RATE=$DEF_MAX_FAILURE_RATE TIMEOUT=$DEF_TIMEOUT
    RATE_list=$DEF_RATE_LIST RATE_detail=$DEF_RATE_DETAIL RATE_create=$DEF_RATE_CREATE
    RATE_update=0 RATE_delete=0 CLEANUP=0 USE_JQ=auto
    if [ "$LOAD_PLUS" = 1 ]; then RATE_update=$DEF_RATE_UPDATE RATE_delete=$DEF_RATE_DELETE; fi
    while [ $# -gt 0 ]; do
        _opt=$1 _val='' _has=0
        case $_opt in
            --*=*) _val=${_opt#*=} _opt=${_opt%%=*} _has=1 ;;
        esac
        case $_opt in
            -h | --help) load_usage; exit 0 ;;
            --no-jq) USE_JQ=0; shift; continue ;;
            --cleanup)
                [ "$LOAD_PLUS" = 1 ] || die 2 "--cleanup is an option of mixed_load_plus.sh"
                CLEANUP=1; shift; continue ;;
            --url | --duration | --rate-list | --rate-detail | --rate-create | --rate-update | --rate-delete | --max-failure-rate | --timeout)
                if [ "$_has" = 0 ]; then
                    [ $# -ge 2 ] || die 2 "$_opt needs a value (see --help)"
                    _val=$2
                    shift
                fi
                shift ;;
            *) die 2 "unknown option: $1 (see --help)" ;;
        esac
        case $_opt in
            --url) URL=${_val%/} ;;
            --duration) DURATION=$_val ;;
            --rate-list) RATE_list=$_val ;;
            --rate-detail) RATE_detail=$_val ;;
            --rate-create) RATE_create=$_val ;;
            --rate-update | --rate-delete)
                [ "$LOAD_PLUS" = 1 ] || die 2 "$_opt is an option of mixed_load_plus.sh"
                if [ "$_opt" = --rate-update ]; then RATE_update=$_val; else RATE_delete=$_val; fi ;;
            --max-failure-rate) MAX_FAILURE_RATE=${_val%\%} ;;
            --timeout) TIMEOUT=$_val ;;
        esac
    done

    case $URL in http://?* | https://?*) ;; *) die 2 "--url must be an http(s) URL: $URL" ;; esac
    DURATION_S=$(seconds_of "$DURATION")
    { [ -n "$DURATION_S" ] && [ "$DURATION_S" -gt 0 ]; } || die 2 "--duration must be a positive number of seconds (20, 20s, 5m, 1h): $DURATION"
    is_number "$MAX_FAILURE_RATE" || die 2 "--max-failure-rate must be a percentage such as 2 or 0.5: $MAX_FAILURE_RATE"
    awk -v v="$MAX_FAILURE_RATE" 'BEGIN { exit !(v <= 100) }' || die 2 "--max-failure-rate must be at most 100: $MAX_FAILURE_RATE"
    { is_number "$TIMEOUT" && [ "$(to_milli "$TIMEOUT")" -gt 0 ]; } || die 2 "--timeout must be a positive number of seconds: $TIMEOUT"

    OPS=
    _active=0
    for _op in list detail create update delete; do
        op_rate "$_op"
        is_number "$OP_RATE" || die 2 "--rate-$_op must be a non-negative number of requests per second: $OP_RATE"
        _milli=$(to_milli "$OP_RATE")
        if [ "$_milli" = 0 ] && awk -v v="$OP_RATE" 'BEGIN { exit !(v > 0) }'; then
            die 2 "--rate-$_op is below 0.001 requests per second: $OP_RATE"
        fi
        case $_op in
            list) MILLI_list=$_milli ;;
            detail) MILLI_detail=$_milli ;;
            create) MILLI_create=$_milli ;;
            update) MILLI_update=$_milli ;;
            delete) MILLI_delete=$_milli ;;
        esac
        case $_op in update | delete) [ "$LOAD_PLUS" = 1 ] || continue ;; esac
        OPS="$OPS $_op"
        [ "$_milli" -gt 0 ] && _active=1
    done
    OPS=${OPS# }
    [ "$_active" = 1 ] || die 2 "every rate is 0: nothing to do"

    if [ "$USE_JQ" = auto ]; then
        if command -v jq >/dev/null 2>&1; then USE_JQ=1; else USE_JQ=0; fi
    fi
    command -v curl >/dev/null 2>&1 || die 2 "curl is required"
}

# warn_write_rates: the gateway's default post-write limit is 60/min per client IP
warn_write_rates() {
    _per_min=$(awk -v c="$MILLI_create" -v u="$MILLI_update" -v d="$MILLI_delete" \
        'BEGIN { printf "%g\n", (c + u + d) * 60 / 1000 }')
    _first=$(awk -v c="$MILLI_create" -v u="$MILLI_update" -v d="$MILLI_delete" -v s="$DURATION_S" \
        'BEGIN { if (s > 60) s = 60; printf "%d\n", 5 + (c + u + d) * s / 1000 + 0.999 }')
    if awk -v r="$_per_min" 'BEGIN { exit !(r > 1200) }'; then
        warn "post writes requested: $_per_min/min in total (create $RATE_create/s$( [ "$LOAD_PLUS" = 1 ] && printf ' + update %s/s + delete %s/s' "$RATE_update" "$RATE_delete")),
  above the gateway's default limit of 1200/min per user (RATE_LIMIT_POST_WRITES=1200/60).
  All writes come from one user, so expect 429 answers (reported apart as \"limited\").
  To measure more, raise the limit on the gateway (e.g. RATE_LIMIT_POST_WRITES=6000/60) or
  turn it off (RATE_LIMIT_ENABLED=false)."
    elif [ "$_first" -gt 1200 ]; then
        warn "the first minute needs about $_first post writes (5 seed posts + $_per_min/min), above the
  gateway's default limit of 1200/min per user: expect a few 429 answers (reported apart)."
    fi
}

# ---------------------------------------------------------------------------------------------
# setup requests (sequential, not part of the measured mix)

# api METHOD PATH [JSON]: sets API_STATUS; body in $WORK/api.body, headers in $WORK/api.headers.
# Sends the bearer token unless API_AUTH=0. A 429 is retried after its Retry-After (at most
# 65 s), up to twice.
api() {
    _m=$1 _p=$2 _d=${3:-} _tries=0
    while :; do
        set -- -sS -o "$WORK/api.body" -D "$WORK/api.headers" -w '%{http_code}' --max-time "$TIMEOUT" \
            -X "$_m" -A "$USER_AGENT"
        if [ "${API_AUTH:-1}" = 1 ] && [ -s "$WORK/token" ]; then
            read -r _tok <"$WORK/token"
            set -- "$@" -H "Authorization: Bearer $_tok"
        fi
        [ -n "$_d" ] && set -- "$@" -H "Content-Type: application/json" --data "$_d"
        API_STATUS=$(curl "$@" "$URL$_p" 2>"$WORK/api.err")
        [ "$API_STATUS" = 429 ] || return 0
        _tries=$((_tries + 1))
        _after=$(header_value "$WORK/api.headers" Retry-After)
        case $_after in '' | *[!0-9]*) _after=60 ;; esac
        if [ "$_tries" -gt 2 ] || [ "$_after" -gt 65 ]; then return 0; fi
        warn "$_m $_p answered 429 (rate limited); retrying in $_after s as Retry-After asks"
        sleep "$_after"
    done
}

api_failure() { # what to say when a setup request failed
    if [ "$API_STATUS" = 000 ] || [ -z "$API_STATUS" ]; then
        printf 'no HTTP answer: %s' "$(tr '\n' ' ' <"$WORK/api.err")"
    else
        printf 'HTTP %s %s' "$API_STATUS" "$(tr '\n' ' ' <"$WORK/api.body" | cut -c1-300)"
    fi
}

# login: writes the token to $WORK/token (atomically) and sets TOKEN_TTL (seconds)
login() {
    API_AUTH=0 api POST /api/auth/login "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}"
    [ "$API_STATUS" = 200 ] || return 1
    _token=$(json_get "$WORK/api.body" .access_token)
    [ -n "$_token" ] || return 1
    TOKEN_TTL=$(json_get "$WORK/api.body" .expires_in)
    case $TOKEN_TTL in '' | *[!0-9]*) TOKEN_TTL=900 ;; esac
    say "$_token" >"$WORK/token.new"
    mv "$WORK/token.new" "$WORK/token"
}

load_setup() {
    _live=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$URL/health/live" 2>"$WORK/api.err")
    [ "$_live" = 200 ] || die 3 "setup: $URL/health/live answered '${_live:-nothing}' $(tr '\n' ' ' <"$WORK/api.err")- is the stack up?"

    API_AUTH=0 api POST /api/users "{\"username\":\"$USERNAME\",\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}"
    [ "$API_STATUS" = 201 ] || die 3 "setup: register $USERNAME failed: $(api_failure)"
    login || die 3 "setup: login as $USERNAME failed: $(api_failure)"
    : >"$WORK/seeds"
    _i=1
    while [ "$_i" -le 5 ]; do
        api POST /api/posts "{\"title\":\"load seed $_i ($RUN_ID)\",\"body\":\"Seed post $_i of load run $RUN_ID.\"}"
        [ "$API_STATUS" = 201 ] || die 3 "setup: seed post $_i failed: $(api_failure)"
        _id=$(json_get "$WORK/api.body" .id)
        case $_id in '' | *[!0-9]*) die 3 "setup: seed post $_i: no id in $(tr '\n' ' ' <"$WORK/api.body")" ;; esac
        say "$_id" >>"$WORK/seeds"
        eval "SEED_$_i=\$_id"
        _i=$((_i + 1))
    done
    _limit=$(header_value "$WORK/api.headers" RateLimit-Limit)
    _remaining=$(header_value "$WORK/api.headers" RateLimit-Remaining)
    say "setup: user $USERNAME registered and logged in; seed posts $(tr '\n' ' ' <"$WORK/seeds" | sed 's/ $//')"
    if [ -n "$_limit" ]; then
        say "setup: gateway post-write limit for this client: $_limit per window, $_remaining left"
    else
        say "setup: the gateway sent no RateLimit headers on post writes (rate limiting off or failing open)"
    fi
}

# ---------------------------------------------------------------------------------------------
# the mix

# fire OP K METHOD PATH EXPECTED [JSON] [POST_ID]: one measured request (run in the background)
fire() {
    _op=$1 _k=$2 _method=$3 _path=$4 _expect=$5 _data=${6:-} _pid=${7:-}
    _rid="$REQUEST_PREFIX-$_op-$_k"
    _bf="$WORK/tmp/$_op.$_k"
    set -- -sS -o "$_bf" -w '%{http_code} %{time_total}' --max-time "$TIMEOUT" -X "$_method" \
        -A "$USER_AGENT" -H "X-Request-ID: $_rid"
    if [ "$_method" != GET ]; then
        read -r _tok <"$WORK/token"
        set -- "$@" -H "Authorization: Bearer $_tok"
    fi
    [ -n "$_data" ] && set -- "$@" -H "Content-Type: application/json" --data "$_data"
    _out=$(curl "$@" "$URL$_path" 2>"$_bf.err")
    _rc=$?
    _code=${_out%% *} _time=${_out#* }
    case $_time in '' | *[!0-9.]*) _time=0 ;; esac
    if [ "$_rc" != 0 ] || [ -z "$_code" ] || [ "$_code" = 000 ]; then _code="curl$_rc"; fi
    if [ "$_code" = "$_expect" ]; then
        _res=ok
        case $_op in
            create)
                _new=$(json_get "$_bf" .id)
                case $_new in
                    '' | *[!0-9]*) say "$_op $_code $_rid created a post but no id was found: $(tr '\n' ' ' <"$_bf" | cut -c1-200)" >>"$WORK/failures" ;;
                    *) say "$_new" >>"$WORK/created" ;;
                esac ;;
            delete) say "$_pid" >>"$WORK/deleted" ;;
        esac
    elif [ "$_code" = 429 ]; then
        _res=limited
    else
        _res=fail
        case $_code in
            curl*) _why=$(tr '\n' ' ' <"$_bf.err" | cut -c1-200) ;;
            *) _why=$(tr '\n' ' ' <"$_bf" 2>/dev/null | cut -c1-300) ;;
        esac
        say "$_op $_method $_path -> $_code (X-Request-ID $_rid): $_why" >>"$WORK/failures"
    fi
    say "$_op $_code $_time $_res" >>"$WORK/results"
    rm -f "$_bf" "$_bf.err"
}

# pick_seed: sets PICKED to a random seed post id
pick_seed() {
    rand_next
    eval "PICKED=\$SEED_$((RAND / 65536 % 5 + 1))"
}

# op_loop OP: sends OP at its rate from START_MS until END_MS
op_loop() {
    _op=$1
    op_rate "$_op"
    _milli=$OP_MILLI
    [ "$_milli" -gt 0 ] || return 0
    case $_op in list) RAND=11 ;; detail) RAND=23 ;; create) RAND=37 ;; update) RAND=53 ;; *) RAND=71 ;; esac
    RAND=$(($$ * 7919 + RAND * 104729 + _milli))
    # delete starts one interval late, so that the create loop has made something to delete
    _k=0 _taken=0
    [ "$_op" = delete ] && _k=1
    while :; do
        _due=$((START_MS + _k * 1000000 / _milli))
        [ "$_due" -lt "$END_MS" ] || break
        sleep_until "$_due" || break
        case $_op in
            list)
                fire list "$_k" GET "/api/posts?limit=20" 200 & ;;
            detail)
                pick_seed
                fire detail "$_k" GET "/api/posts/$PICKED" 200 & ;;
            create)
                fire create "$_k" POST /api/posts 201 \
                    "{\"title\":\"load post $_k ($RUN_ID)\",\"body\":\"Created by $LOAD_NAME run $RUN_ID, request $_k.\"}" & ;;
            update)
                pick_seed
                fire update "$_k" PATCH "/api/posts/$PICKED" 200 \
                    "{\"title\":\"load seed $PICKED updated ($RUN_ID, $_k)\"}" & ;;
            delete)
                _victim=
                [ -s "$WORK/created" ] && _victim=$(sed -n "$((_taken + 1))p" "$WORK/created")
                if [ -n "$_victim" ]; then
                    _taken=$((_taken + 1))
                    fire delete "$_k" DELETE "/api/posts/$_victim" 204 "" "$_victim" &
                else
                    say "$_k" >>"$WORK/skipped.delete"
                fi ;;
        esac
        _k=$((_k + 1))
    done
    wait
}

# token_refresher: logs in again before the token expires (only needed for long runs)
token_refresher() {
    _next=$((START_MS + (TOKEN_TTL - 120) * 1000))
    while [ "$_next" -lt "$END_MS" ]; do
        sleep_until "$_next" || return 0
        if login 2>/dev/null; then
            say "mix: token refreshed (login) at +$(((_next - START_MS) / 1000)) s"
        else
            warn "token refresh failed: $(api_failure); writes will fail once the old token expires"
        fi
        _next=$((_next + (TOKEN_TTL - 120) * 1000))
    done
}

load_mix() {
    : >"$WORK/results"
    : >"$WORK/created"
    : >"$WORK/deleted"
    : >"$WORK/failures"
    mkdir -p "$WORK/tmp"
    _plan=
    for _op in $OPS; do
        op_rate "$_op"
        _plan="$_plan $_op $OP_RATE/s"
    done
    say "mix: ${_plan# } for $DURATION_S s against $URL"
    now_ms
    START_MS=$((NOW_MS + 200))
    END_MS=$((START_MS + DURATION_S * 1000))
    for _op in $OPS; do
        op_loop "$_op" &
    done
    if [ "$TOKEN_TTL" -gt 180 ] && [ "$DURATION_S" -gt "$((TOKEN_TTL - 120))" ]; then
        token_refresher &
    fi
    INTERRUPTED=0
    trap 'INTERRUPTED=1; : >"$WORK/stop"' INT TERM
    until wait; do :; done
    trap 'exit 130' INT TERM
    now_ms
    ELAPSED_MS=$((NOW_MS - START_MS))
    [ "$INTERRUPTED" = 1 ] && warn "interrupted: reporting what was measured so far"
    # actual rates: requests over the sending window (the planned duration, or less when stopped)
    RATE_MS=$((DURATION_S * 1000))
    if [ "$INTERRUPTED" = 1 ] && [ "$ELAPSED_MS" -lt "$RATE_MS" ]; then RATE_MS=$ELAPSED_MS; fi
    [ "$RATE_MS" -gt 0 ] || RATE_MS=1
}

# ---------------------------------------------------------------------------------------------
# the report

load_report() {
    _elapsed=$(awk -v ms="$ELAPSED_MS" 'BEGIN { printf "%.1f\n", ms / 1000 }')
    _sending=$(awk -v ms="$RATE_MS" 'BEGIN { printf "%g\n", ms / 1000 }')
    _target=0
    for _op in $OPS; do
        op_rate "$_op"
        _target=$((_target + OP_MILLI))
    done
    _target=$(awk -v m="$_target" 'BEGIN { printf "%g\n", m / 1000 }')
    say ""
    say "== $LOAD_NAME against $URL: sent for $_sending s, last answer after $_elapsed s (user $USERNAME, JSON via $( [ "$USE_JQ" = 1 ] && printf jq || printf awk)) =="
    printf '%-9s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n' operation target/s actual/s requests ok limited failed 'p50 ms' 'p95 ms' 'p99 ms' 'max ms'
    for _op in $OPS; do
        op_rate "$_op"
        _rate=$OP_RATE
        awk -v op="$_op" '$1 == op { print $3, $4 }' "$WORK/results" | sort -n |
            awk -v op="$_op" -v rate="$_rate" -v ms="$RATE_MS" '
                function pct(p,   i) { i = int(p / 100 * n); if (i < p / 100 * n) i++; if (i < 1) i = 1; return t[i] * 1000 }
                { n++; t[n] = $1; if ($2 == "ok") ok++; if ($2 == "limited") lim++ }
                END {
                    if (n == 0) { printf "%-9s %8s %8.2f %8d %8d %8d %8d %8s %8s %8s %8s\n", op, rate, 0, 0, 0, 0, 0, "-", "-", "-", "-"; exit }
                    printf "%-9s %8s %8.2f %8d %8d %8d %8d %8.1f %8.1f %8.1f %8.1f\n", op, rate, n / (ms / 1000), n, ok, lim, n - ok - lim, pct(50), pct(95), pct(99), t[n] * 1000
                }'
    done
    sort -k3,3n "$WORK/results" | awk -v ms="$RATE_MS" -v target="$_target" '
        function pct(p,   i) { i = int(p / 100 * n); if (i < p / 100 * n) i++; if (i < 1) i = 1; return t[i] * 1000 }
        { n++; t[n] = $3; if ($4 == "ok") ok++; if ($4 == "limited") lim++ }
        END {
            if (n == 0) { printf "%-9s %8s %8.2f %8d %8d %8d %8d\n", "all", target, 0, 0, 0, 0, 0; exit }
            printf "%-9s %8s %8.2f %8d %8d %8d %8d %8.1f %8.1f %8.1f %8.1f\n", "all", target, n / (ms / 1000), n, ok, lim, n - ok - lim, pct(50), pct(95), pct(99), t[n] * 1000
        }'
    say ""
    say "responses by operation and status:"
    for _op in $OPS; do
        awk -v op="$_op" '$1 == op { c[$2 " " $4]++ } END { for (k in c) { split(k, a, " "); printf "  %-8s %-7s %7d  %s\n", op, a[1], c[k], a[2] == "ok" ? "ok" : a[2] == "limited" ? "rate limited (not a failure)" : "FAILED" } }' "$WORK/results" | sort
    done
    if [ -s "$WORK/skipped.delete" ]; then
        say "  delete: $(wc -l <"$WORK/skipped.delete" | tr -d ' ') slot(s) skipped: no post created by this run was left to delete"
    fi
    if grep -q ' curl' "$WORK/results"; then
        say "  (curlNN: no HTTP answer; curl exit NN, e.g. 7 connection refused, 28 timeout, 52 empty reply, 56 connection reset)"
    fi

    TOTAL=$(wc -l <"$WORK/results" | tr -d ' ')
    FAILED=$(awk '$4 == "fail"' "$WORK/results" | wc -l | tr -d ' ')
    LIMITED=$(awk '$4 == "limited"' "$WORK/results" | wc -l | tr -d ' ')
    FAILURE_RATE=$(awk -v f="$FAILED" -v t="$TOTAL" 'BEGIN { printf "%.2f\n", t ? f * 100 / t : 0 }')
    say ""
    say "failure rate: $FAILURE_RATE % ($FAILED of $TOTAL requests failed; allowed: $MAX_FAILURE_RATE %)"
    say "rate limited: $LIMITED of $TOTAL requests answered 429 (shown apart: not a failure)"
    if [ -s "$WORK/failures" ]; then
        say "first failures (of $(wc -l <"$WORK/failures" | tr -d ' ')):"
        sed -n '1,8p' "$WORK/failures" | sed 's/^/  /'
    fi
}

# load_stats: the load balancer's /stats (a 10 s window, so fetched right after the mix)
load_stats() {
    say ""
    _code=$(curl -sS -o "$WORK/stats.json" -w '%{http_code}' --max-time 10 -A "$USER_AGENT" "$URL/stats" 2>"$WORK/stats.err")
    if [ "$_code" != 200 ]; then
        say "load balancer /stats: HTTP ${_code:-none} $(tr '\n' ' ' <"$WORK/stats.err")$(tr '\n' ' ' <"$WORK/stats.json" 2>/dev/null | cut -c1-300)"
        return 0
    fi
    json_flatten <"$WORK/stats.json" >"$WORK/stats.flat"
    if ! grep -q . "$WORK/stats.flat"; then
        say "load balancer /stats (unparsed): $(cat "$WORK/stats.json")"
        return 0
    fi
    awk -F '\t' '
        { v[$1] = $2 }
        function g(k) { return (k in v) ? v[k] : "-" }
        END {
            printf "load balancer /stats (%s, last %s s):\n", g(".instance"), g(".window_s")
            printf "  system %s, services %s/%s active, database %s, cache %s, has_real_traffic %s\n",
                g(".system.status"), g(".active_services"), g(".total_services"), g(".database.status"), g(".cache.status"), g(".has_real_traffic")
            printf "  requests/s %s, avg %s ms, p95 %s ms, p99 %s ms, success rate %s, requests total %s\n",
                g(".requests_per_second"), g(".avg_response_time_ms"), g(".p95_ms"), g(".p99_ms"), g(".success_rate"), g(".requests_total")
            for (i = 0; (".backends[" i "].url") in v; i++) {
                b = ".backends[" i "]"
                printf "  backend %-24s healthy %s, ejected %s, requests %s, errors %s\n", g(b ".url"), g(b ".healthy"), g(b ".ejected"), g(b ".requests"), g(b ".errors")
            }
            for (i = 0; (".services[" i "].name") in v; i++) {
                s = ".services[" i "]"
                printf "  %-13s %-7s requests/s %-6s avg %-8s p95 %-8s error rate %s\n", g(s ".name"), g(s ".status"),
                    g(s ".stats.requests_per_second"), g(s ".stats.avg_response_time_ms") " ms", g(s ".stats.p95_ms") " ms", g(s ".stats.error_rate")
            }
        }' "$WORK/stats.flat"
}

# load_cleanup: deletes the posts this run created (seeds + create) that are not deleted yet
load_cleanup() {
    CLEANUP_LEFT=0
    [ "$CLEANUP" = 1 ] || return 0
    say ""
    cat "$WORK/seeds" "$WORK/created" | sort -u >"$WORK/mine"
    sort -u "$WORK/deleted" >"$WORK/gone"
    comm -23 "$WORK/mine" "$WORK/gone" >"$WORK/to-delete"
    _all=$(wc -l <"$WORK/to-delete" | tr -d ' ')
    _done=0 _absent=0 _bad=0
    while read -r _id; do
        api DELETE "/api/posts/$_id"
        if [ "$API_STATUS" = 401 ]; then # the token expired during a long run
            login || warn "cleanup: login failed: $(api_failure)"
            api DELETE "/api/posts/$_id"
        fi
        case $API_STATUS in
            204) _done=$((_done + 1)) ;;
            404) _absent=$((_absent + 1)) ;;
            *) _bad=$((_bad + 1)); warn "cleanup: DELETE /api/posts/$_id: $(api_failure)" ;;
        esac
    done <"$WORK/to-delete"
    say "cleanup: $_all post(s) of this run left; deleted $_done, already gone $_absent, failed $_bad"
    CLEANUP_LEFT=$_bad
}

# ---------------------------------------------------------------------------------------------

load_main() {
    load_parse_args "$@"
    clock_init
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$LOAD_NAME.XXXXXX") || die 2 "cannot create a work directory"
    trap 'rm -rf "$WORK"' EXIT
    trap 'exit 130' INT TERM
    _epoch=$(date +%s)
    RUN_ID="load_${_epoch}_$$"
    USERNAME=$RUN_ID
    PASSWORD="pw-${_epoch}-$$-load"
    REQUEST_PREFIX="ml-${_epoch}-$$"
    USER_AGENT="titanium-$LOAD_NAME/1"
    TOKEN_TTL=900
    RAND=$(($$ + _epoch % 100000))

    warn_write_rates
    load_setup
    load_mix
    load_report
    load_stats
    load_cleanup

    say ""
    if awk -v f="$FAILED" -v t="$TOTAL" -v m="$MAX_FAILURE_RATE" 'BEGIN { exit !(f * 100 > m * t) }'; then
        say "FAIL: failure rate $FAILURE_RATE % is above the allowed $MAX_FAILURE_RATE %"
        exit 1
    fi
    if [ "$TOTAL" = 0 ]; then
        say "FAIL: no request was sent"
        exit 1
    fi
    if [ "$INTERRUPTED" = 1 ]; then
        say "STOPPED: interrupted; the figures above cover the part that ran (failure rate $FAILURE_RATE %)"
        exit 130
    fi
    if [ "$CLEANUP_LEFT" -gt 0 ]; then
        say "FAIL: cleanup could not delete $CLEANUP_LEFT post(s) of this run"
        exit 4
    fi
    say "PASS: failure rate $FAILURE_RATE % (allowed $MAX_FAILURE_RATE %)"
    exit 0
}
