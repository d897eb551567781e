#!/usr/bin/env bash
# Sourced, not run: a throwaway PostgreSQL (Debian's postgresql, /usr/lib/postgresql/*/bin) for
# the tests, in a directory of its own on a port of its own; never the system cluster.
# Used by scripts/test.sh:
#
#   . scripts/lib/postgres.sh
#   dir="$(mktemp -d)"; trap 'postgres_stop "$dir"; rm -rf "$dir"' EXIT
#   postgres_start "$dir" [PORT]      # sets POSTGRES_PORT and POSTGRES_URL
#
# The cluster trusts every local connection; its superuser is postgres:
# POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres. PostgreSQL refuses to run as root,
# so as root initdb and the server run as the postgres user (setpriv), in a directory given to
# that user. Tests/TestSupport/PostgresServer.swift starts its servers the same way.
# Changes no shell options.

# The newest installed version's bin directory, or nothing.
postgres_bin() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/postgres" ] && printf '%s\n' "$dir"
}

# Runs "$@" as the postgres user when root, else as is.
postgres_as_server_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# A free TCP port on 127.0.0.1.
postgres_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Initialises a cluster in $1/data and starts it on port $2 (a free one when not given),
# fsync off; returns once it takes queries. Sets POSTGRES_PORT and POSTGRES_URL.
postgres_start() {
  local dir="$1" port="${2:-}" bin
  bin="$(postgres_bin)" || { echo "PostgreSQL is not installed (scripts/install-deps.sh test installs it)" >&2; return 1; }
  [ -n "$port" ] || port="$(postgres_free_port)" || return 1
  mkdir -p "$dir" || return 1
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir" || return 1; fi
  if ! (cd "$dir" && postgres_as_server_user "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale \
      --no-sync --no-instructions >"$dir/initdb.log" 2>&1); then
    echo "initdb failed:" >&2; cat "$dir/initdb.log" >&2; return 1
  fi
  if ! (cd "$dir" && postgres_as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null); then
    echo "PostgreSQL did not start on port $port; its log:" >&2; tail -n 20 "$dir/postgres.log" >&2; return 1
  fi
  POSTGRES_PORT="$port"
  POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export POSTGRES_PORT POSTGRES_URL
}

# Stops the cluster in $1 (fast shutdown; SIGKILL if it is still up after 30 s). Quiet when
# nothing runs there.
postgres_stop() {
  local dir="$1" bin pid
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin="$(postgres_bin)" || return 0
  if ! (cd "$dir" && postgres_as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1); then
    pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)"
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
}
