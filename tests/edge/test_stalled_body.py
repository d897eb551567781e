"""The one-request crash: a body that never arrives, on every route of every service.

Starts the whole chain once - redis-server, user-service, auth-service, blog-service, api-gateway
(RATE_LIMIT_ENABLED=true with generous limits, so rate-limited routes go through the limiter and
the router's proxy instead of the forwarder) and the load balancer - every process with
HTTP_BODY_IDLE_TIMEOUT_SECONDS=2. A user, a token and post 1 are created first, so the routes do
their real work.

Then every business route (POST /api/users, POST /api/auth/login, GET /api/auth/verify,
GET /api/users/1, PATCH /api/users/me, POST /api/posts, GET /api/posts, GET /api/posts/1,
PATCH /api/posts/1, DELETE /api/posts/1), with and without a bearer token, and /health/live,
/stats and /metrics of each process, is sent with ``Content-Length: 50`` and only ``{`` of the
body, the socket kept open - in three waves: straight to the owning service, straight to the
gateway, through the load balancer (a wave's requests run concurrently). What it proves:

* each request is answered (408 or another 4xx; a route that does not read its body may answer
  2xx) or closed, and the connection is closed, within body timeout + 2 s; never a 5xx;
* a request answered before its body stalled gets no second, unasked-for 408 afterwards: the
  connection is just closed (one aggregated test lists every offender);
* no process dies: after each wave every process on the path is alive (``poll() is None``) and
  answers /health/live 200 (a process that died is restarted on its port before the next wave,
  so that each wave is judged on its own);
* ``DELETE /api/posts/999`` with ``Content-Length: 100``, no body and no token, sent on two
  sockets to the load balancer, and ``POST /api/posts`` with ``Expect: 100-continue`` and no
  body (to the gateway and through the load balancer) leave every process alive.
"""

import concurrent.futures
import time

import pytest

from conftest import (RawConnection, Exchange, ParseError, exchange, assert_alive, dashboard_dir, free_port, http_request,
                      try_request)

BODY = 2.0
BOUND = BODY + 2.0
COMMON = {
    "HTTP_BODY_IDLE_TIMEOUT_SECONDS": str(int(BODY)),
    "HTTP_IDLE_TIMEOUT_SECONDS": "30",
}

ROUTES = [  # (method, path, owning service)
    ("POST", "/api/users", "user"),
    ("POST", "/api/auth/login", "auth"),
    ("GET", "/api/auth/verify", "auth"),
    ("GET", "/api/users/1", "user"),
    ("PATCH", "/api/users/me", "user"),
    ("POST", "/api/posts", "blog"),
    ("GET", "/api/posts", "blog"),
    ("GET", "/api/posts/1", "blog"),
    ("PATCH", "/api/posts/1", "blog"),
    ("DELETE", "/api/posts/1", "blog"),
]
OPS = ["/health/live", "/stats", "/metrics"]
NAMES = ["lb", "gateway", "auth", "user", "blog"]
WAVES = ["service", "gateway", "lb"]


@pytest.fixture(scope="module")
def chain(procs):
    redis_port = procs.start_redis()
    ports = {name: free_port() for name in NAMES}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    jwks = f"{url['auth']}/.well-known/jwks.json"
    redis = f"redis://127.0.0.1:{redis_port}"
    s = {}
    s["user"] = procs.start("user-service", {**COMMON, "BCRYPT_COST": "4", "JWKS_URL": jwks, "REDIS_URL": redis},
                            port=ports["user"], label="user")
    s["auth"] = procs.start("auth-service", {**COMMON, "USER_SERVICE_URL": url["user"]}, port=ports["auth"], label="auth")
    s["blog"] = procs.start("blog-service", {**COMMON, "JWKS_URL": jwks, "USER_SERVICE_URL": url["user"]},
                            port=ports["blog"], label="blog")
    s["gateway"] = procs.start("api-gateway", {
        **COMMON, "AUTH_SERVICE_URL": url["auth"], "USER_SERVICE_URL": url["user"], "BLOG_SERVICE_URL": url["blog"],
        "REDIS_URL": redis, "RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_LOGIN": "1000/60",
        "RATE_LIMIT_REGISTER": "1000/60", "RATE_LIMIT_POST_WRITES": "1000/60",
    }, port=ports["gateway"], label="gateway")
    s["lb"] = procs.start("load-balancer", {
        **COMMON, "GATEWAY_URLS": url["gateway"], "DASHBOARD_DIR": dashboard_dir(procs.tmp),
        "STATS_TARGETS": ",".join(f"{n}={url[n]}" for n in ["gateway", "auth", "user", "blog"]),
    }, port=ports["lb"], label="lb")

    # A user, a token and post 1, made directly at the services (no rate limit spent).
    made = http_request(s["user"].port, "POST", "/api/users", headers={"Content-Type": "application/json"},
                        body=b'{"username":"stall","email":"stall@example.com","password":"stall password"}')
    assert made.status == 201, made
    login = http_request(s["auth"].port, "POST", "/api/auth/login", headers={"Content-Type": "application/json"},
                         body=b'{"username":"stall","password":"stall password"}')
    assert login.status == 200, login
    token = login.json()["access_token"]
    post = http_request(s["blog"].port, "POST", "/api/posts",
                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                        body=b'{"title":"stalled","body":"post one"}')
    assert post.status == 201, post
    # The LB considers its gateway healthy from the start; make sure the path works end to end.
    assert http_request(s["lb"].port, "GET", "/api/posts/1").status == 200
    return {"s": s, "token": token}


def stalled(port: int, method: str, path: str, token: str | None) -> Exchange:
    """The request with Content-Length: 50 and only "{" of its body; the socket stays open."""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    data = head.encode() + b"\r\n{"
    return exchange(port, data, timeout=BOUND + 1, max_responses=3)


def _cases():
    for wave in WAVES:
        for method, path, owner in ROUTES:
            entry = owner if wave == "service" else wave
            for variant in ("anon", "token"):
                yield wave, entry, method, path, variant
        for name in (["auth", "user", "blog"] if wave == "service" else [wave]):
            for path in OPS:
                yield wave, name, "GET", path, "anon"


CASES = list(_cases())
PATH_OF = {  # the processes a request to `entry` passes through
    "lb": ["lb", "gateway"], "gateway": ["gateway"], "auth": ["auth"], "user": ["user"], "blog": ["blog"],
}


@pytest.fixture(scope="module")
def waves(chain):
    """Runs the three waves; returns results per case, and per wave who died and was restarted."""
    s, token = chain["s"], chain["token"]
    results, deaths = {}, {}
    for wave in WAVES:
        # A process that died in an earlier wave is started again (same port), so that this wave
        # is judged on its own; the death stays recorded for that earlier wave's tests.
        for name in NAMES:
            if not s[name].alive():
                s[name].restart()
        cases = [c for c in CASES if c[0] == wave]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(cases)) as pool:
            futures = {pool.submit(stalled, s[c[1]].port, c[2], c[3], token if c[4] == "token" else None): c
                       for c in cases}
            for future in concurrent.futures.as_completed(futures, timeout=BOUND + 20):
                try:
                    results[futures[future]] = future.result()
                except Exception as error:  # noqa: BLE001 - reported by that case's test
                    results[futures[future]] = error
        time.sleep(0.3)
        deaths[wave] = {name: s[name].describe() for name in NAMES if not s[name].alive()}
    return {"results": results, "deaths": deaths}


def _case_id(case):
    wave, entry, method, path, variant = case
    return f"{wave}:{entry}:{method}:{path}:{variant}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_stalled_body_is_answered_and_nothing_dies(chain, waves, case):
    wave, entry, method, path, variant = case
    x = waves["results"][case]
    if isinstance(x, Exception):
        pytest.fail(f"client error: {type(x).__name__}: {x}")
    problems = []
    dead = {n: d for n, d in waves["deaths"][wave].items() if n in PATH_OF[entry] or n == entry}
    if dead:
        problems.append("DIED during this wave: " + "\n".join(dead.values()))
    problems += x.answer_problems(BOUND, lambda status: status < 500)
    assert not problems, f"{method} {path} ({variant}) to {entry}: " + "; ".join(problems) + f"\n{x.summary()}"


def test_no_second_answer_after_an_early_answer(chain, waves):
    """A request answered before its body stalled (a 2xx, or a 401 before the body was read) is
    followed by a close - never by a second, unasked-for 408, which a pipelining client would take
    as the answer to its next request ("408 if nothing was answered yet, else the connection is
    closed")."""
    twice = {_case_id(c): [r.status for r in x.responses] for c, x in waves["results"].items()
             if not isinstance(x, Exception) and len(x.responses) > 1}
    assert not twice, f"{len(twice)} of {len(CASES)} requests were answered twice:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(twice.items()))


def test_every_process_survived_the_waves(chain, waves):
    died = {wave: list(d) for wave, d in waves["deaths"].items() if d}
    assert not died, f"processes died: {died}\n" + "\n\n".join(
        desc for d in waves["deaths"].values() for desc in d.values())


def _live_everywhere(s):
    assert_alive(*s.values())
    for name, service in s.items():
        resp = try_request(service.port, "GET", "/health/live", timeout=3)
        assert not isinstance(resp, str) and resp.status == 200, f"{name} /health/live: {resp}"


def _restart_dead(s):
    for name in NAMES:
        if not s[name].alive():
            s[name].restart()


def test_delete_with_missing_body_twice_through_lb(chain, waves):
    s = chain["s"]
    _restart_dead(s)
    head = b"DELETE /api/posts/999 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    conns = [RawConnection(s["lb"].port), RawConnection(s["lb"].port)]
    answers = []
    try:
        start = time.monotonic()
        for conn in conns:
            conn.send(head)
        for conn in conns:
            resp = conn.read_response(max(0.1, start + BOUND - time.monotonic()))
            closed = conn.wait_closed(max(0.1, start + BOUND + 0.5 - time.monotonic()))
            answers.append((resp.status if resp else None, closed))
    finally:
        for conn in conns:
            conn.close()
    time.sleep(0.3)
    assert_alive(s["lb"], s["gateway"], s["blog"])
    for status, closed in answers:
        assert status is None or status < 500, f"answers: {answers}"
        assert closed, f"a connection stayed open: {answers}"
    _live_everywhere(s)


@pytest.mark.parametrize("entry", ["gateway", "lb"])
def test_expect_100_continue_without_body(chain, waves, entry):
    s = chain["s"]
    _restart_dead(s)
    head = (f"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {chain['token']}\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n").encode()
    statuses = []
    with RawConnection(s[entry].port) as conn:
        start = time.monotonic()
        conn.send(head)
        try:
            while (resp := conn.read_response(max(0.1, start + BOUND - time.monotonic()), skip_interim=False)):
                statuses.append(resp.status)
                if resp.status >= 200:
                    break
        except ParseError as error:
            statuses.append(f"unparseable: {error}")
        closed = conn.wait_closed(max(0.1, start + BOUND + 0.5 - time.monotonic()))
    time.sleep(0.3)
    assert_alive(s["lb"], s["gateway"], s["blog"])
    final = [x for x in statuses if not (isinstance(x, int) and x < 200)]
    assert all(isinstance(x, int) and x < 500 for x in final), f"answers: {statuses}"
    assert closed, f"connection still open after {BOUND + 0.5}s; answers {statuses}"
    _live_everywhere(s)


def test_everything_alive_at_the_end(chain, waves):
    _live_everywhere(chain["s"])
