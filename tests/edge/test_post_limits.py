"""blog-service's limits are in bytes as well as characters, and its post-list page cache is
bounded in bytes.

Real user-service (BCRYPT_COST=4, a real redis-server), auth-service and blog-service, called
directly: a user is registered with user-service, logs in with auth-service, and writes posts
to blog-service with that token.

* title: 1–200 characters and at most 800 bytes. 150 characters of "a" + 5 × U+0301 (11 bytes
  each, 1650 bytes) → 422 ``fields.title``; exactly 200 plain characters → 201.
* body: 1–20000 characters and at most 80000 bytes. 20000 × "é" (40000 bytes) → 201;
  19000 characters of "a" + 4 × U+0301 (171000 bytes) → 422 ``fields.body``.
* page cache: a blog-service of its own with POST_PAGE_CACHE_BYTES=20000 and 30 posts of ~1 KB;
  ``GET /api/posts?limit=10&offset=N`` for N in 0..29 are all 200 (with the right posts), and
  ``details.page_cache_bytes`` of /stats stays within 0 < bytes ≤ 20000.
"""

import pytest

from conftest import free_port, get_stats, json_request

COMBINING = "\u0301"
CACHE_BUDGET = 20000


@pytest.fixture(scope="module")
def chain(procs):
    redis_port = procs.start_redis()
    auth_port = free_port()
    jwks = f"http://127.0.0.1:{auth_port}/.well-known/jwks.json"
    users = procs.start("user-service", {
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}", "BCRYPT_COST": "4", "JWKS_URL": jwks,
    }, label="users")
    auth = procs.start("auth-service", {"USER_SERVICE_URL": users.url}, port=auth_port, label="auth")
    blog = procs.start("blog-service", {"JWKS_URL": jwks, "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
                                        "USER_SERVICE_URL": users.url}, label="blog")
    created = json_request(users.port, "POST", "/api/users",
                           {"username": "limits", "email": "limits@example.com", "password": "limits password"})
    assert created.status == 201, f"register: {created}"
    login = json_request(auth.port, "POST", "/api/auth/login", {"username": "limits", "password": "limits password"})
    assert login.status == 200, f"login: {login}"
    token = login.json()["access_token"]
    return {"users": users, "auth": auth, "blog": blog, "jwks": jwks, "token": token,
            "redis": f"redis://127.0.0.1:{redis_port}"}


def write(port, token, title, body):
    return json_request(port, "POST", "/api/posts", {"title": title, "body": body},
                        headers={"Authorization": f"Bearer {token}"}, timeout=15)


def validation_fields(resp):
    assert resp.status == 422, f"expected 422, got {resp}"
    error = resp.json()["error"]
    assert error["code"] == "validation_failed", error
    return error.get("fields") or {}


def test_title_of_150_combined_characters_is_too_many_bytes(chain):
    title = ("a" + COMBINING * 5) * 150
    assert len(title.encode("utf-8")) == 1650
    fields = validation_fields(write(chain["blog"].port, chain["token"], title, "body"))
    assert "title" in fields and "body" not in fields, f"fields: {fields}"
    assert "byte" in fields["title"], f"fields.title does not name the byte limit: {fields['title']!r}"


def test_title_of_200_plain_characters_is_accepted(chain):
    title = "T" * 200
    resp = write(chain["blog"].port, chain["token"], title, "body")
    assert resp.status == 201, f"title of 200 characters: {resp}"
    assert resp.json()["title"] == title


def test_title_of_201_plain_characters_is_refused(chain):
    fields = validation_fields(write(chain["blog"].port, chain["token"], "T" * 201, "body"))
    assert "title" in fields, fields


def test_body_of_20000_two_byte_characters_is_accepted(chain):
    body = "é" * 20000
    assert len(body.encode("utf-8")) == 40000
    resp = write(chain["blog"].port, chain["token"], "two-byte body", body)
    assert resp.status == 201, f"body of 20000 × é: {resp}"
    post = json_request(chain["blog"].port, "GET", f"/api/posts/{resp.json()['id']}", timeout=10)
    assert post.status == 200 and post.json()["body"] == body, f"stored body differs: {post.status}"


def test_body_of_19000_combined_characters_is_too_many_bytes(chain):
    body = ("a" + COMBINING * 4) * 19000
    assert len(body.encode("utf-8")) == 171000
    fields = validation_fields(write(chain["blog"].port, chain["token"], "combined body", body))
    assert "body" in fields and "title" not in fields, f"fields: {fields}"
    assert "byte" in fields["body"], f"fields.body does not name the byte limit: {fields['body']!r}"


def test_page_cache_stays_within_its_byte_budget(procs, chain):
    blog = procs.start("blog-service", {"JWKS_URL": chain["jwks"], "REDIS_URL": chain["redis"],
                                        "USER_SERVICE_URL": chain["users"].url, "POST_PAGE_CACHE_BYTES": str(CACHE_BUDGET)},
                       label="blog-cache")
    for i in range(30):
        resp = write(blog.port, chain["token"], f"post {i:02d}", f"{i:02d} " + "x" * 1000)
        assert resp.status == 201, f"seeding post {i}: {resp}"
    bad_pages, sizes = {}, []
    for offset in range(30):
        resp = json_request(blog.port, "GET", f"/api/posts?limit=10&offset={offset}", timeout=10)
        if resp.status != 200:
            bad_pages[offset] = repr(resp)
        else:
            page = resp.json()
            if page.get("total") != 30 or len(page.get("posts", [])) != min(10, 30 - offset):
                bad_pages[offset] = f"total {page.get('total')}, {len(page.get('posts', []))} posts"
        sizes.append(get_stats(blog.port).get("details", {}).get("page_cache_bytes"))
    assert not bad_pages, f"pages not answered right: {bad_pages}"
    assert all(isinstance(s, (int, float)) for s in sizes), f"details.page_cache_bytes missing: {sizes}"
    assert max(sizes) <= CACHE_BUDGET, f"page cache held more than {CACHE_BUDGET} bytes: {sizes}"
    assert sizes[-1] > 0, f"page cache empty after 30 page reads: {sizes}"
    # The same page again comes from the cache unchanged.
    again = [json_request(blog.port, "GET", "/api/posts?limit=10&offset=29").body for _ in range(2)]
    assert again[0] == again[1]
    assert get_stats(blog.port)["details"]["page_cache_bytes"] <= CACHE_BUDGET
