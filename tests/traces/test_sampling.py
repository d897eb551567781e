"""Sampling that keeps what matters: TRACE_SAMPLE_RATIO=0.1 on load balancer → api-gateway →
blog-service.

* 2,000 requests without a ``traceparent``: the load balancer (the edge) samples 200 ± 60 of
  them; each sampled trace is complete (a row at all three hops, linked parent to child) and
  nothing of an unsampled one is recorded anywhere; the sampled flag each client got back says
  which. Access lines and ``http_requests_total`` still count every request.
* Slow requests (a 600 ms fault at blog-service, TRACE_KEEP_SLOWER_THAN_MS at its default 500)
  and 5xx answers (a 503 fault at blog-service) are every one recorded, at every hop, sampled
  or not.
"""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge_harness import (assert_alive, balancer_env, closed_redis_url, dashboard_dir, gateway_env, http_request,
                          json_request, refused_url, wait_until)

RATIO = 0.1
PLAIN, SLOW, FAILED = 2000, 40, 40
HOPS = ("lb", "gateway", "blog")
KEEP_SLOWER_THAN_US = 500_000  # TRACE_KEEP_SLOWER_THAN_MS's default


@pytest.fixture(scope="module")
def chain(procs):
    env = {"TRACE_SAMPLE_RATIO": str(RATIO), "TRACE_FLUSH_INTERVAL": "200ms", "HTTP_CLIENT_READ_TIMEOUT_MS": "3000"}
    blog = procs.start("blog-service", {
        "JWKS_URL": refused_url() + "/.well-known/jwks.json", "REDIS_URL": closed_redis_url(), **env,
    }, label="blog")
    gateway = procs.start("api-gateway", {**gateway_env(refused_url(), BLOG_SERVICE_URL=blog.url), **env}, label="gateway")
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp), **env), label="lb")
    return {"lb": balancer, "gateway": gateway, "blog": blog}


def send(port, paths, workers=8):
    """(path, status, trace id, sampled flag) of each request, sent by `workers` threads."""
    def one(path):
        response = http_request(port, "GET", path, timeout=10)
        _, trace_id, _, flags = (response.header("traceparent") or "---").split("-")
        return path, response.status, trace_id, flags == "01"
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


def set_fault(service, body):
    response = json_request(service.port, "PUT", "/admin/faults", body)
    assert response.status == 200, f"PUT /admin/faults on {service.label}: {response.status} {response.body[:300]!r}"


def rows_since(service, since_ms):
    response = http_request(service.port, "GET", f"/traces?since={since_ms}&limit=1000")
    assert response.status == 200, response.body[:300]
    return json.loads(response.body)["steps"]


def counter(service, pattern) -> float:
    body = http_request(service.port, "GET", "/metrics").body.decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern} (\S+)$", body, re.M))


def test_the_edge_samples_the_ratio_and_every_hop_follows_while_5xx_and_slow_are_kept(chain):
    lb = chain["lb"]
    since = int(time.time() * 1000) - 1000
    requests_before = counter(lb, r'http_requests_total\{[^}]*route="/api/\*\*"[^}]*\}')

    plain = send(lb.port, ["/api/posts"] * PLAIN)
    assert all(status == 200 for _, status, _, _ in plain), {s for _, s, _, _ in plain}

    set_fault(chain["blog"], {"latency_ms": 600, "routes": ["/api/posts/1*"], "duration_s": 120})
    slow = send(lb.port, [f"/api/posts/1{n:04d}" for n in range(SLOW)], workers=10)
    set_fault(chain["blog"], {"error_rate": 1, "error_status": 503, "routes": ["/api/posts/2*"], "duration_s": 120})
    failed = send(lb.port, [f"/api/posts/2{n:04d}" for n in range(FAILED)], workers=4)
    assert all(status == 503 for _, status, _, _ in failed), [s for _, s, _, _ in failed]
    json_request(chain["blog"].port, "DELETE", "/admin/faults")

    # Every row the three stores will hold, once their writers have flushed.
    expected_lb_rows = sum(1 for _, _, _, sampled in plain if sampled) + SLOW + FAILED
    rows = {}
    def collected():
        for hop in HOPS:
            rows[hop] = rows_since(chain[hop], since)
        return len(rows["lb"]) >= expected_lb_rows
    wait_until(collected, timeout=10, interval=0.3)
    time.sleep(0.5)
    collected()
    by_trace = {hop: {} for hop in HOPS}
    for hop in HOPS:
        for row in rows[hop]:
            by_trace[hop].setdefault(row["trace_id"], []).append(row)

    sampled = [r for r in plain if r[3]]
    unsampled = [r for r in plain if not r[3]]
    print(f"{len(sampled)} of {PLAIN} plain requests sampled at ratio {RATIO}")
    assert 200 - 60 <= len(sampled) <= 200 + 60, f"{len(sampled)} of {PLAIN} traces sampled at {RATIO}"

    def chain_problem(trace_id, hops=HOPS):
        found = {hop: by_trace[hop].get(trace_id, []) for hop in hops}
        if any(len(found[hop]) != 1 for hop in hops):
            return f"{trace_id}: rows per hop {[(hop, len(found[hop])) for hop in hops]}"
        links = [found[hop][0] for hop in hops]
        if links[0].get("parent_span_id") is not None:
            return f"{trace_id}: the edge's row has a parent"
        for parent, child in zip(links, links[1:]):
            if child.get("parent_span_id") != parent["span_id"]:
                return f"{trace_id}: {child['service']} is not the child of {parent['service']}"
        return None

    problems = [p for p in (chain_problem(t) for _, _, t, _ in sampled) if p]
    assert not problems, f"{len(problems)} sampled traces incomplete, e.g. {problems[:5]}"
    # An unsampled request leaves a row only where it was slow (a busy machine can make a plain
    # request take 500 ms): each such row must say so.
    unkept = [row for _, _, t, _ in unsampled for hop in HOPS for row in by_trace[hop].get(t, [])
              if row["status_code"] < 500 and row["latency_us"] < KEEP_SLOWER_THAN_US]
    assert not unkept, f"{len(unkept)} rows of unsampled fast 200s were recorded, e.g. {unkept[:3]}"
    kept_slow = {t for _, _, t, _ in unsampled if t in by_trace["lb"]}
    if kept_slow:
        print(f"{len(kept_slow)} unsampled plain requests kept for taking 500 ms or more")

    # Slow: all three hops were slow, so all three kept it. 5xx: blog-service answered 503 and
    # both proxies relayed it; each keeps its row (blog-service's, unless the gateway stopped
    # sending to it: it is checked where present).
    problems = [p for p in (chain_problem(t) for _, _, t, _ in slow) if p]
    assert not problems, f"slow requests not kept at every hop: {problems[:5]}"
    problems = [p for p in (chain_problem(t, ("lb", "gateway")) for _, _, t, _ in failed) if p]
    assert not problems, f"5xx answers not kept at the proxies: {problems[:5]}"
    kept_at_blog = sum(1 for _, _, t, _ in failed if t in by_trace["blog"])
    print(f"slow kept: {SLOW} of {SLOW}; 5xx kept: {FAILED} of {FAILED} (blog-service's own row for {kept_at_blog})")
    assert all(row["status_code"] == 503 for _, _, t, _ in failed for hop in HOPS for row in by_trace[hop].get(t, []))

    # Counting is not sampled: access lines, http_requests_total, and the unsampled counter.
    total = PLAIN + SLOW + FAILED
    lines = [o for o in lb.log_objects() if o.get("message") == "request" and str(o.get("path", "")).startswith("/api/posts")]
    assert len(lines) == total, f"{len(lines)} access lines for {total} requests"
    counted = counter(lb, r'http_requests_total\{[^}]*route="/api/\*\*"[^}]*\}') - requests_before
    assert counted == total, f"http_requests_total counted {counted} of {total}"
    assert counter(lb, "trace_records_unsampled_total") == len(unsampled) - len(kept_slow)
    assert_alive(*chain.values())
