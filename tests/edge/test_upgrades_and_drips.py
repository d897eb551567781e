"""Upgrade requests and dripping clients, the shapes a hostile review found after the first
hardening pass (each of them crashed, bloated or held a process before its fix):

* a WebSocket upgrade with bytes after its head in the same write (the first frame sent eagerly)
  does not crash the load balancer or the gateway, and the socket is upgraded;
* a request asking for an upgrade nobody offers (``Upgrade: h2c``, ``Upgrade: foo``) is answered
  as a plain request and the connection closed after the answer (NIO's decoder parses nothing
  after such a request), and bytes streamed after it are bounded: the process does not grow;
* a body dripped after the request was already answered is not read for long: the connection
  is closed a few seconds after the answer, not after the body idle timeout between drips;
* the gateway's per-username login limit reads a repeated ``username`` key as the services do;
* a client that half-closes after sending a forwarded request still gets its answer.
"""

import socket
import time

import pytest

from conftest import (RawConnection, assert_alive, balancer_env, dashboard_dir, exchange, gateway_env,
                      http_request)

WS_HEAD = ("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
# A masked, empty text frame: what a client may send right behind its handshake.
FIRST_FRAME = bytes.fromhex("818080000000")


@pytest.fixture(scope="module")
def chain(procs, upstream):
    gateway = procs.start("api-gateway", gateway_env(upstream.url, HTTP_BODY_IDLE_TIMEOUT_SECONDS="20"))
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp),
                                                         HTTP_BODY_IDLE_TIMEOUT_SECONDS="20"))
    return {"lb": balancer, "gateway": gateway}


def rss_kib(service) -> int:
    with open(f"/proc/{service.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_websocket_upgrade_with_an_eager_first_frame_does_not_crash(chain, target):
    service = chain[target]
    path = "/api/ws-heartbeat" if target == "lb" else "/api/posts/live"
    for _ in range(3):
        with RawConnection(service.port) as conn:
            conn.send(WS_HEAD.format(path=path).encode() + FIRST_FRAME)
            try:
                conn.sock.settimeout(2)
                conn.sock.recv(4096)
            except OSError:
                pass
    time.sleep(0.5)
    assert_alive(*chain.values())
    assert http_request(service.port, "GET", "/health/live").status == 200


@pytest.mark.parametrize("target", ["lb", "gateway"])
@pytest.mark.parametrize("protocol", ["h2c", "foo"])
def test_an_upgrade_nobody_offers_is_answered_and_closed(chain, upstream, target, protocol):
    service = chain[target]
    request = (f"GET /api/posts/{protocol} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               f"Upgrade: {protocol}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n").encode()
    result = exchange(service.port, request, timeout=5.0)
    assert result.first is not None and result.first.status == 200, result.summary()
    assert result.closed, result.summary()
    assert_alive(*chain.values())


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_bytes_streamed_after_an_upgrade_request_are_bounded(chain, target):
    service = chain[target]
    before = rss_kib(service)
    sent = 0
    with RawConnection(service.port) as conn:
        conn.send(b"GET /api/posts/1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
        chunk = b"x" * 65536
        conn.sock.settimeout(0.5)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
            try:
                conn.sock.sendall(chunk)
                sent += len(chunk)
            except OSError:
                break
    time.sleep(0.3)
    assert_alive(*chain.values())
    grown = rss_kib(service) - before
    assert grown < 64 * 1024, f"grew {grown} KiB after {sent} bytes"


def test_a_body_dripped_after_an_early_answer_is_not_read_for_long(fn_procs):
    blog = fn_procs.start("blog-service", {
        "JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json", "HTTP_BODY_IDLE_TIMEOUT_SECONDS": "10",
    })
    with RawConnection(blog.port) as conn:
        conn.send(b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        answer = conn.read_response(5.0)
        assert answer is not None and answer.status == 401
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 12:
            if not conn.send(b"a", timeout=1.0):
                closed = True
                break
            if conn.wait_closed(1.0):
                closed = True
                break
        waited = time.monotonic() - started
    assert closed, "a body dripped once a second after its answer kept the connection open for 12 s"
    assert waited < 8, f"closed only after {waited:.1f} s"
    assert_alive(blog)


def test_a_repeated_username_key_counts_against_the_username_the_services_read(fn_procs, upstream):
    redis_port = fn_procs.start_redis()
    gateway = fn_procs.start("api-gateway", gateway_env(
        upstream.url, REDIS_URL=f"redis://127.0.0.1:{redis_port}", RATE_LIMIT_ENABLED="true", RATE_LIMIT_LOGIN="2/60",
        RATE_LIMIT_LOGIN_IP="100/60",
    ))
    statuses = []
    for n in range(4):
        body = ('{"username":"victim","username":"decoy%d","password":"wrong"}' % n).encode()
        statuses.append(http_request(gateway.port, "POST", "/api/auth/login", body=body,
                                     headers={"Content-Type": "application/json"}).status)
    # JSONDecoder, like the services, reads the first key: every attempt is against "victim".
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429], statuses


@pytest.mark.parametrize("target", ["lb", "gateway"])
def test_a_client_that_half_closes_after_its_request_gets_the_answer(chain, target):
    service = chain[target]
    with RawConnection(service.port) as conn:
        conn.send(b"GET /api/posts/half HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        answer = conn.read_response(5.0)
        assert answer is not None and answer.status == 200, answer
        assert conn.wait_closed(3.0), "the connection stayed open after the answer to a half-closed client"
    assert_alive(*chain.values())
