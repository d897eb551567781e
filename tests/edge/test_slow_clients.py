"""Slow and silent clients against the load balancer, api-gateway and blog-service.

Each process runs with HTTP_HEADER_TIMEOUT_SECONDS=1, HTTP_BODY_IDLE_TIMEOUT_SECONDS=2 and
HTTP_IDLE_TIMEOUT_SECONDS=3 (the load balancer in front of the gateway, the gateway in front of
a counting upstream standing in for the services; blog-service on its own).

What it proves, for each of the three:

* a socket that sends nothing is closed, silently, within header timeout + 1.5 s (and not at once);
* an unfinished request head is answered 408 (JSON error) or closed within header timeout + 1.5 s;
* a POST whose Content-Length body stops after 1 byte is answered 408 (blog-service: any 4xx, it
  may refuse the request before reading the body) or closed, and closed within body timeout + 1.5 s;
* ``GET /health/live`` announcing ``Content-Length: 5`` and sending nothing is answered and/or
  closed within body timeout + 1.5 s;
* in both body cases there is at most one answer: a request answered before its body stalled is
  followed by a close, never by a second, unasked-for 408 (a pipelining client would take it as
  the answer to its next request);
* a keep-alive connection left idle after one answered request is closed within idle timeout
  + 1.5 s - and not before ~idle timeout (the header timeout does not apply to an idle connection);
* with 500 silent sockets held open, a fresh ``GET /health/live`` and ``GET /api/posts`` still
  answer 200;
* every process is still alive afterwards.

The timed cases of all three processes run concurrently (one thread each) so the module takes
seconds; each case is still its own test.
"""

import concurrent.futures
import socket
import time

import pytest

from conftest import (RawConnection, assert_alive, balancer_env, closed_redis_url, dashboard_dir, exchange,
                      gateway_env, http_request, refused_url)

HEADER, BODY, IDLE = 1.0, 2.0, 3.0
SLACK = 1.5
TIMEOUTS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": str(int(HEADER)),
    "HTTP_BODY_IDLE_TIMEOUT_SECONDS": str(int(BODY)),
    "HTTP_IDLE_TIMEOUT_SECONDS": str(int(IDLE)),
}
TARGETS = ["lb", "gateway", "blog"]


@pytest.fixture(scope="module")
def services(procs, upstream):
    gateway = procs.start("api-gateway", gateway_env(upstream.url, **TIMEOUTS))
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp), **TIMEOUTS))
    blog = procs.start("blog-service", {
        "JWKS_URL": f"{refused_url()}/.well-known/jwks.json", "REDIS_URL": closed_redis_url(), **TIMEOUTS,
    })
    return {"lb": balancer, "gateway": gateway, "blog": blog}


# -- the timed scenarios: each returns a dict of observations --------------------------------

def silent(port):
    with RawConnection(port) as conn:
        start = time.monotonic()
        closed = conn.wait_closed(HEADER + SLACK + 1)
        return {"closed": closed, "after": (conn.eof_at - start) if closed else None, "bytes": conn.buf}


def unfinished_head(port):
    return {"x": exchange(port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n", timeout=HEADER + SLACK + 1)}


def stalled_post_body(port):
    data = (b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50\r\n\r\n{")
    return {"x": exchange(port, data, timeout=BODY + SLACK + 1)}


def get_with_missing_body(port):
    return {"x": exchange(port, b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                          timeout=BODY + SLACK + 1)}


def idle_keep_alive(port):
    with RawConnection(port) as conn:
        conn.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response(3)
        answered = time.monotonic()
        closed = conn.wait_closed(IDLE + SLACK + 1) if resp is not None else False
        return {"resp": resp, "closed": closed, "after": (conn.eof_at - answered) if closed else None,
                "bytes": conn.buf}


SCENARIOS = {
    "silent": silent,
    "unfinished_head": unfinished_head,
    "stalled_post_body": stalled_post_body,
    "get_with_missing_body": get_with_missing_body,
    "idle_keep_alive": idle_keep_alive,
}


@pytest.fixture(scope="module")
def observed(services):
    """Runs every scenario against every target at once; {(target, scenario): result or exception}."""
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(TARGETS) * len(SCENARIOS)) as pool:
        futures = {pool.submit(fn, services[t].port): (t, name) for t in TARGETS for name, fn in SCENARIOS.items()}
        for future in concurrent.futures.as_completed(futures, timeout=30):
            key = futures[future]
            try:
                results[key] = future.result()
            except Exception as error:  # noqa: BLE001 - reported by the test of that case
                results[key] = error
    return results


def _get(observed, target, scenario):
    result = observed[(target, scenario)]
    if isinstance(result, Exception):
        pytest.fail(f"{scenario} on {target}: the client failed: {type(result).__name__}: {result}")
    return result


@pytest.mark.parametrize("target", TARGETS)
def test_silent_socket_closed_silently(services, observed, target):
    r = _get(observed, target, "silent")
    assert r["closed"], f"{target}: a silent socket was still open after {HEADER + SLACK + 1}s"
    assert r["after"] <= HEADER + SLACK, f"{target}: silent socket closed only after {r['after']:.2f}s"
    assert r["after"] >= 0.5, f"{target}: silent socket closed at once ({r['after']:.2f}s), before the header timeout"
    assert r["bytes"] == b"", f"{target}: a socket that sent nothing was answered {r['bytes'][:200]!r}"


def _check_answer_then_close(x, target, bound, allowed, what):
    problems = x.answer_problems(bound, allowed)
    assert not problems, f"{what} on {target}: " + "; ".join(problems) + f"\n{x.summary()}"


@pytest.mark.parametrize("target", TARGETS)
def test_unfinished_head_408_or_closed(services, observed, target):
    x = _get(observed, target, "unfinished_head")["x"]
    _check_answer_then_close(x, target, HEADER + SLACK, lambda s: s == 408, "unfinished head")


@pytest.mark.parametrize("target", TARGETS)
def test_stalled_post_body_408_or_closed(services, observed, target):
    x = _get(observed, target, "stalled_post_body")["x"]
    # The proxies' upstream never answers before the body is complete: only their own 408 fits.
    # blog-service may refuse the request (401, no token) before it reads the body.
    allowed = (lambda s: s == 408) if target != "blog" else (lambda s: 400 <= s < 500)
    _check_answer_then_close(x, target, BODY + SLACK, allowed, "POST with 1 of 50 body bytes")


@pytest.mark.parametrize("target", TARGETS)
def test_get_with_missing_body_answered_and_closed(services, observed, target):
    x = _get(observed, target, "get_with_missing_body")["x"]
    # /health/live may answer 200 without reading the body; the stalled body then closes the connection.
    _check_answer_then_close(x, target, BODY + SLACK, lambda s: s in (200, 408), "GET with Content-Length: 5 and no body")


@pytest.mark.parametrize("target", TARGETS)
def test_no_second_answer_after_an_early_answer(services, observed, target):
    """"408 if nothing was answered yet, else the connection is closed": a request answered before
    its body stalled must not get a second, unasked-for 408 (a pipelining client would take it as
    the answer to its next request)."""
    twice = {}
    for scenario in ("stalled_post_body", "get_with_missing_body"):
        x = _get(observed, target, scenario)["x"]
        if len(x.responses) > 1:
            twice[scenario] = [r.status for r in x.responses]
    assert not twice, f"{target} answered one request twice: {twice}"


@pytest.mark.parametrize("target", TARGETS)
def test_idle_keep_alive_closed_after_idle_timeout(services, observed, target):
    r = _get(observed, target, "idle_keep_alive")
    assert r["resp"] is not None and r["resp"].status == 200, f"{target}: GET /health/live answered {r['resp']}"
    assert r["closed"], f"{target}: idle keep-alive connection still open after {IDLE + SLACK + 1}s"
    assert r["after"] <= IDLE + SLACK, f"{target}: idle connection closed only after {r['after']:.2f}s"
    assert r["after"] >= IDLE - 1, (f"{target}: idle keep-alive connection closed after {r['after']:.2f}s, before the "
                                    f"idle timeout ({IDLE}s): the header timeout must not apply to an idle connection")
    assert r["bytes"] == b"", f"{target}: unexpected bytes on the idle connection: {r['bytes'][:200]!r}"


@pytest.mark.parametrize("target", TARGETS)
def test_500_idle_sockets_do_not_starve_a_fresh_request(services, observed, target):
    service = services[target]
    held = []
    try:
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", service.port), timeout=3)
            s.settimeout(3)
            held.append(s)
        opened = time.monotonic()
        live = http_request(service.port, "GET", "/health/live", timeout=3)
        posts = http_request(service.port, "GET", "/api/posts", timeout=5)
        took = time.monotonic() - opened
    finally:
        for s in held:
            s.close()
    assert live.status == 200, f"{target}: /health/live with 500 idle sockets open: {live}"
    assert posts.status == 200, f"{target}: /api/posts with 500 idle sockets open: {posts}"
    assert took < 5, f"{target}: the two requests took {took:.2f}s"
    assert_alive(service)


def test_every_process_alive(services, observed):
    assert_alive(*services.values())
    for service in services.values():
        assert http_request(service.port, "GET", "/health/live").status == 200
