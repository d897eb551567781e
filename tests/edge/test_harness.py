"""Self-check of the edge suite's own tools, without any Titanium binary.

Proves that a failure elsewhere in tests/edge is about the server under test and not about the
harness: the raw client parses Content-Length, chunked and close-delimited answers (pipelined
ones too) and sees a close; the counting upstream counts every head it parses, reassembles
Content-Length and chunked bodies, answers pipelined requests in order on one keep-alive
connection, sends 100 Continue when asked, records malformed heads, and delays by path prefix.
A known-good server (python3 -m http.server) is read correctly too.
"""

import socket
import subprocess
import sys
import threading
import time

from conftest import HOST, RawConnection, exchange, free_port, wait_until


def test_counting_upstream_keep_alive_pipelining_and_bodies(fn_upstream):
    up = fn_upstream
    reqs = (
        b"GET /api/posts/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /api/posts/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
        b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with RawConnection(up.port) as conn:
        assert conn.send(reqs)
        answers = [conn.read_response(3) for _ in range(4)]
        assert [a.status for a in answers] == [200, 200, 200, 200], answers
        assert [a.json()["path"] for a in answers] == ["/api/posts/1", "/api/posts", "/api/posts/c", "/health/ready"]
        assert not conn.wait_closed(0.3), "keep-alive connection closed"
    records = up.requests()
    assert [r.target for r in records] == ["/api/posts/1", "/api/posts", "/api/posts/c"]  # health not counted
    assert records[1].body == b"hello" and records[1].framing == "content-length"
    assert records[2].body == b"abcde" and records[2].framing == "chunked"
    assert up.count == 3


def test_counting_upstream_records_malformed_and_closes(fn_upstream):
    up = fn_upstream
    result = exchange(up.port, b"GARBAGE\r\n\r\n", timeout=2)
    assert result.first.status == 400 and result.closed
    assert up.count == 1 and up.requests()[0].malformed
    up.reset()
    result = exchange(up.port, b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", timeout=2)
    assert result.first.status == 400 and up.requests()[0].malformed


def test_counting_upstream_expect_continue_and_delay(fn_upstream):
    up = fn_upstream
    up.delays["/api/slow"] = 0.5
    with RawConnection(up.port) as conn:
        conn.send(b"POST /api/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        interim = conn.read_response(2, skip_interim=False)
        assert interim.status == 100
        conn.send(b"ok")
        assert conn.read_response(2).status == 200
        start = time.monotonic()
        conn.send(b"GET /api/slow/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = conn.read_response(3)
        assert answer.status == 200 and time.monotonic() - start >= 0.45
        assert conn.wait_closed(1)
    assert up.requests()[0].body == b"ok"


def test_counting_upstream_concurrent_connections(fn_upstream):
    up = fn_upstream
    up.delays["/api/slow"] = 0.3
    results = []

    def one(i):
        results.append(exchange(up.port, f"GET /api/slow/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                                timeout=3).first.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [200] * 20
    assert time.monotonic() - start < 2.5, "the upstream serialised its connections"
    assert up.count == 20


def test_raw_client_against_python_http_server(tmp_path):
    (tmp_path / "hello.txt").write_text("hello world")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                return True
            except OSError:
                return False
        assert wait_until(up, 10)
        result = exchange(port, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        assert result.first.status == 200 and result.first.body == b"hello world"
        assert result.closed  # http.server speaks HTTP/1.0: closes after the answer
        result = exchange(port, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        assert result.first.status == 404 and result.closed
        # Silent socket: http.server waits; the client sees no close within 0.5 s.
        with RawConnection(port) as conn:
            assert not conn.wait_closed(0.5)
    finally:
        proc.kill()
        proc.wait(5)
