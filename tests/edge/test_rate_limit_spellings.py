"""The api-gateway's rate limits hold for every spelling of a limited route.

A gateway with a real redis-server in front of the counting upstream (a request that passes is
answered 200 by the upstream, a limited one 429 by the gateway). Requests go over raw sockets, so
the target reaches the gateway exactly as written: no client library drops ``//`` or decodes
``%6c``. The gateway canonicalises the path before routing and rate limiting, so:

* (a) after 5 logins for ``alice`` (RATE_LIMIT_LOGIN=5/60) every other spelling of
  ``POST /api/auth/login`` for ``alice`` is 429; ``.``/``..`` segments (also ``%2e``) are 400;
* (b) after 3 registrations (RATE_LIMIT_REGISTER=3/60, per address) every spelling of
  ``POST /api/users`` is 429;
* (c) after 2 post writes without a token (RATE_LIMIT_POST_WRITES=2/60, the address stands in
  for the missing subject) POST/PATCH/DELETE under any spelling of ``/api/posts`` is 429;
* in all of them the upstream only ever saw the canonical path;
* (d) with TRUSTED_PROXIES=127.0.0.1/32 the per-username login limit counts across client
  addresses (X-Forwarded-For), and another username from the same address is not limited;
* (e) the gateway's /stats shows the 429s as ``rate_limited_per_second`` > 0, not as errors.
"""

import pytest

from conftest import (gateway_env, get_stats, json_request, rate_limited_problem, refused_url)

LOGIN_SPELLINGS = ["/api/auth/login/", "/api/auth//login", "//api/auth/login", "/api/auth/%6cogin",
                   "/api//auth/login/", "/api/auth/%6Cogin", "/api/auth/login?next=/"]
LOGIN_DOT_SPELLINGS = ["/api/auth/./login", "/api/auth/%2e%2e/auth/login"]
REGISTER_SPELLINGS = ["/api/users/", "//api/users", "/api//users", "/api/%75sers", "/api/users//"]
REGISTER_DOT_SPELLINGS = ["/api/./users", "/api/users/%2e"]
POST_WRITE_SPELLINGS = [("POST", "/api/posts/"), ("POST", "//api/posts"), ("PATCH", "/api/posts//1"),
                        ("DELETE", "/api/posts/1/"), ("PATCH", "/api/%70osts/1")]


@pytest.fixture(scope="module")
def redis_url(procs):
    return f"redis://127.0.0.1:{procs.start_redis()}"


@pytest.fixture(scope="module")
def gateway(procs, upstream, redis_url):
    return procs.start("api-gateway", gateway_env(
        upstream.url, REDIS_URL=redis_url, RATE_LIMIT_ENABLED="true", RATE_LIMIT_LOGIN="5/60",
        RATE_LIMIT_LOGIN_IP="100/60", RATE_LIMIT_REGISTER="3/60", RATE_LIMIT_POST_WRITES="2/60",
        JWKS_URL=refused_url() + "/.well-known/jwks.json",
    ), label="gateway-limits")


@pytest.fixture(scope="module")
def proxied_gateway(procs, upstream, redis_url):
    return procs.start("api-gateway", gateway_env(
        upstream.url, REDIS_URL=redis_url, RATE_LIMIT_ENABLED="true", RATE_LIMIT_LOGIN="5/60",
        TRUSTED_PROXIES="127.0.0.1/32", JWKS_URL=refused_url() + "/.well-known/jwks.json",
    ), label="gateway-proxied")


def api_paths(upstream, method=None):
    """(method, target) of every /api request the upstream saw."""
    return [(r.method, r.target) for r in upstream.requests()
            if r.target.startswith("/api") and (method is None or r.method == method)]


def login(port, target, username, *, headers=None):
    return json_request(port, "POST", target, {"username": username, "password": "wrong password"}, headers=headers)


def test_a_login_limit_holds_for_every_spelling(gateway, upstream):
    before = [p for p in api_paths(upstream) if "auth" in p[1]]
    for i in range(5):
        resp = login(gateway.port, "/api/auth/login", "alice")
        assert resp.status == 200, f"login {i + 1} of 5 for alice should pass to the upstream: {resp}"
    problems = {}
    for target in LOGIN_SPELLINGS:
        resp = login(gateway.port, target, "alice")
        if problem := rate_limited_problem(resp):
            problems[target] = problem
    for target in LOGIN_DOT_SPELLINGS:
        resp = login(gateway.port, target, "alice")
        if resp.status != 400 or resp.error_shape_problem():
            problems[target] = f"expected the 400 JSON error, got {resp}"
    seen = [p for p in api_paths(upstream) if "auth" in p[1]][len(before):]
    assert not problems, f"login spellings not limited/refused: {problems}\nupstream saw {seen}"
    assert seen == [("POST", "/api/auth/login")] * 5, f"upstream saw other login requests than 5 canonical: {seen}"


def test_b_register_limit_holds_for_every_spelling(gateway, upstream):
    before = len(api_paths(upstream))
    for i in range(3):
        resp = json_request(gateway.port, "POST", "/api/users",
                            {"username": f"reg{i}", "email": f"reg{i}@example.com", "password": "password"})
        assert resp.status == 200, f"registration {i + 1} of 3 should pass to the upstream: {resp}"
    problems = {}
    for i, target in enumerate(REGISTER_SPELLINGS):
        resp = json_request(gateway.port, "POST", target,
                            {"username": f"more{i}", "email": f"more{i}@example.com", "password": "password"})
        if problem := rate_limited_problem(resp):
            problems[target] = problem
    for target in REGISTER_DOT_SPELLINGS:
        resp = json_request(gateway.port, "POST", target, {"username": "dot", "email": "d@example.com", "password": "p"})
        if resp.status != 400 or resp.error_shape_problem():
            problems[target] = f"expected the 400 JSON error, got {resp}"
    seen = api_paths(upstream)[before:]
    assert not problems, f"register spellings not limited/refused: {problems}\nupstream saw {seen}"
    assert seen == [("POST", "/api/users")] * 3, f"upstream saw: {seen}"


def test_c_post_write_limit_without_token_holds_for_every_spelling(gateway, upstream):
    before = len(api_paths(upstream))
    for i in range(2):
        resp = json_request(gateway.port, "POST", "/api/posts", {"title": f"t{i}", "body": "b"})
        assert resp.status == 200, f"post write {i + 1} of 2 should pass to the upstream: {resp}"
    problems = {}
    for method, target in POST_WRITE_SPELLINGS:
        resp = json_request(gateway.port, method, target, None if method == "DELETE" else {"title": "x"})
        if problem := rate_limited_problem(resp):
            problems[f"{method} {target}"] = problem
    # Reads are not limited (and are passed on, canonical).
    read = json_request(gateway.port, "GET", "/api//posts/")
    seen = api_paths(upstream)[before:]
    assert not problems, f"post-write spellings not limited: {problems}\nupstream saw {seen}"
    assert read.status == 200, f"GET /api//posts/ after the write limit: {read}"
    assert seen == [("POST", "/api/posts")] * 2 + [("GET", "/api/posts")], f"upstream saw: {seen}"


def test_d_login_limit_per_username_across_forwarded_addresses(proxied_gateway, upstream):
    port = proxied_gateway.port
    statuses = []
    for xff in ["198.51.100.1"] * 3 + ["198.51.100.2"] * 2:
        statuses.append(login(port, "/api/auth/login", "bob", headers={"X-Forwarded-For": xff}).status)
    assert statuses == [200] * 5, f"the first 5 logins for bob (3 from .1, 2 from .2): {statuses}"
    sixth = login(port, "/api/auth/login", "bob", headers={"X-Forwarded-For": "198.51.100.2"})
    assert not rate_limited_problem(sixth), f"6th login for bob from another address: {rate_limited_problem(sixth)}"
    other = login(port, "/api/auth/login", "carol", headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status == 200, f"carol from 198.51.100.2 was limited by bob's logins: {other}"


def test_e_gateway_stats_show_rate_limited(gateway):
    # Self-sufficient: one more limited request now, inside the 10 s window.
    for _ in range(5):
        login(gateway.port, "/api/auth/login", "erin")
    assert not rate_limited_problem(login(gateway.port, "/api/auth/login/", "erin"))
    stats = get_stats(gateway.port)
    assert "rate_limited_per_second" in stats, f"gateway /stats has no rate_limited_per_second: {stats}"
    assert stats["rate_limited_per_second"] > 0, f"gateway /stats after 429s: {stats}"
    assert stats.get("error_rate", 0) == 0, f"429s counted as errors by the gateway: {stats}"
