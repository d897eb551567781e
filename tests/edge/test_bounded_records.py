"""What a client sends is stored bounded: access lines and trace rows keep at most 1024 bytes of
the path and 256 bytes of the User-Agent (UTF-8), a cut value ending with "…".

The chain load balancer → api-gateway → blog-service, each with TRACE_FLUSH_INTERVAL=200ms.
One request with a 64 KB User-Agent and a ~3 KB path (``/api/posts/<3000 digits>``: the stored
path is the path alone, without the query, so the length has to be in the path; blog-service
answers 404) goes through the load balancer; then every access line and every trace row (in
``traces.db``'s ``trace_steps`` and ``traces.db-inbox``'s ``trace_inbox``) of each of the three
services for it is checked. The same with a request straight to blog-service.
"""

import secrets
import time

import pytest

from conftest import (assert_alive, balancer_env, closed_redis_url, dashboard_dir, gateway_env, http_request,
                      refused_url, service_data_dir, trace_rows)

MAX_PATH, MAX_UA = 1024, 256
ELLIPSIS = "…"
TRACE_ENV = {"TRACE_FLUSH_INTERVAL": "200ms"}


@pytest.fixture(scope="module")
def chain(procs):
    blog = procs.start("blog-service", {
        "JWKS_URL": refused_url() + "/.well-known/jwks.json", "REDIS_URL": closed_redis_url(), **TRACE_ENV,
    }, label="blog")
    gateway = procs.start("api-gateway", {
        **gateway_env(refused_url(), BLOG_SERVICE_URL=blog.url), **TRACE_ENV,
    }, label="gateway")
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp), **TRACE_ENV),
                           label="lb")
    return {"lb": balancer, "gateway": gateway, "blog": blog}


def long_request(tag):
    """A ~3 KB path (digits, with the tag in front) and a 64 KB User-Agent starting with the tag."""
    path = f"/api/posts/9{tag}" + "1234567890" * 300
    user_agent = f"edge-{tag}-" + "Mozilla/5.0 (X11; Linux x86_64) " * 2100
    assert len(path) > 3000 and len(user_agent) >= 64 * 1024
    return path, user_agent


def check_bounded(value, sent, limit, what):
    """Problems with one stored value: more than `limit` bytes, or cut without "…", or not a prefix."""
    if not isinstance(value, str):
        return [f"{what} is {value!r}, not text"]
    size = len(value.encode("utf-8"))
    problems = []
    if size > limit:
        problems.append(f"{what} holds {size} bytes (limit {limit})")
    if value != sent:
        if not value.endswith(ELLIPSIS):
            problems.append(f"{what} was cut without a trailing …: ...{value[-40:]!r}")
        elif not sent.startswith(value[: -len(ELLIPSIS)]):
            problems.append(f"{what} is not a prefix of what was sent: {value[:80]!r}")
        elif size < limit - 8:
            problems.append(f"{what} was cut to {size} bytes, far below the limit {limit}")
    return problems


def access_lines(service, tag):
    return [o for o in service.log_objects()
            if o.get("message") == "request" and tag in str(o.get("user_agent", "")) + str(o.get("path", ""))]


def wait_rows(service, tag, timeout=6.0):
    db = service_data_dir(service) / "traces.db"
    deadline = time.monotonic() + timeout
    while True:
        rows = trace_rows(db, "user_agent LIKE ?", (f"edge-{tag}-%",))
        if rows or time.monotonic() >= deadline:
            return rows
        time.sleep(0.1)


def wait_lines(service, tag, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = access_lines(service, tag)
        if lines or time.monotonic() >= deadline:
            return lines
        time.sleep(0.05)


@pytest.fixture(scope="module")
def through_lb(chain):
    tag = secrets.token_hex(6)
    path, user_agent = long_request(tag)
    resp = http_request(chain["lb"].port, "GET", path, headers={"User-Agent": user_agent}, timeout=10)
    return {"tag": tag, "path": path, "ua": user_agent, "resp": resp}


@pytest.fixture(scope="module")
def direct(chain):
    tag = secrets.token_hex(6)
    path, user_agent = long_request(tag)
    resp = http_request(chain["blog"].port, "GET", path, headers={"User-Agent": user_agent}, timeout=10)
    short = http_request(chain["blog"].port, "GET", "/api/posts", headers={"User-Agent": user_agent}, timeout=10)
    return {"tag": tag, "path": path, "ua": user_agent, "resp": resp, "short": short}


def test_long_request_through_the_chain_is_answered(chain, through_lb):
    resp = through_lb["resp"]
    assert resp.status in (400, 404), f"GET /api/posts/<3000 digits> with a 64 KB User-Agent via the LB: {resp}"
    assert not resp.error_shape_problem(), resp.error_shape_problem()
    assert_alive(*chain.values())


@pytest.mark.parametrize("name", ["lb", "gateway", "blog"])
def test_access_lines_bounded_through_chain(chain, through_lb, name):
    lines = wait_lines(chain[name], through_lb["tag"])
    assert lines, f"{name} wrote no access line for the long request:\n{chain[name].tail(10)[:3000]}"
    problems = []
    for line in lines:
        problems += check_bounded(line.get("path"), through_lb["path"], MAX_PATH, f"{name} access path")
        problems += check_bounded(line.get("user_agent"), through_lb["ua"], MAX_UA, f"{name} access user_agent")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["lb", "gateway", "blog"])
def test_trace_rows_bounded_through_chain(chain, through_lb, name):
    rows = wait_rows(chain[name], through_lb["tag"])
    assert rows, f"no trace row of {name} for the long request in {service_data_dir(chain[name]) / 'traces.db'}"
    problems = []
    for row in rows:
        problems += check_bounded(row["path"], through_lb["path"], MAX_PATH, f"{name} trace path")
        problems += check_bounded(row["user_agent"], through_lb["ua"], MAX_UA, f"{name} trace user_agent")
    assert not problems, "\n".join(problems)


def test_direct_to_blog_bounded(chain, direct):
    assert direct["resp"].status in (400, 404), f"long request straight to blog-service: {direct['resp']}"
    assert direct["short"].status == 200, f"GET /api/posts with a 64 KB User-Agent: {direct['short']}"
    blog = chain["blog"]
    lines = wait_lines(blog, direct["tag"])
    rows = wait_rows(blog, direct["tag"])
    deadline = time.monotonic() + 4  # both requests: two lines, two rows
    while (len(lines) < 2 or len(rows) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
        lines, rows = access_lines(blog, direct["tag"]), wait_rows(blog, direct["tag"], timeout=0)
    assert len(lines) == 2, f"blog-service access lines for the two direct requests: {len(lines)}"
    assert len(rows) == 2, f"blog-service trace rows for the two direct requests: {len(rows)}"
    problems = []
    for record in lines + rows:
        sent_path = direct["path"] if record["path"] != "/api/posts" else "/api/posts"
        problems += check_bounded(record["path"], sent_path, MAX_PATH, "blog path")
        problems += check_bounded(record["user_agent"], direct["ua"], MAX_UA, "blog user_agent")
    assert not problems, "\n".join(problems)
    assert_alive(blog)
