"""The load balancer shows 429s apart: a rate-limited answer is neither a success nor a failure.

load balancer → api-gateway (RATE_LIMIT_LOGIN=1/60, a real redis-server) → the counting upstream
(which answers the login that passes 200). Four logins for one username: the first reaches the
upstream, the other three are the gateway's 429, passed back through the load balancer. The load
balancer's /stats then has ``rate_limited_per_second`` > 0 and ``success_rate`` 1.0.
"""

import pytest

from conftest import (balancer_env, dashboard_dir, gateway_env, get_stats, json_request, rate_limited_problem,
                      refused_url)


@pytest.fixture(scope="module")
def chain(procs, upstream):
    redis_port = procs.start_redis()
    gateway = procs.start("api-gateway", gateway_env(
        upstream.url, REDIS_URL=f"redis://127.0.0.1:{redis_port}", RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_LOGIN="1/60", JWKS_URL=refused_url() + "/.well-known/jwks.json",
    ), label="gateway")
    balancer = procs.start("load-balancer", balancer_env([gateway.url], dashboard_dir(procs.tmp)), label="lb")
    return {"lb": balancer, "gateway": gateway}


def test_429_is_shown_apart_from_failures(chain, upstream):
    lb = chain["lb"].port
    answers = [json_request(lb, "POST", "/api/auth/login", {"username": "dave", "password": "pw"}) for _ in range(4)]
    statuses = [a.status for a in answers]
    assert statuses == [200, 429, 429, 429], f"4 logins for dave through the LB: {answers}"
    problems = [p for a in answers[1:] if (p := rate_limited_problem(a))]
    assert not problems, f"the 429s through the LB: {problems}"
    logins = [r for r in upstream.requests() if r.target == "/api/auth/login"]
    assert len(logins) == 1, f"upstream saw {len(logins)} logins"
    stats = get_stats(lb)
    assert stats.get("rate_limited_per_second", 0) > 0, f"LB /stats after three 429s: {stats}"
    assert stats.get("success_rate") == 1.0, f"LB counts 429 as a failure: success_rate={stats.get('success_rate')}"
    assert stats.get("requests_total", 0) >= 4, f"LB /stats requests_total: {stats.get('requests_total')}"


def test_spellings_through_the_lb_are_limited_too(chain, upstream):
    """The load balancer canonicalises as well: what it forwards is the canonical path, and the
    gateway limits it."""
    lb = chain["lb"].port
    before = len(upstream.requests())
    first = json_request(lb, "POST", "//api/auth/%6cogin/", {"username": "frank", "password": "pw"})
    second = json_request(lb, "POST", "/api//auth/login", {"username": "frank", "password": "pw"})
    seen = [r.target for r in upstream.requests()[before:]]
    assert first.status == 200, f"first login for frank via //api/auth/%6cogin/: {first}"
    assert not rate_limited_problem(second), f"second login for frank: {rate_limited_problem(second)}"
    assert seen == ["/api/auth/login"], f"upstream saw {seen}"
