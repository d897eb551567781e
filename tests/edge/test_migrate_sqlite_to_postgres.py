"""scripts/migrate-sqlite-to-postgres.sh, run for real between real services.

1. user-service, auth-service and blog-service on SQLite (a real redis-server): users registered
   (emails with quotes, commas and emoji; passwords with quotes, a newline and emoji; one password
   changed, so its password_version is 1), posts written by several of them (titles and bodies with
   quotes, commas, CRLF and LF, tabs, backslashes, a line ``\\.``, ``\\N``, emoji, combining marks,
   right-to-left text), one post edited and the newest one deleted (SQLite never hands out its id
   again). Every user (as its owner sees it: ``/api/users/me``), the post list and every post are
   recorded through the API.
2. A throwaway PostgreSQL (scripts/lib/postgres.sh): user-service and blog-service started once with
   DATABASE_URL (they create the schema); user-service stopped, blog-service left running (it has
   served and cached the empty list).
3. The script copies users.db and blog.db (exit 0, counts printed). The running blog-service then
   answers the migrated list (posts_version was bumped, so its page cache started over).
4. user-service started again on PostgreSQL, with a new Redis (nothing cached from before): every
   user logs in through auth-service with its password, ``/api/users/me`` is the same JSON,
   the post list and every post are the same JSON, ids kept; a new registration gets an id above
   every migrated user and a new post an id above every post SQLite ever had (the deleted one too).
5. A second run refuses (exit 2, "not empty") and changes nothing.
6. ``--schema-from`` on an empty database (no schema): the script starts the services itself to
   create it, then copies the same rows.

Needs Debian's postgresql (scripts/install-deps.sh test), sqlite3 is not needed (Python's).
"""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from conftest import BIN_DIR, REPO, free_port, json_request, psql

SCRIPT = REPO / "scripts" / "migrate-sqlite-to-postgres.sh"

AWKWARD_POSTS = [
    ("Quotes 'single' \"double\", commas, and an emoji 😀",
     "First line\nsecond, with \"quotes\" and 'apostrophes'\r\nthird after CRLF\n\ttabbed\\backslash\\\n\\.\n\\N\nlast"),
    ("漢字のタイトル — ünïcödé, Ελληνικά", "Combining: e\u0301 a\u0300\u0323; RTL: שלום עולם; ZWJ: 👨\u200d👩\u200d👧; flag 🇫🇷"),
    ("a,b,c", "\"\"\"\n,,,\n''''"),
    ("CSV-ish \"line\"\n", "ends with newlines\n\n"),
]

USERS = [
    # username, email, password
    ("alice", "alice@example.com", "plain password"),
    ("o.brien", "o'brien,\"bob\"@exämple.com", "pa\"ss, wo'rd\n😀!"),
    ("zoe_emoji", "zoë😀@example.org", "ünïcödé 漢字 🚀🚀"),
    ("Mixed.Case-User", "Mixed.Case@Example.COM", "back\\slash\ttab pw"),
] + [(f"user{i:02d}", f"user{i:02d}@example.com", f"user{i:02d} password") for i in range(12)]


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def database(server_url: str, name: str) -> str:
    psql(server_url, f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def stop(service) -> None:
    service.signal(signal.SIGTERM)
    assert service.wait_exit(30) == 0, f"{service.label} did not stop cleanly:\n{service.tail()}"


def login(auth_port: int, username: str, password: str):
    return json_request(auth_port, "POST", "/api/auth/login", {"username": username, "password": password}, timeout=20)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def everything(users_port: int, auth_port: int, blog_port: int, passwords: dict[str, str]):
    """What the API shows: each user as its owner sees it (after logging in), the post list, each post."""
    users = {}
    for username, password in passwords.items():
        resp = login(auth_port, username, password)
        assert resp.status == 200, f"login of {username!r}: {resp}"
        me = json_request(users_port, "GET", "/api/users/me", headers=bearer(resp.json()["access_token"]))
        assert me.status == 200, f"/api/users/me of {username!r}: {me}"
        users[username] = me.json()
    listing = json_request(blog_port, "GET", "/api/posts?limit=100")
    assert listing.status == 200, f"GET /api/posts: {listing}"
    posts = {}
    for post in listing.json()["posts"]:
        one = json_request(blog_port, "GET", f"/api/posts/{post['id']}")
        assert one.status == 200, f"GET /api/posts/{post['id']}: {one}"
        posts[post["id"]] = one.json()
    return users, listing.json(), posts


def test_sqlite_data_moves_to_postgres_exactly(fn_procs, postgres):
    users_port, auth_port, blog_port = free_port(), free_port(), free_port()
    jwks = f"http://127.0.0.1:{auth_port}/.well-known/jwks.json"
    users_url = f"http://127.0.0.1:{users_port}"
    redis = f"redis://127.0.0.1:{fn_procs.start_redis()}"
    users_dir, blog_dir = fn_procs.tmp / "users-data", fn_procs.tmp / "blog-data"
    users_dir.mkdir()
    blog_dir.mkdir()
    common = {"SHUTDOWN_DELAY_SECONDS": "0", "JWKS_URL": jwks}
    user_env = {**common, "DATA_DIR": str(users_dir), "REDIS_URL": redis, "BCRYPT_COST": "4"}
    blog_env = {**common, "DATA_DIR": str(blog_dir), "REDIS_URL": redis, "USER_SERVICE_URL": users_url}

    # 1. SQLite.
    users = fn_procs.start("user-service", user_env, port=users_port, label="users-sqlite")
    auth = fn_procs.start("auth-service", {"USER_SERVICE_URL": users_url, "SHUTDOWN_DELAY_SECONDS": "0"},
                          port=auth_port, label="auth")
    blog = fn_procs.start("blog-service", blog_env, port=blog_port, label="blog-sqlite")
    passwords, ids = {}, {}
    for username, email, password in USERS:
        resp = json_request(users_port, "POST", "/api/users", {"username": username, "email": email, "password": password})
        assert resp.status == 201, f"register {username!r}: {resp}"
        passwords[username], ids[username] = password, resp.json()["id"]
    tokens = {u: login(auth_port, u, p).json()["access_token"] for u, p in passwords.items()}
    # A password change: password_version 1 for o.brien, who then needs a new token.
    new_password = "new, \"changed\" 🔑 pw"
    changed = json_request(users_port, "PATCH", "/api/users/me", {"current_password": passwords["o.brien"], "password": new_password},
                           headers=bearer(tokens["o.brien"]))
    assert changed.status == 200, f"password change: {changed}"
    passwords["o.brien"] = new_password
    tokens["o.brien"] = login(auth_port, "o.brien", new_password).json()["access_token"]

    post_ids = []
    authors = ["alice", "o.brien", "zoe_emoji", "Mixed.Case-User"]
    for i, (title, body) in enumerate(AWKWARD_POSTS * 3):
        resp = json_request(blog_port, "POST", "/api/posts", {"title": title, "body": body},
                            headers=bearer(tokens[authors[i % len(authors)]]))
        assert resp.status == 201, f"post {i}: {resp}"
        post_ids.append(resp.json()["id"])
    edited = json_request(blog_port, "PATCH", f"/api/posts/{post_ids[1]}", {"body": "edited,\n\"again\" ✍️"},
                          headers=bearer(tokens[authors[1]]))
    assert edited.status == 200, f"edit: {edited}"
    newest = post_ids.pop()
    deleted = json_request(blog_port, "DELETE", f"/api/posts/{newest}", headers=bearer(tokens[authors[len(post_ids) % 4]]))
    assert deleted.status == 204, f"delete: {deleted}"

    before_users, before_list, before_posts = everything(users_port, auth_port, blog_port, passwords)
    assert before_list["total"] == len(post_ids) == len(before_posts)
    stop(users)
    stop(blog)

    # 2. PostgreSQL: the services create the schema; blog-service stays up and caches the empty list.
    url = database(postgres, "titanium")
    pg_user_env = {**user_env, "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{fn_procs.start_redis()}"}
    pg_blog_env = {**blog_env, "DATABASE_URL": url, "REDIS_URL": pg_user_env["REDIS_URL"]}
    schema_users = fn_procs.start("user-service", pg_user_env, port=users_port, label="users-pg-schema")
    stop(schema_users)
    blog = fn_procs.start("blog-service", pg_blog_env, port=blog_port, label="blog-pg")
    empty = json_request(blog_port, "GET", "/api/posts?limit=100")
    assert empty.status == 200 and empty.json()["total"] == 0, f"fresh PostgreSQL list: {empty}"

    # 3. The copy.
    run = migrate(str(users_dir / "users.db"), str(blog_dir / "blog.db"), url)
    assert run.returncode == 0, f"migration failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    assert re.search(rf"users: {len(USERS)} rows \(SQLite {len(USERS)}\) OK", run.stdout), run.stdout
    assert re.search(rf"posts: {len(post_ids)} rows \(SQLite {len(post_ids)}\) OK", run.stdout), run.stdout
    cached = json_request(blog_port, "GET", "/api/posts?limit=100")
    assert cached.status == 200 and cached.json() == before_list, \
        f"the blog-service that was running still answers its old page: {cached.body[:300]!r}"

    # 4. Everything the API showed, now from PostgreSQL.
    users = fn_procs.start("user-service", pg_user_env, port=users_port, label="users-pg")
    after_users, after_list, after_posts = everything(users_port, auth_port, blog_port, passwords)
    assert after_users == before_users
    assert after_list == before_list
    assert after_posts == before_posts
    assert {u["username"]: u["id"] for u in after_users.values()} == ids
    version = json_request(users_port, "GET", f"/internal/users/{ids['o.brien']}/password-version")
    assert version.status == 200 and version.json()["password_version"] == 1, f"password_version: {version}"
    assert login(auth_port, "o.brien", USERS[1][2]).status == 401, "the password changed before migrating works again"

    fresh = json_request(users_port, "POST", "/api/users", {"username": "after.migration", "email": "after@example.com",
                                                             "password": "after password"})
    assert fresh.status == 201, f"registration after the migration: {fresh}"
    assert fresh.json()["id"] > max(ids.values()), f"new user id {fresh.json()['id']} not above {max(ids.values())}"
    taken = json_request(users_port, "POST", "/api/users", {"username": "ALICE", "email": "other@example.com",
                                                             "password": "another password"})
    assert taken.status == 409, f"case-insensitive uniqueness after the migration: {taken}"
    new_post = json_request(blog_port, "POST", "/api/posts", {"title": "after", "body": "the migration"},
                            headers=bearer(login(auth_port, "after.migration", "after password").json()["access_token"]))
    assert new_post.status == 201, f"post after the migration: {new_post}"
    assert new_post.json()["id"] > newest, f"new post id {new_post.json()['id']} not above {newest} (deleted in SQLite)"

    # 5. A second run refuses and touches nothing.
    counts = psql(url, "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM posts)")
    again = migrate(str(users_dir / "users.db"), str(blog_dir / "blog.db"), url)
    assert again.returncode == 2, f"second run: exit {again.returncode}\n{again.stdout}\n{again.stderr}"
    assert "not empty" in again.stderr, again.stderr
    assert psql(url, "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM posts)") == counts
    stop(users)
    stop(blog)
    stop(auth)

    # 6. No schema yet: --schema-from starts the services once to create it.
    bare = database(postgres, "titanium_bare")
    refused = migrate(str(users_dir / "users.db"), str(blog_dir / "blog.db"), bare)
    assert refused.returncode == 2 and "schema is missing" in refused.stderr, f"{refused.returncode}: {refused.stderr}"
    created = migrate("--schema-from", str(BIN_DIR), str(users_dir / "users.db"), str(blog_dir / "blog.db"), bare)
    assert created.returncode == 0, f"--schema-from: exit {created.returncode}\n{created.stdout}\n{created.stderr}"
    assert psql(bare, "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM posts)") == \
        f"{len(USERS)} {len(post_ids)}"
    assert psql(bare, "SELECT string_agg(name, ',' ORDER BY name) FROM titanium_migrations") == "posts-v1,users-v1"
