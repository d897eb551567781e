"""Which hop the load balancer blames, how it takes a draining gateway out, clients that never read
their answers, and the connection metrics every service exposes.

What it proves:

* (blame) one load balancer in front of two real api-gateway processes whose services all point
  at a refused port: 30 ``GET /api/posts`` through the load balancer are all the gateways' 502 JSON
  carrying ``Proxy-Status`` (``next-hop="blog-service"``), and afterwards - at least one health
  check later - the load balancer's /stats shows both gateways ``healthy: true``,
  ``ejected: false``: a 5xx a gateway makes about a service behind it is not the gateway's fault.
  Two contrasts show the test can fail:
  - a "gateway" that answers /api with 500 *without* ``Proxy-Status`` (a counting upstream whose
    answers are shaped) is ejected after those failures, while the real gateway next to it stays in;
  - a gateway killed with SIGKILL becomes ejected or unhealthy, the other stays in, and every
    client still gets the live gateway's 502 (the failed attempt went to the other replica).
* (draining) two gateways on fixed ports in front of the counting upstream, load through the load
  balancer; one gets SIGTERM with SHUTDOWN_DELAY_SECONDS=4: within 3 s the load balancer's /stats
  (the snapshot's ``generated_at``; /stats is reused for up to 1 s) shows it ``healthy: false`` with ``last_check_error`` mentioning draining, it gets no request
  from then on, every request of the load gets 200, and the gateway exits 0.
* (never reads) a client with a tiny SO_RCVBUF that asks for answers and never reads them is cut
  within HTTP_BODY_IDLE_TIMEOUT_SECONDS=2 + slack (``http_connections_cut_total{reason=
  "slow_reader"}`` - or, on api-gateway, ``write_timeout`` - increases, and the socket then sees
  EOF/reset), while the service still answers other clients. Three shapes, run concurrently:
  blog-service with ``GET /metrics`` pipelined a few thousand times (several MB of answers, more
  than the kernel's socket buffers hold), api-gateway with a few thousand small answers pipelined,
  and api-gateway relaying one 16 MB answer.
* (metrics) a fresh blog-service (HTTP_HEADER_TIMEOUT_SECONDS=1, HTTP_MAX_CONNECTIONS=300): after a
  silent socket and a malformed request, ``http_connections_cut_total{reason="header_timeout"}``
  and ``{reason="bad_request"}`` are >= 1, ``http_connections_max`` is 300, and
  ``http_connections_open`` counts the sockets held open (and drops again when they close).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import re
import signal
import socket
import threading
import time

import pytest

from conftest import (HOST, CountingUpstream, RawConnection, assert_alive, balancer_env, closed_redis_url,
                      dashboard_dir, free_port, gateway_env, get_stats, http_request, refused_url, try_request,
                      wait_until)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class ShapedUpstream(CountingUpstream):
    """A counting upstream whose answers to /api paths can be shaped: ``fail_api`` answers them
    500 (JSON, no ``Proxy-Status``: the upstream's own failure); ``sizes[prefix] = n`` answers
    paths under prefix with an n-byte body. Health and stats paths keep their 200."""

    def __init__(self, port: int = 0):
        super().__init__(port)
        self.fail_api = False
        self.sizes: dict[str, int] = {}
        self._bodies: dict[int, bytes] = {}

    def _answer(self, conn: socket.socket, status: int, body: bytes, *, close: bool, head: bool = False) -> None:
        path = self.answered_path(status, body)
        if path.startswith("/api"):
            if self.fail_api:
                status, body = 500, b'{"error":{"code":"internal","message":"the upstream itself failed"}}'
            else:
                size = max((n for prefix, n in self.sizes.items() if path.startswith(prefix)), default=None)
                if size is not None:
                    body = self._bodies.setdefault(size, b"x" * size)
        reason = {200: "OK", 400: "Bad Request", 431: "Request Header Fields Too Large",
                  500: "Internal Server Error"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", f"Connection: {'close' if close else 'keep-alive'}"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        conn.sendall(data if head else data + body)


@pytest.fixture
def shaped_upstream():
    server = ShapedUpstream()
    try:
        yield server
    finally:
        server.stop()


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)")


def read_metrics(port: int, timeout: float = 5.0) -> dict[str, float]:
    """GET /metrics as {'name{labels}': value} (Prometheus text; comments skipped)."""
    resp = http_request(port, "GET", "/metrics", timeout=timeout)
    assert resp.status == 200, f"GET /metrics on port {port}: {resp}"
    values = {}
    for line in resp.body.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        if m:
            try:
                values[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return values


def cut(reason: str) -> str:
    return f'http_connections_cut_total{{reason="{reason}"}}'


def backend(stats: dict, url: str) -> dict | None:
    return next((b for b in stats.get("backends") or [] if str(b.get("url", "")).rstrip("/") == url.rstrip("/")), None)


def lb_backends(lb_port: int) -> list[dict] | str:
    resp = try_request(lb_port, "GET", "/stats", timeout=4)
    if isinstance(resp, str):
        return resp
    if resp.status != 200:
        return f"GET /stats answered {resp.status}"
    return resp.json().get("backends") or []


def _wall(rfc3339: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time such as 2026-12-06T17:16:58.377Z (inf if missing)."""
    if not rfc3339:
        return float("inf")
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def proxy_status_problem(resp) -> str | None:
    """None when resp is a gateway's 502 about blog-service: JSON error body and Proxy-Status."""
    if isinstance(resp, str):
        return resp
    if resp.status != 502:
        return f"status {resp.status}: {resp.body[:160]!r}"
    if shape := resp.error_shape_problem():
        return shape
    ps = resp.header("proxy-status")
    if not ps:
        return f"502 without Proxy-Status: {dict(resp.headers)}"
    if "error=" not in ps or 'next-hop="blog-service"' not in ps:
        return f"Proxy-Status {ps!r} does not name the error and next-hop blog-service"
    return None


# --------------------------------------------------------------------------------------------
# 1. ejection blames the right hop
# --------------------------------------------------------------------------------------------

REQUESTS = 30


def _two_gateways_with_dead_services(procs):
    services = refused_url()  # every service of both gateways: a port nothing listens on
    gateways = [procs.start("api-gateway", gateway_env(services), label=f"gateway-{n}") for n in (1, 2)]
    lb = procs.start("load-balancer", balancer_env([g.url for g in gateways], dashboard_dir(procs.tmp)), label="lb")
    return lb, gateways


def test_502_with_proxy_status_does_not_eject_the_gateway(fn_procs):
    lb, gateways = _two_gateways_with_dead_services(fn_procs)
    started = time.monotonic()
    answers = [try_request(lb.port, "GET", f"/api/posts?n={n}", timeout=5) for n in range(REQUESTS)]
    bad = {n: p for n, a in enumerate(answers) if (p := proxy_status_problem(a))}
    assert not bad, f"{len(bad)} of {REQUESTS} answers are not the gateway's 502 with Proxy-Status: {dict(list(bad.items())[:5])}"
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))  # at least one more health check of both
    stats = get_stats(lb.port)
    entries = [backend(stats, g.url) for g in gateways]
    assert all(entries), f"/stats backends do not list both gateways: {stats.get('backends')}"
    wrong = [e for e in entries if e.get("ejected") is not False or e.get("healthy") is not True
             or e.get("last_check_error")]
    assert not wrong, (f"502s with Proxy-Status (a service behind the gateway failed) were blamed on the gateway: "
                       f"{entries}")
    requests = [e.get("requests", 0) for e in entries]
    assert sum(requests) >= REQUESTS and min(requests) >= 5, (
        f"requests per gateway {requests}: both must have had enough 502s to be ejected if they counted")
    assert_alive(lb, *gateways)


def test_500_without_proxy_status_ejects_that_backend(fn_procs, shaped_upstream):
    """Contrast: a backend whose own 5xx carry no Proxy-Status is ejected; the real gateway next to it is not."""
    fake = shaped_upstream
    fake.fail_api = True
    gateway = fn_procs.start("api-gateway", gateway_env(refused_url()), label="gateway")
    lb = fn_procs.start("load-balancer", balancer_env([gateway.url, fake.url], dashboard_dir(fn_procs.tmp)), label="lb")
    answers = [try_request(lb.port, "GET", f"/api/posts?n={n}", timeout=5) for n in range(REQUESTS)]
    statuses = [a if isinstance(a, str) else a.status for a in answers]
    fives = [a for a in answers if not isinstance(a, str) and a.status == 500]
    assert 5 <= len(fives) <= 8, f"the failing backend answered {len(fives)} of {REQUESTS}: {statuses}"
    # Relayed by the load balancer, each says so (RFC 9209 received-status): a hop in front of it
    # would blame the backend that made it, not the load balancer.
    assert all(a.header("proxy-status") == 'titanium; received-status=500; next-hop="api-gateway"' for a in fives), \
        f"the 500s are not marked as relayed: {[a.header('proxy-status') for a in fives]}"
    stats = get_stats(lb.port)
    fake_entry, gateway_entry = backend(stats, fake.url), backend(stats, gateway.url)
    assert fake_entry and gateway_entry, f"/stats backends: {stats.get('backends')}"
    assert fake_entry.get("ejected") is True, (f"a backend that answered {len(fives)} 500s without Proxy-Status is "
                                               f"not ejected: {fake_entry}; statuses {statuses}")
    assert gateway_entry.get("ejected") is False and gateway_entry.get("healthy") is True, (
        f"the real gateway (502 with Proxy-Status) is out: {gateway_entry}")
    # Once ejected the failing backend gets nothing: the last answers are all the gateway's.
    tail = answers[-10:]
    assert all(proxy_status_problem(a) is None for a in tail), f"after the ejection: {statuses[-10:]}"
    assert_alive(lb, gateway)


def test_killed_gateway_is_taken_out_the_other_stays(fn_procs):
    """Contrast: a gateway that does not answer at all is blamed; the live one is not."""
    lb, (dead, live) = _two_gateways_with_dead_services(fn_procs)
    assert proxy_status_problem(try_request(lb.port, "GET", "/api/posts", timeout=5)) is None
    dead.proc.send_signal(signal.SIGKILL)
    assert dead.wait_exit(5) is not None, "SIGKILL did not end the gateway"
    answers = []
    last: list[object] = [None]

    def dead_is_out() -> bool:
        answers.append(try_request(lb.port, "GET", f"/api/posts?n={len(answers)}", timeout=5))
        backends = lb_backends(lb.port)
        if isinstance(backends, str):
            last[0] = backends
            return False
        entries = {b.get("url", "").rstrip("/"): b for b in backends}
        last[0] = entries
        d, l = entries.get(dead.url), entries.get(live.url)
        return bool(d and l and (d.get("ejected") or d.get("healthy") is False))

    out = wait_until(dead_is_out, timeout=8, interval=0.05)
    assert out, f"the killed gateway is still in rotation after {len(answers)} requests: {last[0]}"
    entries = last[0]
    live_entry = entries[live.url]
    assert live_entry.get("ejected") is False and live_entry.get("healthy") is True, (
        f"the live gateway was taken out together with the killed one: {entries}")
    bad = [p for a in answers if (p := proxy_status_problem(a))]
    assert not bad, (f"{len(bad)} of {len(answers)} clients did not get the live gateway's 502 while the other was "
                     f"dead (no retry on the other replica?): {bad[:5]}")
    assert_alive(lb, live)


# --------------------------------------------------------------------------------------------
# 2. draining removal
# --------------------------------------------------------------------------------------------

def test_draining_gateway_leaves_the_rotation_at_once(fn_procs, fn_upstream):
    up = fn_upstream
    gateways = [
        fn_procs.start("api-gateway", gateway_env(up.url, SHUTDOWN_DELAY_SECONDS="4", SHUTDOWN_GRACE_SECONDS="10"),
                       port=free_port(), label=f"gateway-{n}")
        for n in (1, 2)
    ]
    draining, staying = gateways
    lb = fn_procs.start("load-balancer", balancer_env([g.url for g in gateways], dashboard_dir(fn_procs.tmp)))
    assert http_request(lb.port, "GET", "/api/posts").status == 200

    stop = threading.Event()
    lock = threading.Lock()
    ok = [0]
    failures: list[tuple[float, str]] = []
    t0 = time.monotonic()

    def load(worker: int) -> None:
        for n in range(100_000):
            if stop.is_set() or time.monotonic() - t0 > 20:  # hard bound
                return
            resp = try_request(lb.port, "GET", f"/api/posts?w={worker}&n={n}", timeout=5)
            with lock:
                if not isinstance(resp, str) and resp.status == 200:
                    ok[0] += 1
                else:
                    failures.append((round(time.monotonic() - t0, 2),
                                     resp if isinstance(resp, str) else f"{resp.status} {resp.body[:150]!r}"))

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(2)]
    for t in threads:
        t.start()
    seen: list[object] = []
    try:
        time.sleep(0.5)
        sent, sent_wall = time.monotonic(), time.time()
        draining.signal(signal.SIGTERM)
        marked_at = None  # seconds from SIGTERM to the /stats snapshot that shows it out
        out_entry = None
        # /stats is a snapshot the load balancer reuses for up to 1 s: the snapshot's own
        # generated_at (taken with the backend report) is what must be within 3 s of SIGTERM.
        while time.monotonic() - sent < 4.5:
            resp = try_request(lb.port, "GET", "/stats", timeout=4)
            if not isinstance(resp, str) and resp.status == 200:
                stats = resp.json()
                entry = backend(stats, draining.url)
                seen.append((stats.get("generated_at"), entry))
                if entry and entry.get("healthy") is False:
                    marked_at, out_entry = _wall(stats.get("generated_at")) - sent_wall, entry
                    break
            else:
                seen.append(resp if isinstance(resp, str) else resp.status)
            time.sleep(0.1)
        assert out_entry is not None, (f"the load balancer did not mark the draining gateway unhealthy within 4.5 s of "
                                       f"SIGTERM: last /stats entries {seen[-3:]}")
        assert marked_at <= 3.0, (f"the load balancer took the draining gateway out only {marked_at:.2f}s after "
                                  f"SIGTERM (generated_at of the /stats snapshot): {seen[-3:]}")
        assert "draining" in str(out_entry.get("last_check_error") or ""), (
            f"marked unhealthy, but last_check_error does not say draining: {out_entry}")
        requests_when_out = out_entry.get("requests")
        time.sleep(1.0)  # the load goes on, all of it to the other gateway
        backends = lb_backends(lb.port)
        later = backend({"backends": backends}, draining.url) if not isinstance(backends, str) else backends
        staying_entry = backend({"backends": backends}, staying.url) if not isinstance(backends, str) else backends
        code = draining.wait_exit(15)
        exited_after = time.monotonic() - sent
        time.sleep(0.5)  # requests after the exit too
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    print(f"draining: marked unhealthy {marked_at:.2f}s after SIGTERM, exited after {exited_after:.2f}s, "
          f"{ok[0]} requests ok, {len(failures)} failed")
    assert isinstance(later, dict) and later.get("requests") == requests_when_out, (
        f"the draining gateway still got requests after the load balancer took it out: {requests_when_out} -> {later}")
    assert isinstance(staying_entry, dict) and staying_entry.get("healthy") is True and staying_entry.get("ejected") is False, (
        f"the other gateway: {staying_entry}")
    assert not failures, f"{len(failures)} requests through the load balancer failed during the drain: {failures[:10]}"
    assert ok[0] >= 20, f"only {ok[0]} requests went through: the load did not run"
    assert code == 0, f"the draining gateway exited with {code}\n{draining.describe()}"
    assert exited_after >= 3.5, f"the gateway exited {exited_after:.2f}s after SIGTERM, before SHUTDOWN_DELAY_SECONDS=4"
    assert_alive(lb, staying)


# --------------------------------------------------------------------------------------------
# 3. a client that never reads
# --------------------------------------------------------------------------------------------

BODY_IDLE = 2.0
NEVER_READ_SLACK = 4.0  # filling the buffers, the guard's timer tick, the poll interval
TINY_RCVBUF = 1024


def _wmem_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def _answers_needed(answer_bytes: int) -> int:
    """Enough pipelined answers to overflow the server's socket send buffer (it grows to
    tcp_wmem's maximum) and then the server's own write buffer, several times over."""
    return max(500, min(10_000, (2 * _wmem_max() + (2 << 20)) // max(1, answer_bytes) + 1))


def _never_read(port: int, data: bytes, *, reasons: tuple[str, ...]) -> dict:
    """Sends data on a socket with a tiny receive buffer and never reads; polls the server's cut
    counters for BODY_IDLE + slack; then checks another client is answered and reads the socket
    (bounded) to see whether the server closed it."""
    before = read_metrics(port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RCVBUF)  # before connect: a small window
    result: dict = {"before": {r: before.get(cut(r), 0.0) for r in reasons}}
    try:
        sock.settimeout(3)
        sock.connect((HOST, port))
        sock.settimeout(0.5)
        sent = 0
        send_deadline = time.monotonic() + 5
        while sent < len(data) and time.monotonic() < send_deadline:
            try:
                sent += sock.send(data[sent:sent + 65536])
            except socket.timeout:
                break  # the server stopped reading: it has enough to answer
            except OSError as error:
                result["send_error"] = repr(error)
                break
        result["sent"] = (sent, len(data))
        start = time.monotonic()
        polls = []
        cut_after = None
        while time.monotonic() - start < BODY_IDLE + NEVER_READ_SLACK:
            values = read_metrics(port)
            counts = {r: values.get(cut(r), 0.0) for r in reasons}
            polls.append((round(time.monotonic() - start, 2), counts, values.get("http_connections_open")))
            if any(counts[r] > result["before"][r] for r in reasons):
                cut_after = time.monotonic() - start
                break
            time.sleep(0.2)
        result["cut_after"] = cut_after
        result["polls"] = polls[-4:]
        other = try_request(port, "GET", "/health/live", timeout=3)
        result["other_client"] = other if isinstance(other, str) else other.status
        # Now read: a cut connection gives its buffered bytes and then EOF (or a reset).
        received, closed = 0, None
        read_deadline = time.monotonic() + 3
        sock.settimeout(0.5)
        while time.monotonic() < read_deadline:
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                closed = "still open"
                break
            except (ConnectionResetError, ConnectionAbortedError):
                closed = "reset"
                break
            if not chunk:
                closed = "eof"
                break
            received += len(chunk)
        result["closed"] = closed or "still sending"
        result["received"] = received
    finally:
        sock.close()
    return result


NEVER_READ_TARGETS = ["blog_pipelined_metrics", "gateway_pipelined_small", "gateway_one_large"]


@pytest.fixture(scope="module")
def never_read(procs):
    """Runs the three never-reading clients at once; {name: observations or exception}."""
    up = ShapedUpstream()
    up.sizes["/api/posts/small"] = 4000
    up.sizes["/api/posts/large"] = 16 << 20
    try:
        timeouts = {"HTTP_BODY_IDLE_TIMEOUT_SECONDS": str(int(BODY_IDLE))}
        blog = procs.start("blog-service", {
            "JWKS_URL": refused_url() + "/.well-known/jwks.json", "REDIS_URL": closed_redis_url(), **timeouts,
        }, label="blog-never-read")
        # One process per case: the cut counters are per process.
        gateway_small = procs.start("api-gateway", gateway_env(up.url, **timeouts), label="gateway-never-read-small")
        gateway_large = procs.start("api-gateway", gateway_env(up.url, **timeouts), label="gateway-never-read-large")
        metrics_size = len(http_request(blog.port, "GET", "/metrics").body) + 200
        plans = {
            "blog_pipelined_metrics": (blog, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * _answers_needed(metrics_size),
                                       ("slow_reader",)),
            "gateway_pipelined_small": (gateway_small, b"GET /api/posts/small HTTP/1.1\r\nHost: x\r\n\r\n"
                                        * _answers_needed(4200), ("slow_reader", "write_timeout")),
            "gateway_one_large": (gateway_large, b"GET /api/posts/large HTTP/1.1\r\nHost: x\r\n\r\n",
                                  ("slow_reader", "write_timeout")),
        }
        results = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans)) as pool:
            futures = {pool.submit(_never_read, svc.port, data, reasons=reasons): name
                       for name, (svc, data, reasons) in plans.items()}
            for future in concurrent.futures.as_completed(futures, timeout=40):
                try:
                    results[futures[future]] = future.result()
                except Exception as error:  # noqa: BLE001 - reported by the test of that case
                    results[futures[future]] = error
        results["_services"] = {"blog": blog, "gateway_small": gateway_small, "gateway_large": gateway_large}
        yield results
    finally:
        up.stop()


@pytest.mark.parametrize("case", NEVER_READ_TARGETS)
def test_client_that_never_reads_is_cut(never_read, case):
    """The pipelined cases stall with every answer the server has begun also ended (the writer
    waits before the next answer's head): the guard's slow-reader deadline only runs while an
    answer is open, so such a connection must still be cut once it has been unwritable for
    HTTP_BODY_IDLE_TIMEOUT_SECONDS."""
    r = never_read[case]
    if isinstance(r, Exception):
        pytest.fail(f"{case}: the client failed: {type(r).__name__}: {r}")
    summary = (f"sent {r.get('sent')}, cut counters before {r['before']}, last polls (s, cuts, open) {r['polls']}, "
               f"then reading: {r['closed']} after {r['received']} bytes")
    assert r["other_client"] == 200, f"{case}: another client's GET /health/live got {r['other_client']}; {summary}"
    assert r["cut_after"] is not None, (
        f"{case}: a client that never reads was not cut within {BODY_IDLE + NEVER_READ_SLACK:.0f}s "
        f"(HTTP_BODY_IDLE_TIMEOUT_SECONDS={BODY_IDLE:.0f}); {summary}")
    assert r["closed"] in ("eof", "reset"), f"{case}: cut counted, but the socket {r['closed']}; {summary}"
    assert_alive(*never_read["_services"].values())


# --------------------------------------------------------------------------------------------
# 4. connection metrics
# --------------------------------------------------------------------------------------------

MAX_CONNECTIONS = 300
HELD = 3


def test_connection_metrics_of_a_fresh_blog_service(fn_procs):
    blog = fn_procs.start("blog-service", {
        "JWKS_URL": refused_url() + "/.well-known/jwks.json", "REDIS_URL": closed_redis_url(),
        "HTTP_HEADER_TIMEOUT_SECONDS": "1", "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    })
    fresh = read_metrics(blog.port)
    assert fresh.get(cut("header_timeout")) == 0 and fresh.get(cut("bad_request")) == 0, (
        f"a fresh blog-service already counts cuts: { {k: v for k, v in fresh.items() if 'cut' in k} }")

    # A silent socket (closed at the header timeout) and a malformed request (refused, closed).
    with RawConnection(blog.port) as silent:
        closed = silent.wait_closed(1 + 2.5)
    assert closed, "a silent socket was not closed within the 1 s header timeout + 2.5 s"
    with RawConnection(blog.port) as bad:
        bad.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n")
        resp = bad.read_response(3)
        bad_closed = bad.wait_closed(3)
    assert resp is not None and resp.status == 400 and bad_closed, f"obs-fold request: {resp}, closed {bad_closed}"
    with RawConnection(blog.port) as garbage:
        garbage.send(b"\x16\x03\x01 not http at all\r\n\r\n")
        garbage_closed = garbage.wait_closed(3)
    assert garbage_closed, f"a request that is not HTTP left the connection open: {garbage.buf[:200]!r}"

    values: dict[str, float] = {}

    def counted() -> bool:
        values.update(read_metrics(blog.port))
        return values.get(cut("header_timeout"), 0) >= 1 and values.get(cut("bad_request"), 0) >= 2

    assert wait_until(counted, timeout=3, interval=0.1), (
        f"cuts after one silent socket and two malformed requests: "
        f"{ {k: v for k, v in values.items() if 'connections' in k} }")
    assert values.get("http_connections_max") == MAX_CONNECTIONS, (
        f"http_connections_max {values.get('http_connections_max')} != HTTP_MAX_CONNECTIONS={MAX_CONNECTIONS}")

    # Sockets held open (each answered once, kept alive) are counted in http_connections_open.
    held = []
    try:
        for _ in range(HELD):
            conn = RawConnection(blog.port)
            held.append(conn)
            conn.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            r = conn.read_response(3)
            assert r is not None and r.status == 200, f"keep-alive GET /health/live: {r}"
        open_now = read_metrics(blog.port).get("http_connections_open")
    finally:
        for conn in held:
            conn.close()
    assert isinstance(open_now, float), f"http_connections_open missing: {open_now}"
    assert open_now >= HELD + 1, (f"http_connections_open is {open_now} with {HELD} keep-alive sockets held plus the "
                                  f"/metrics request itself")
    # And it drops once they are closed (the /metrics connection itself is the one left).
    last = [None]

    def dropped() -> bool:
        last[0] = read_metrics(blog.port).get("http_connections_open")
        return last[0] is not None and last[0] <= 1

    assert wait_until(dropped, timeout=3, interval=0.1), f"http_connections_open stays {last[0]} after closing them"
    assert_alive(blog)
