"""Request framing and smuggling at the two proxies, over raw sockets.

Topology (started once for the module): a counting upstream stands in for all three services
behind api-gateway (RATE_LIMIT_ENABLED=false, so every /api request takes the forwarding path),
and the load balancer forwards /api to that gateway. Every case is sent both to the load balancer
and straight to the gateway.

What it proves:

* Ambiguous or unsupported framing never reaches a service: TRACE with a body that is a whole
  second request, CONNECT, ``Transfer-Encoding: Chunked``, ``gzip, chunked``, ``identity``,
  Content-Length together with chunked, two Content-Length headers (equal or not), an obs-folded
  header, bare-LF line ends, a 100 KB header, an unknown method and HTTP/1.2 each get a 4xx with
  the JSON error body (TRACE/CONNECT 405, framing ambiguity 400; 501/505 are accepted where
  RFC 9110/9112 name them) or a close without an answer; the connection is closed afterwards; and
  the counting upstream sees no request at all (never the smuggled path).
* Pipelining works: 20 GETs in one send on one keep-alive socket get 20 answers in order, and
  the upstream counts exactly 20.
* Legit bodies arrive exactly once and intact: a Content-Length POST and a chunked POST each reach
  the upstream once, with the right body, framed by the proxy with Content-Length or
  ``Transfer-Encoding: chunked`` - exactly one of the two.
"""

import time

import pytest

from conftest import (CountingUpstream, RawConnection, assert_alive, balancer_env, dashboard_dir, exchange,
                      gateway_env)

HEADER_TIMEOUT = 1  # seconds: a head left unfinished by a case is answered/closed quickly
ANSWER_TIMEOUT = HEADER_TIMEOUT + 1.5  # the wait for an answer and then for the close
SETTLE = 0.3  # extra time for a request a proxy might still be forwarding to reach the upstream

TIMEOUTS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "HTTP_BODY_IDLE_TIMEOUT_SECONDS": "2",
    # Long, so that "closed afterwards" is the server's decision, not the idle timeout.
    "HTTP_IDLE_TIMEOUT_SECONDS": "30",
}


@pytest.fixture(scope="module")
def chain(procs, upstream: CountingUpstream):
    gateway = procs.start("api-gateway", gateway_env(upstream.url, **TIMEOUTS))
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp), **TIMEOUTS))
    return {"lb": balancer, "gateway": gateway}


SMUGGLED = b"GET /api/posts/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
BIG = b"a" * (100 * 1024)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# name -> (bytes sent, allowed statuses: a set, None for any 4xx, or "4xx|501" for any 4xx or those listed)
CASES = {
    "trace_with_smuggled_body": (
        b"TRACE /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
        {405},
    ),
    "connect": (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        {405},
    ),
    "te_Chunked_capitalised": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: Chunked\r\n\r\n"
        + _chunk(SMUGGLED) + b"0\r\n\r\n",
        None,
    ),
    "te_gzip_chunked": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + _chunk(SMUGGLED) + b"0\r\n\r\n",
        "4xx|501",
    ),
    "te_identity": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n" + SMUGGLED,
        "4xx|501",
    ),
    "cl_and_te_chunked": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
        % len(b"0\r\n\r\n" + SMUGGLED) + b"0\r\n\r\n" + SMUGGLED,
        {400},
    ),
    "two_cl_same": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
        % (len(SMUGGLED), len(SMUGGLED)) + SMUGGLED,
        {400},
    ),
    "two_cl_different": (
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED,
        {400},
    ),
    "obs_fold": (
        b"GET /api/posts HTTP/1.1\r\nHost: x\r\nX-Folded: first\r\n  continued\r\n\r\n",
        {400},
    ),
    "bare_lf": (
        b"GET /api/posts HTTP/1.1\nHost: x\nX-A: b\n\n",
        None,
    ),
    "header_100kb": (
        b"GET /api/posts HTTP/1.1\r\nHost: x\r\nX-Big: " + BIG + b"\r\n\r\n",
        None,
    ),
    "unknown_method_FOO": (
        b"FOO /api/posts HTTP/1.1\r\nHost: x\r\n\r\n",
        "4xx|501",
    ),
    "http_1_2": (
        b"GET /api/posts HTTP/1.2\r\nHost: x\r\n\r\n",
        "4xx|505",
    ),
}


def _allowed(status: int, allowed) -> bool:
    if allowed is None:
        return 400 <= status < 500
    if isinstance(allowed, str):
        return 400 <= status < 500 or str(status) in allowed.split("|")
    return status in allowed


@pytest.mark.parametrize("target", ["lb", "gateway"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_framing_is_refused_and_never_forwarded(chain, upstream, target, case):
    data, allowed = CASES[case]
    server = chain[target]
    upstream.reset()
    result = exchange(server.port, data, timeout=ANSWER_TIMEOUT, max_responses=3)
    time.sleep(SETTLE)
    seen = [(r.method, r.target, r.malformed) for r in upstream.requests()]
    problems = []
    if result.parse_error:
        problems.append(f"unparseable answer: {result.parse_error}")
    if result.responses:
        first = result.first
        if not _allowed(first.status, allowed):
            problems.append(f"answered {first.status}, expected {allowed or '4xx'}")
        elif (shape := first.error_shape_problem()) is not None:
            problems.append(f"{first.status} without the JSON error body: {shape}")
        if len(result.responses) > 1:
            problems.append(f"{len(result.responses)} answers to one request: {[r.status for r in result.responses]}")
    if not result.closed:
        problems.append(f"connection still open {ANSWER_TIMEOUT}s after the request")
    if seen:
        problems.append(f"the upstream received {seen}")
    if any("smuggled" in t for _, t, _ in seen):
        problems.append("THE SMUGGLED REQUEST REACHED THE UPSTREAM")
    assert not problems, f"{case} via {target}: " + "; ".join(problems) + f"\n{result.summary()}"
    assert_alive(server)


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_pipelined_burst_of_20_answered_in_order(chain, upstream, target):
    server = chain[target]
    upstream.reset()
    burst = b"".join(f"GET /api/posts/{n} HTTP/1.1\r\nHost: x\r\nX-N: {n}\r\n\r\n".encode() for n in range(1, 21))
    with RawConnection(server.port) as conn:
        assert conn.send(burst)
        answers = []
        deadline = time.monotonic() + 10
        for _ in range(20):
            resp = conn.read_response(max(0.1, deadline - time.monotonic()))
            if resp is None:
                break
            answers.append(resp)
    statuses = [a.status for a in answers]
    assert statuses == [200] * 20, f"via {target}: {len(answers)} answers {statuses} {answers[-1:] if answers else ''}"
    paths = [a.json().get("path") for a in answers]
    assert paths == [f"/api/posts/{n}" for n in range(1, 21)], f"answers out of order: {paths}"
    time.sleep(SETTLE)
    targets = [r.target for r in upstream.requests()]
    assert len(targets) == 20, f"the upstream counted {len(targets)}: {targets}"
    assert sorted(targets) == sorted(f"/api/posts/{n}" for n in range(1, 21))


def _check_framing(record, body: bytes) -> list[str]:
    problems = []
    cl = record.header_all("content-length")
    te = record.header_all("transfer-encoding")
    if cl and te:
        problems.append(f"both Content-Length {cl} and Transfer-Encoding {te}")
    elif not cl and not te:
        problems.append("neither Content-Length nor Transfer-Encoding")
    elif te and te != ["chunked"]:
        problems.append(f"Transfer-Encoding is {te}, not exactly 'chunked'")
    elif cl and (len(cl) != 1 or cl[0] != str(len(body))):
        problems.append(f"Content-Length {cl} for a {len(body)}-byte body")
    if record.body != body:
        problems.append(f"body {record.body!r} != {body!r}")
    return problems


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_content_length_post_arrives_once_intact(chain, upstream, target):
    server = chain[target]
    upstream.reset()
    body = b'{"title":"framing","body":"content-length body"}'
    req = (b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
           % len(body)) + body
    with RawConnection(server.port) as conn:
        assert conn.send(req)
        resp = conn.read_response(5)
    assert resp is not None and resp.status == 200, f"via {target}: {resp}"
    assert resp.json().get("path") == "/api/posts"
    time.sleep(SETTLE)
    records = upstream.requests()
    assert len(records) == 1, f"the upstream received {[(r.method, r.target) for r in records]}"
    problems = _check_framing(records[0], body)
    assert not problems, f"via {target}: " + "; ".join(problems) + f"\nhead: {records[0].raw_head!r}"


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_chunked_post_arrives_once_intact(chain, upstream, target):
    server = chain[target]
    upstream.reset()
    parts = [b'{"title":"chunked",', b'"body":"sent in', b' three chunks"}']
    body = b"".join(parts)
    with RawConnection(server.port) as conn:
        assert conn.send(b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
        for part in parts:  # really in pieces, as a streaming client sends them
            time.sleep(0.05)
            assert conn.send(_chunk(part))
        assert conn.send(b"0\r\n\r\n")
        resp = conn.read_response(5)
    assert resp is not None and resp.status == 200, f"via {target}: {resp}"
    time.sleep(SETTLE)
    records = upstream.requests()
    assert len(records) == 1, f"the upstream received {[(r.method, r.target) for r in records]}"
    problems = _check_framing(records[0], body)
    assert not problems, f"via {target}: " + "; ".join(problems) + f"\nhead: {records[0].raw_head!r}"


def test_chain_still_alive(chain):
    assert_alive(chain["lb"], chain["gateway"])
