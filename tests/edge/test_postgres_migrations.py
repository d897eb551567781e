"""Replicas starting together on one empty PostgreSQL database, as a Kubernetes rollout or
``docker-compose --profile postgres up`` starts them: two user-service and two blog-service
processes, launched at the same moment.

Each one migrates under an advisory lock (Shared/TitaniumPostgres/PostgresMigration.swift), so
every process must come up, each migration must be applied exactly once, and every process must
then serve the same data: a user registered through one replica conflicts with the same name
through the other (409), and a post list read through either blog-service is the same.
"""

from __future__ import annotations

from conftest import Service, closed_redis_url, json_request, psql


def test_replicas_starting_together_migrate_once_and_share_the_data(postgres, fn_procs):
    psql(postgres, "CREATE DATABASE titanium")
    url = postgres.rsplit("/", 1)[0] + "/titanium"
    common = {"DATABASE_URL": url, "REDIS_URL": closed_redis_url(), "BCRYPT_COST": "4", "SHUTDOWN_DELAY_SECONDS": "0"}
    services = [Service(name, {**common, "DATA_DIR": str(fn_procs.tmp / f"{name}-{i}")}, label=f"{name}-{i}")
                for name in ("user-service", "blog-service") for i in (1, 2)]
    fn_procs.services.extend(services)
    for service in services:
        (fn_procs.tmp / service.label).mkdir(parents=True, exist_ok=True)
        service.start_without_waiting()
    # Started together; each listens only after migrating.
    for service in services:
        service.wait_for_port(30)

    applied = psql(url, "SELECT name || ':' || count(*) FROM titanium_migrations GROUP BY name ORDER BY name")
    assert applied.split("\n") == ["posts-v1:1", "users-v1:1"], applied

    users1, users2, blog1, blog2 = services
    made = json_request(users1.port, "POST", "/api/users", {"username": "shared", "email": "s@example.com",
                                                            "password": "password one"})
    assert made.status == 201, made
    clash = json_request(users2.port, "POST", "/api/users", {"username": "SHARED", "email": "t@example.com",
                                                             "password": "password two"})
    assert clash.status == 409, clash
    first = json_request(blog1.port, "GET", "/api/posts")
    second = json_request(blog2.port, "GET", "/api/posts")
    assert first.status == 200 and first.body == second.body, (first, second)
