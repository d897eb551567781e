#!/usr/bin/env bash
# Copies users and posts from Titanium's SQLite files into PostgreSQL, ids kept:
#
#   scripts/migrate-sqlite-to-postgres.sh [--schema-from BIN_DIR] USERS_DB BLOG_DB DATABASE_URL
#
#   USERS_DB      user-service's users.db ($DATA_DIR/users.db), or - to leave users out
#   BLOG_DB       blog-service's blog.db ($DATA_DIR/blog.db), or - to leave posts out
#   DATABASE_URL  postgres://user:password@host:port/db[?sslmode=require], the one the services
#                 will be given (psql reads the same URL)
#
# Before: stop user-service and blog-service on SQLite (a copy of a database being written is
# refused by the check below, not merged). The PostgreSQL schema must exist: start user-service
# and blog-service once with DATABASE_URL (each applies its migrations at start, then serves
# empty tables), stop them, then run this. Or pass --schema-from BIN_DIR, the folder of the
# built user-service and blog-service: the script starts each once with DATABASE_URL on
# 127.0.0.1 (any free port) until its tables exist, then stops it.
#
# What it does, in one transaction for everything it copies (psql -1): locks the target tables,
# refuses unless they are empty, copies every row with its id (COPY text format: quotes, commas,
# newlines, tabs, backslashes and any Unicode arrive byte for byte; a NUL, which PostgreSQL
# text cannot hold, is refused), checks the row count and an
# MD5 over every column of every row against the SQLite side, moves each id sequence past the
# highest id SQLite ever handed out (setval(pg_get_serial_sequence('users','id'), …)), and bumps
# posts_version so every blog-service page cache starts over. Then it prints the row counts
# PostgreSQL holds.
#
# PSQL names another psql command, e.g. PSQL='docker-compose exec -T postgres psql' when the
# server is reachable only from its container (DATABASE_URL is then read in there); the script
# hands it the URL, arguments and its standard input, no files.
#
# The rows pass through temporary files in $TMPDIR (about twice their size), mode 0700 (they
# hold password hashes), removed at the end.
#
# Exit: 0 copied; 1 failed (rolled back: nothing copied); 2 refused (usage, schema missing, a
# target table not empty - e.g. a second run - or a SQLite file missing). Needs python3 (standard
# library only) and psql (Debian: postgresql-client).
set -euo pipefail
exec python3 "$(dirname "$0")/lib/migrate_sqlite_to_postgres.py" "$@"
