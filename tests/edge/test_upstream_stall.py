"""An upstream that stops in the middle of its answer.

The upstream (a ``ShapedUpstream`` of the edge suite) answers every /api request with
``HTTP/1.1 200 OK`` and ``Content-Length: 100000``, sends the head and 10 bytes of the body, and
then stalls: the socket stays open and nothing more is sent. Health, stats and metrics paths are
answered normally (the load balancer health-checks ``/health/ready`` every 2 s).

What it proves, once with api-gateway in front of the upstream (all three service URLs pointing at
it, RATE_LIMIT_ENABLED=false) and once with the load balancer in front of it (the upstream posing
as the only gateway), the proxy started with HTTP_CLIENT_READ_TIMEOUT_MS=1000:

* a raw-socket ``GET /api/posts`` gets the 200 head and exactly the 10 bytes, and then the proxy
  closes the client's connection within the 1 s read timeout + 1.5 s slack (counted from the moment
  the upstream sent its 10 bytes) instead of holding it open for ever - and it does not pretend the
  answer is complete (no chunked last-chunk, no second answer appended);
* the proxy still answers ``GET /health/live`` 200 afterwards and is alive;
* the upstream sees its connection from the proxy closed too (EOF or reset) within the same bound:
  the stalled upstream connection is not kept (or pooled) for ever.
"""

from __future__ import annotations

import socket
import time

import pytest

from conftest import RawConnection, assert_alive, balancer_env, dashboard_dir, gateway_env, http_request
from test_blame_and_limits import ShapedUpstream

READ_TIMEOUT_MS = 1000
SLACK = 1.5
BOUND = READ_TIMEOUT_MS / 1000 + SLACK  # seconds from the upstream's last byte to the close
DECLARED = 100_000
PARTIAL = b"0123456789"  # the 10 body bytes the upstream sends before it stalls


class StallingUpstream(ShapedUpstream):
    """Answers /api paths with a 200 head declaring ``Content-Length: 100000``, 10 body bytes and
    then nothing (the socket is kept open); other paths as the counting upstream does. Each stalled
    answer is recorded in ``stalls`` with when its bytes went out and when (and how) the peer
    closed the connection."""

    STALL_LIMIT = 20.0  # seconds: a bound on each stall even if the peer never closes

    def __init__(self, port: int = 0):
        super().__init__(port)
        self.stalls: list[dict] = []

    def _answer(self, conn: socket.socket, status: int, body: bytes, *, close: bool, head: bool = False) -> None:
        path = self.answered_path(status, body)
        if head or not path.startswith("/api"):
            super()._answer(conn, status, body, close=close, head=head)
            return
        entry = {"path": path, "sent_at": None, "closed_at": None, "how": "not sent"}
        with self.changed:
            self.stalls.append(entry)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     + f"Content-Length: {DECLARED}\r\n\r\n".encode() + PARTIAL)
        with self.changed:
            entry["sent_at"] = time.monotonic()
            entry["how"] = "still open"
        # The stall: send nothing more; watch for the peer closing (bounded).
        conn.settimeout(0.05)
        how = "still open"
        end = time.monotonic() + self.STALL_LIMIT
        while time.monotonic() < end:
            if self.stopping.is_set():
                how = "still open when the upstream stopped"
                break
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError as error:
                how = f"reset ({type(error).__name__})"
                break
            if not chunk:
                how = "eof"
                break
            # Bytes from the proxy (another request on the same connection) are ignored: stalled.
        with self.changed:
            entry["how"] = how
            if how == "eof" or how.startswith("reset"):
                entry["closed_at"] = time.monotonic()
            self.changed.notify_all()
        raise OSError(f"stall ended: {how}")  # ends this connection's thread; the socket is closed

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [dict(e) for e in self.stalls]

    def wait_all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                if self.stalls and all(e["closed_at"] is not None for e in self.stalls):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.1))


@pytest.fixture
def stalling_upstream():
    server = StallingUpstream()
    try:
        yield server
    finally:
        server.stop()


def _decode_chunks(raw: bytes) -> tuple[bytes, bool]:
    """The data of the complete chunks in raw, and whether the last chunk (size 0) was among them."""
    data = b""
    while b"\r\n" in raw:
        size_line, _, rest = raw.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            break
        if size == 0:
            return data, True
        if len(rest) < size + 2:
            break
        data += rest[:size]
        raw = rest[size + 2:]
    return data, False


def _stalled_get(port: int) -> dict:
    """GET /api/posts on a raw socket: reads the head and the partial body, then waits (bounded)
    for the proxy to close the connection."""
    result: dict = {"status": None, "head": b"", "raw_body": b"", "body": b"", "closed": False, "eof_at": None,
                    "reset": False, "got_partial_at": None, "last_chunk": False}
    with RawConnection(port) as conn:
        conn.send(b"GET /api/posts HTTP/1.1\r\nHost: stall.test\r\n\r\n")
        deadline = time.monotonic() + 5.0
        chunked = False
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in conn.buf:
                head, _, raw = conn.buf.partition(b"\r\n\r\n")
                chunked = b"transfer-encoding: chunked" in head.lower()
                body = _decode_chunks(raw)[0] if chunked else raw
                if len(body) >= len(PARTIAL):
                    result["got_partial_at"] = time.monotonic()
                    break
            if not conn._fill(deadline):
                if conn.eof:
                    break
        if not conn.eof:
            conn.wait_closed(BOUND + 2.0)  # a bit longer than the bound, to report how late it was
        result["closed"], result["eof_at"], result["reset"] = conn.eof, conn.eof_at, conn.reset
        head, sep, raw = conn.buf.partition(b"\r\n\r\n")
        result["head"] = head if sep else conn.buf[:300]
        if sep:
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ")
            if len(parts) >= 2 and parts[1].isdigit():
                result["status"] = int(parts[1])
            result["raw_body"] = raw
            if chunked:
                result["body"], result["last_chunk"] = _decode_chunks(raw)
            else:
                result["body"] = raw
        result["chunked"] = chunked
    return result


def _check_stall_is_cut(proxy, up: StallingUpstream, what: str) -> None:
    started = time.monotonic()
    r = _stalled_get(proxy.port)
    stalls = up.snapshot()
    summary = (f"{what}: head {r['head'][:300]!r}, body {r['raw_body'][:120]!r}, closed={r['closed']} "
               f"(reset={r['reset']}), upstream stalls {stalls}")
    assert stalls and stalls[0]["sent_at"] is not None, f"the upstream never got GET /api/posts; {summary}"
    sent_at = stalls[0]["sent_at"]

    # The client gets the head and the 10 bytes...
    assert r["status"] == 200, f"no 200 head relayed before the stall; {summary}"
    assert r["body"] == PARTIAL, f"the client did not get exactly the 10 bytes the upstream sent; {summary}"
    if r["chunked"]:
        assert not r["last_chunk"], f"the cut answer was ended with a last-chunk, as if complete; {summary}"
    else:
        assert f"content-length: {DECLARED}".encode() in r["head"].lower(), (
            f"neither the upstream's Content-Length nor chunked framing was relayed; {summary}")
        assert r["raw_body"] == PARTIAL, f"bytes after the 10 the upstream sent (a second answer?); {summary}"

    # ...and then its connection is closed, within the read timeout + slack (not held for ever).
    assert r["closed"], (f"the client's connection was still open {time.monotonic() - sent_at:.1f}s after the upstream "
                         f"stalled (HTTP_CLIENT_READ_TIMEOUT_MS={READ_TIMEOUT_MS}); {summary}")
    closed_after = r["eof_at"] - sent_at
    assert closed_after <= BOUND, (f"the client's connection was closed only {closed_after:.2f}s after the upstream "
                                   f"stalled (bound {BOUND:.1f}s); {summary}")

    # The proxy still answers.
    live = http_request(proxy.port, "GET", "/health/live", timeout=3)
    assert live.status == 200, f"{what}: /health/live after the stall answered {live}"
    assert_alive(proxy)

    # The upstream sees the proxy's connection closed too.
    remaining = max(0.0, sent_at + BOUND - time.monotonic())
    up.wait_all_closed(remaining + 1.0)
    stalls = up.snapshot()
    still = [e for e in stalls if e["closed_at"] is None]
    assert not still, (f"{what}: the proxy kept its connection to the stalled upstream open "
                       f"{time.monotonic() - sent_at:.1f}s after the stall: {stalls}")
    late = [e for e in stalls if e["closed_at"] - e["sent_at"] > BOUND]
    assert not late, f"{what}: the upstream saw its connection closed only after more than {BOUND:.1f}s: {stalls}"
    print(f"{what}: client closed {closed_after:.2f}s after the stall ({'reset' if r['reset'] else 'eof'}, "
          f"{'chunked' if r['chunked'] else 'content-length'}), upstream "
          f"{[(e['how'], round(e['closed_at'] - e['sent_at'], 2)) for e in stalls]}, "
          f"{time.monotonic() - started:.2f}s in all")


def test_gateway_cuts_an_upstream_that_stalls_mid_body(fn_procs, stalling_upstream):
    up = stalling_upstream
    gateway = fn_procs.start("api-gateway", gateway_env(up.url, HTTP_CLIENT_READ_TIMEOUT_MS=str(READ_TIMEOUT_MS)),
                             label="gateway-stall")
    _check_stall_is_cut(gateway, up, "api-gateway")


def test_load_balancer_cuts_a_gateway_that_stalls_mid_body(fn_procs, stalling_upstream):
    up = stalling_upstream
    lb = fn_procs.start("load-balancer", balancer_env([up.url], dashboard_dir(fn_procs.tmp),
                                                      HTTP_CLIENT_READ_TIMEOUT_MS=str(READ_TIMEOUT_MS)),
                        label="lb-stall")
    _check_stall_is_cut(lb, up, "load-balancer")
