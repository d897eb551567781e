#!/usr/bin/env python3
"""Copies users and posts from Titanium's SQLite files into PostgreSQL, ids kept.

Run through scripts/migrate-sqlite-to-postgres.sh (its header is the manual). Python's standard
library reads SQLite; psql writes PostgreSQL. Nothing else is needed. PSQL may name another psql
command (``docker-compose exec -T postgres psql``): it gets only the URL, arguments and stdin.

How the copy stays exact:
* Each SQLite file is read in one read transaction (one snapshot): rows, the row count and
  ``sqlite_sequence`` agree with each other.
* Rows travel as COPY text format, inline after their ``COPY … FROM STDIN`` in the one stream
  psql reads on its standard input: backslash, newline, carriage return and tab are escaped, so
  a row is always one line and no value can end the data early (a line ``\\.`` ends it; psql
  takes one for the end even inside a quoted CSV field, which is why CSV is not used). The client
  encoding is UTF8; the bytes arrive unchanged.
* One psql session, one transaction (``psql -1``) for everything copied: the target tables are
  locked (EXCLUSIVE: running services can read but not write), checked empty, filled, checked
  again against the source (row count and an MD5 over every column of every row, computed by
  PostgreSQL and by this script from the SQLite rows), sequences set and ``posts_version``
  bumped. Any failure rolls all of it back.

Exit codes: 0 copied; 1 failed (nothing copied); 2 refused (usage, schema missing, a target
table not empty; nothing copied).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REFUSED = 2
FAILED = 1
COPY_DATA = "-- rows of {}"
NOT_EMPTY_MARKER = "titanium-migrate: target table not empty"
MISMATCH_MARKER = "titanium-migrate: copy differs from the source"


@dataclass
class Table:
    name: str
    columns: list[str]
    text_columns: set[str]
    db_label: str  # which SQLite file (users.db / blog.db)


USERS = Table("users", ["id", "username", "email", "password_hash", "created_at", "password_version"],
              {"username", "email", "password_hash"}, "users.db")
POSTS = Table("posts", ["id", "author_id", "author", "title", "body", "created_at", "updated_at"],
              {"author", "title", "body"}, "blog.db")


@dataclass
class Extract:
    table: Table
    source: Path
    rows: int = 0
    max_id: int = 0
    sequence: int = 0  # sqlite_sequence: the highest id ever handed out (deleted rows included)
    digest: str = ""
    data: Path | None = None
    notes: list[str] = field(default_factory=list)


class Refused(Exception):
    pass


class Failed(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# SQLite side
# ---------------------------------------------------------------------------------------------

def copy_escape(value: str) -> str:
    """A value in COPY text format (the default delimiter tab; \\N would be NULL)."""
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


def row_fingerprint(values: list) -> str:
    """One row as PostgreSQL's ``fingerprint_sql`` spells it: integers in decimal, text as the
    MD5 of its UTF-8 bytes, joined by ':'."""
    parts = []
    for value in values:
        if isinstance(value, str):
            parts.append(hashlib.md5(value.encode("utf-8")).hexdigest())
        else:
            parts.append(str(value))
    return ":".join(parts)


def fingerprint_sql(table: Table) -> str:
    parts = [f"md5({c})" if c in table.text_columns else f"{c}::text" for c in table.columns]
    row = " || ':' || ".join(parts)
    return f"SELECT count(*), coalesce(md5(string_agg({row}, E'\\n' ORDER BY id)), '') FROM {table.name}"


def extract(table: Table, source: Path, work: Path) -> Extract:
    if not source.is_file():
        raise Refused(f"{source}: no such file ({table.db_label} of the SQLite deployment expected)")
    result = Extract(table, source)
    try:
        # mode=rw: never create an empty database where a path was mistyped.
        db = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30, isolation_level=None)
    except sqlite3.Error as error:
        raise Failed(f"{source}: cannot open: {error}") from error
    try:
        db.execute("BEGIN")  # one snapshot for the rows, the count and sqlite_sequence
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if table.name not in names:
            raise Refused(f"{source}: no table {table.name} (is this the {table.db_label} of user-/blog-service?)")
        present = [r[1] for r in db.execute(f"PRAGMA table_info({table.name})")]
        select = []
        for column in table.columns:
            if column in present:
                select.append(column)
            elif column == "password_version":  # a users.db from before that column: every row 0
                select.append("0 AS password_version")
                result.notes.append("users.db has no password_version column (older release): copied as 0")
            else:
                raise Refused(f"{source}: table {table.name} has no column {column}")
        if "sqlite_sequence" in names:
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)).fetchone()
            result.sequence = int(seq[0]) if seq and seq[0] is not None else 0
        md5 = hashlib.md5()
        result.data = work / f"{table.name}.copy"
        with open(result.data, "w", encoding="utf-8", newline="") as out:
            cursor = db.execute(f"SELECT {', '.join(select)} FROM {table.name} ORDER BY id")
            first = True
            for values in cursor:
                values = list(values)
                for column, value in zip(table.columns, values):
                    if column in table.text_columns:
                        if not isinstance(value, str):
                            raise Failed(f"{source}: {table.name} id {values[0]}: {column} is {type(value).__name__}, not text")
                        if "\x00" in value:
                            raise Failed(f"{source}: {table.name} id {values[0]}: {column} holds a NUL character, "
                                         "which PostgreSQL text cannot store; edit that row first")
                    elif not isinstance(value, int) or isinstance(value, bool):
                        raise Failed(f"{source}: {table.name} id {values[0]}: {column} is {value!r}, not an integer")
                out.write("\t".join(copy_escape(v) if isinstance(v, str) else str(v) for v in values))
                out.write("\n")
                md5.update(((b"" if first else b"\n") + row_fingerprint(values).encode("ascii")))
                first = False
                result.rows += 1
                result.max_id = max(result.max_id, values[0])
        result.digest = md5.hexdigest() if result.rows else ""
        db.execute("COMMIT")
    except sqlite3.Error as error:
        raise Failed(f"{source}: reading {table.name}: {error}") from error
    finally:
        db.close()
    return result


# ---------------------------------------------------------------------------------------------
# PostgreSQL side
# ---------------------------------------------------------------------------------------------

def psql_command() -> list[str]:
    """psql, or what PSQL says (e.g. ``docker-compose exec -T postgres psql``: the URL is then
    read inside that container)."""
    return shlex.split(os.environ.get("PSQL") or "psql")


def psql_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PGCLIENTENCODING"] = "UTF8"
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def psql_query(url: str, sql: str) -> list[list[str]]:
    proc = subprocess.run([*psql_command(), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                          capture_output=True, text=True, env=psql_env(), timeout=120)
    if proc.returncode != 0:
        raise Failed(f"psql: {proc.stderr.strip() or proc.stdout.strip()}")
    return [line.split("\t") for line in proc.stdout.splitlines() if line != ""]


def missing_tables(url: str, tables: list[str]) -> list[str]:
    checks = ", ".join(f"to_regclass('{t}') IS NULL" for t in tables)
    row = psql_query(url, f"SELECT {checks}")[0]
    return [t for t, missing in zip(tables, row) if missing == "t"]


def non_empty_tables(url: str, tables: list[str]) -> list[str]:
    checks = ", ".join(f"EXISTS (SELECT 1 FROM {t})" for t in tables)
    row = psql_query(url, f"SELECT {checks}")[0]
    return [t for t, full in zip(tables, row) if full == "t"]


def schema_tables(extracts: list[Extract]) -> list[str]:
    tables = [e.table.name for e in extracts]
    if POSTS.name in tables:
        tables.append("posts_version")
    return tables


def create_schema(url: str, bin_dir: Path, extracts: list[Extract], work: Path) -> None:
    """Starts each needed service once with DATABASE_URL (it applies its migrations at start),
    waits for its tables, stops it."""
    services = []
    if any(e.table is USERS for e in extracts):
        services.append(("user-service", ["users"]))
    if any(e.table is POSTS for e in extracts):
        services.append(("blog-service", ["posts", "posts_version"]))
    for name, tables in services:
        exe = bin_dir / name
        if not os.access(exe, os.X_OK):
            raise Refused(f"--schema-from: {exe} is not an executable")
        data_dir = work / f"{name}-data"
        data_dir.mkdir()
        env = dict(os.environ)
        env.update({"DATABASE_URL": url, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "DATA_DIR": str(data_dir),
                    "SHUTDOWN_DELAY_SECONDS": "0", "LOG_LEVEL": "warning"})
        log = open(work / f"{name}.log", "w+b")
        print(f"creating the schema: starting {exe} once with DATABASE_URL", flush=True)
        proc = subprocess.Popen([str(exe)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            startup = int(os.environ.get("DATABASE_STARTUP_TIMEOUT_S", "60")) + 30
            deadline = time.monotonic() + startup
            while missing_tables(url, tables):
                if proc.poll() is not None:
                    log.seek(0)
                    raise Failed(f"{name} exited with {proc.returncode} before creating its tables:\n"
                                 + log.read().decode("utf-8", "replace")[-3000:])
                if time.monotonic() > deadline:
                    raise Failed(f"{name} did not create its tables within {startup} s")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            log.close()
        print(f"  {name}: tables {', '.join(tables)} created; stopped", flush=True)


def copy_script(extracts: list[Extract]) -> str:
    names = [e.table.name for e in extracts]
    lines = [
        "SET client_encoding = 'UTF8';",
        "SET client_min_messages = warning;",
        # Running services keep reading; their writes wait until the commit (or the lock timeout).
        f"LOCK TABLE {', '.join(names)} IN EXCLUSIVE MODE;",
    ]
    for e in extracts:
        t = e.table.name
        lines.append(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM {t}) THEN "
                     f"RAISE EXCEPTION '{NOT_EMPTY_MARKER}: {t}'; END IF; END $$;")
    for e in extracts:
        # The rows follow this line in the same stream, ended by \. (see copy()).
        lines.append(f"COPY {e.table.name} ({', '.join(e.table.columns)}) FROM STDIN;")
        lines.append(COPY_DATA.format(e.table.name))
    for e in extracts:
        t = e.table.name
        lines.append(
            "DO $$ DECLARE n bigint; d text; BEGIN "
            f"{fingerprint_sql(e.table)} INTO n, d; "
            f"IF n <> {e.rows} OR d <> '{e.digest}' THEN "
            f"RAISE EXCEPTION '{MISMATCH_MARKER}: {t}: % rows (expected {e.rows}), digest % (expected {e.digest or 'none'})', n, d; "
            "END IF; END $$;")
        # Ids continue above the highest ever handed out in SQLite (AUTOINCREMENT never reuses one).
        top = max(e.max_id, e.sequence)
        if top > 0:
            lines.append(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), greatest({top}, (SELECT max(id) FROM {t})));")
    if any(e.table is POSTS for e in extracts):
        # Every blog-service replica's page cache keys on this version: drop whatever it cached.
        lines.append("INSERT INTO posts_version (id, version) VALUES (1, 1) "
                     "ON CONFLICT (id) DO UPDATE SET version = posts_version.version + 1;")
    return "\n".join(lines) + "\n"


def copy(url: str, extracts: list[Extract], work: Path) -> None:
    """One stream on psql's standard input (``-f -``, so that ``-1`` makes it one transaction):
    the statements with each table's rows right after its ``COPY … FROM STDIN``, ended by ``\\.``
    (unambiguous in text format: a backslash in a value is doubled). Nothing but the URL and this
    stream reaches psql, so it may run in another container (PSQL)."""
    stream = work / "copy.sql"
    with open(stream, "wb") as out:
        for line in copy_script(extracts).splitlines():
            table = next((e for e in extracts if line == COPY_DATA.format(e.table.name)), None)
            if table is None:
                out.write(line.encode("utf-8") + b"\n")
                continue
            with open(table.data, "rb") as part:
                shutil.copyfileobj(part, out)
            out.write(b"\\.\n")
    with open(stream, "rb") as stdin:
        proc = subprocess.run([*psql_command(), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
                              stdin=stdin, capture_output=True, text=True, env=psql_env())
    if proc.returncode != 0:
        message = proc.stderr.strip()
        if NOT_EMPTY_MARKER in message:
            raise Refused(f"nothing copied: a target table was written to while the copy ran ({message})")
        raise Failed(f"nothing copied (the transaction rolled back): {message}")


# ---------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/migrate-sqlite-to-postgres.sh",
        description="Copies users and posts from Titanium's SQLite files into PostgreSQL, ids kept "
                    "(see the script's header).")
    parser.add_argument("--schema-from", metavar="BIN_DIR", type=Path,
                        help="create a missing schema by starting BIN_DIR/user-service and BIN_DIR/blog-service "
                             "once with DATABASE_URL (they apply their migrations at start)")
    parser.add_argument("users_db", metavar="USERS_DB", help="user-service's users.db, or - to skip users")
    parser.add_argument("blog_db", metavar="BLOG_DB", help="blog-service's blog.db, or - to skip posts")
    parser.add_argument("database_url", metavar="DATABASE_URL", help="postgres://user:password@host:port/db[?sslmode=…]")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return REFUSED if exit.code else 0
    if args.users_db == "-" and args.blog_db == "-":
        print("nothing to do: both USERS_DB and BLOG_DB are -", file=sys.stderr)
        return REFUSED
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        print(f"DATABASE_URL must be postgres://… or postgresql://…, not {args.database_url.split(':', 1)[0]}:…",
              file=sys.stderr)
        return REFUSED
    if shutil.which(psql_command()[0]) is None:
        print(f"{psql_command()[0]} is not installed (psql: Debian's postgresql-client)", file=sys.stderr)
        return FAILED
    url = args.database_url
    work = Path(tempfile.mkdtemp(prefix="titanium-migrate-"))  # 0700: password hashes pass through here
    try:
        wanted = [(USERS, args.users_db), (POSTS, args.blog_db)]
        wanted = [(t, Path(p)) for t, p in wanted if p != "-"]
        # Refusals first, before reading anything large.
        for table, path in wanted:
            if not path.is_file():
                raise Refused(f"{path}: no such file ({table.db_label} of the SQLite deployment expected)")
        names = [t.name for t, _ in wanted] + (["posts_version"] if any(t is POSTS for t, _ in wanted) else [])
        psql_query(url, "SELECT 1")
        missing = missing_tables(url, names)
        if missing and args.schema_from is None:
            raise Refused(
                f"the schema is missing in PostgreSQL (no table {', '.join(missing)}): start user-service and "
                "blog-service once with this DATABASE_URL (they create their tables at start), stop them, and run "
                "this again; or pass --schema-from DIR (the folder of the built user-service and blog-service)")
        if not missing:
            full = non_empty_tables(url, [t.name for t, _ in wanted])
            if full:
                raise Refused(f"refusing: table {', '.join(full)} in PostgreSQL is not empty (already migrated? "
                              "this script only fills empty tables)")
        extracts = [extract(t, p, work) for t, p in wanted]
        for e in extracts:
            for note in e.notes:
                print(f"note: {note}")
            print(f"read {e.source}: {e.table.name}: {e.rows} rows, highest id {e.max_id}"
                  + (f", sqlite_sequence {e.sequence}" if e.sequence != e.max_id else ""), flush=True)
        if missing:
            create_schema(url, args.schema_from, extracts, work)
            full = non_empty_tables(url, [e.table.name for e in extracts])
            if full:
                raise Refused(f"refusing: table {', '.join(full)} in PostgreSQL is not empty")
        copy(url, extracts, work)
        # Read back after the commit.
        print("copied in one transaction; now in PostgreSQL:")
        for e in extracts:
            t = e.table.name
            rows, max_id, next_id = psql_query(
                url, f"SELECT count(*), coalesce(max(id), 0), "
                     f"(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "
                     f"{psql_sequence(url, t)}) FROM {t}")[0]
            status = "OK" if int(rows) == e.rows else "MISMATCH"
            print(f"  {t}: {rows} rows (SQLite {e.rows}) {status}, highest id {max_id}, next id {next_id}")
            if status != "OK":
                raise Failed(f"{t}: {rows} rows in PostgreSQL after the commit, {e.rows} in SQLite: was something "
                             "writing to it?")
        if any(e.table is POSTS for e in extracts):
            version = psql_query(url, "SELECT version FROM posts_version WHERE id = 1")[0][0]
            print(f"  posts_version: {version}")
        return 0
    except Refused as error:
        print(error, file=sys.stderr)
        return REFUSED
    except Failed as error:
        print(error, file=sys.stderr)
        return FAILED
    finally:
        shutil.rmtree(work, ignore_errors=True)


def psql_sequence(url: str, table: str) -> str:
    return psql_query(url, f"SELECT pg_get_serial_sequence('{table}', 'id')")[0][0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
