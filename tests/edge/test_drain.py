"""SIGTERM drain of the two proxies, and a rolling restart under load.

What it proves:

* (a, b) with SHUTDOWN_DELAY_SECONDS=0, 20 requests in flight through the load balancer (in front
  of a counting upstream posing as a gateway: it answers /health/ready 200 at once and delays
  /api/slow by 1 s) or through api-gateway (the counting upstream as every service, delaying
  /api/posts/slow) when SIGTERM arrives - every one of them sent and received by the upstream
  first - all get 200, and the process exits with status 0 within 10 s;
* (c) with SHUTDOWN_DELAY_SECONDS=2, right after SIGTERM /health/ready answers 503 with "draining"
  in its body while GET /api/... still answers 200, the process keeps running for the delay, and
  then exits 0;
* (d) a rolling restart loses nothing: one load balancer in front of two gateways (fixed ports),
  4 threads of sequential GET /api/posts; each gateway in turn gets SIGTERM
  (SHUTDOWN_DELAY_SECONDS=3), exits 0, is started again on its port and seen healthy by the load
  balancer (/stats backends) before the next; every request of the load got 200.
"""

import signal
import threading
import time

import pytest

from conftest import (RawConnection, balancer_env, dashboard_dir, free_port, gateway_env, http_request,
                      try_request, wait_until)

IN_FLIGHT = 20


def _start_proxy(procs, kind: str, upstream_url: str, **extra: str):
    if kind == "lb":
        return procs.start("load-balancer", balancer_env([upstream_url], dashboard_dir(procs.tmp), **extra))
    return procs.start("api-gateway", gateway_env(upstream_url, **extra))


SLOW_PATH = {"lb": "/api/slow", "gateway": "/api/posts/slow"}


@pytest.mark.parametrize("kind", ["lb", "gateway"])
def test_sigterm_answers_every_request_in_flight(fn_procs, fn_upstream, kind):
    up = fn_upstream
    slow = SLOW_PATH[kind]
    up.delays[slow] = 1.0
    proxy = _start_proxy(fn_procs, kind, up.url, SHUTDOWN_DELAY_SECONDS="0", SHUTDOWN_GRACE_SECONDS="25")
    # Warm-up: the path works (and, for the LB, the upstream is a usable backend).
    assert http_request(proxy.port, "GET", "/api/posts/warm" if kind == "gateway" else "/api/warm").status == 200
    up.reset()

    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            with RawConnection(proxy.port) as conn:
                conn.send(f"GET {slow}?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # keep-alive
                resp = conn.read_response(12)
                results[i] = resp if resp is not None else "closed without an answer"
        except Exception as error:  # noqa: BLE001 - reported below
            results[i] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    try:
        arrived = up.wait_for(lambda rs: sum(r.path == slow for r in rs) >= IN_FLIGHT, timeout=8)
        assert arrived, f"only {up.count} of {IN_FLIGHT} requests reached the upstream before SIGTERM"
        sent_at = time.monotonic()
        proxy.signal(signal.SIGTERM)
        code = proxy.wait_exit(10)
        took = time.monotonic() - sent_at
    finally:
        for t in threads:
            t.join(15)
    bad = {i: r for i, r in sorted(results.items()) if isinstance(r, str) or r.status != 200}
    missing = [i for i in range(IN_FLIGHT) if i not in results]
    assert not bad and not missing, (f"{kind}: {len(bad)} of {IN_FLIGHT} in-flight requests failed after SIGTERM: "
                                     f"{bad}; no result: {missing}\n{proxy.describe()}")
    assert code is not None, f"{kind} did not exit within 10 s of SIGTERM (killed)\n{proxy.describe()}"
    assert code == 0, f"{kind} exited with {code} after SIGTERM ({took:.2f}s)\n{proxy.describe()}"


@pytest.mark.parametrize("kind", ["lb", "gateway"])
def test_shutdown_delay_reports_draining_and_keeps_serving(fn_procs, fn_upstream, kind):
    up = fn_upstream
    api = "/api/posts" if kind == "gateway" else "/api/anything"
    proxy = _start_proxy(fn_procs, kind, up.url, SHUTDOWN_DELAY_SECONDS="2", SHUTDOWN_GRACE_SECONDS="25")
    assert http_request(proxy.port, "GET", api).status == 200
    ready = http_request(proxy.port, "GET", "/health/ready")
    assert ready.status == 200, f"{kind} not ready before SIGTERM: {ready}"

    sent_at = time.monotonic()
    proxy.signal(signal.SIGTERM)
    seen = []

    def draining() -> bool:
        resp = try_request(proxy.port, "GET", "/health/ready", timeout=1)
        seen.append(resp if isinstance(resp, str) else (resp.status, resp.body[:200]))
        return not isinstance(resp, str) and resp.status == 503 and b"draining" in resp.body

    became_draining = wait_until(draining, timeout=0.5, interval=0.05)
    api_resp = try_request(proxy.port, "GET", api, timeout=3)
    api_after = time.monotonic() - sent_at
    time.sleep(max(0.0, 1.4 - (time.monotonic() - sent_at)))
    alive_in_delay = proxy.alive()
    code = proxy.wait_exit(15)
    exited_after = time.monotonic() - sent_at

    assert became_draining, (f"{kind}: /health/ready did not answer 503 'draining' within 0.5 s of SIGTERM: "
                             f"{seen[-3:]}\n{proxy.describe()}")
    assert not isinstance(api_resp, str) and api_resp.status == 200, (
        f"{kind}: GET {api} {api_after:.2f}s after SIGTERM (delay 2 s) answered {api_resp}")
    assert alive_in_delay, f"{kind} exited within 1.4 s of SIGTERM despite SHUTDOWN_DELAY_SECONDS=2\n{proxy.describe()}"
    assert code is not None, f"{kind} did not exit within 15 s of SIGTERM\n{proxy.describe()}"
    assert code == 0, f"{kind} exited with {code}\n{proxy.describe()}"
    assert exited_after >= 1.8, f"{kind} exited {exited_after:.2f}s after SIGTERM, before the 2 s delay"


def _lb_sees_healthy(lb_port: int, url: str, timeout: float) -> tuple[bool, object]:
    last: list[object] = [None]

    def check() -> bool:
        resp = try_request(lb_port, "GET", "/stats", timeout=4)
        if isinstance(resp, str) or resp.status != 200:
            last[0] = resp
            return False
        backends = resp.json().get("backends") or []
        entry = next((b for b in backends if b.get("url", "").rstrip("/") == url), None)
        last[0] = entry if entry is not None else backends
        return bool(entry and entry.get("healthy") and not entry.get("ejected") and not entry.get("last_check_error"))

    return wait_until(check, timeout=timeout, interval=0.5), last[0]


def test_rolling_restart_loses_no_request(fn_procs, fn_upstream):
    up = fn_upstream
    ports = [free_port(), free_port()]
    gateways = [
        fn_procs.start("api-gateway", gateway_env(up.url, SHUTDOWN_DELAY_SECONDS="3", SHUTDOWN_GRACE_SECONDS="25"),
                       port=port, label=f"gateway-{n}")
        for n, port in enumerate(ports, 1)
    ]
    lb = fn_procs.start("load-balancer", balancer_env([g.url for g in gateways], dashboard_dir(fn_procs.tmp)))
    assert http_request(lb.port, "GET", "/api/posts").status == 200

    stop = threading.Event()
    lock = threading.Lock()
    ok = [0]
    failures: list[tuple[float, int, str]] = []
    t0 = time.monotonic()

    def load(worker: int) -> None:
        for n in range(100_000):
            if stop.is_set() or time.monotonic() - t0 > 40:  # hard bound
                return
            resp = try_request(lb.port, "GET", f"/api/posts?w={worker}&n={n}", timeout=6)
            good = not isinstance(resp, str) and resp.status == 200
            with lock:
                if good:
                    ok[0] += 1
                else:
                    desc = resp if isinstance(resp, str) else f"{resp.status} {resp.body[:150]!r}"
                    failures.append((round(time.monotonic() - t0, 2), worker, desc))

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    events = []
    try:
        time.sleep(1.5)
        for gateway in gateways:
            sent = time.monotonic()
            gateway.signal(signal.SIGTERM)
            code = gateway.wait_exit(20)
            events.append(f"{gateway.label}: SIGTERM at {sent - t0:.1f}s, exit {code} after {time.monotonic() - sent:.1f}s")
            assert code == 0, f"{gateway.label} exited with {code} after SIGTERM\n{gateway.describe()}"
            gateway.restart()
            time.sleep(2.2)  # at least one health check of the new process
            healthy, last = _lb_sees_healthy(lb.port, gateway.url, timeout=8)
            events.append(f"{gateway.label}: restarted, LB sees it healthy: {healthy} ({last}) at {time.monotonic() - t0:.1f}s")
            assert lb.alive(), f"the load balancer died during the rolling restart\n{lb.describe()}"
            assert healthy, f"the load balancer did not see restarted {gateway.label} healthy within 8 s: {last}"
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    total = ok[0] + len(failures)
    print(f"rolling restart: {ok[0]} ok, {len(failures)} failed in {time.monotonic() - t0:.1f}s\n" + "\n".join(events))
    assert lb.alive(), f"the load balancer died during the rolling restart\n{lb.describe()}"
    assert not failures, (f"{len(failures)} of {total} requests failed during the rolling restart:\n"
                          + "\n".join(map(str, failures[:15])) + "\n" + "\n".join(events))
    assert ok[0] >= 40, f"only {ok[0]} requests in {time.monotonic() - t0:.1f}s: the load did not run"
    assert lb.alive()
