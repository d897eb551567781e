"""PostgreSQL behind a network that goes silent: every wait of blog-service and user-service has a
deadline.

A stopped PostgreSQL refuses connections at once (Tests/IntegrationTests/PostgresStorageTests). A
partition is worse: connections stay open and nothing comes back, and a client without deadlines
waits as long as TCP does. Here the services reach a real PostgreSQL through ``SilenceableRelay``,
a TCP relay that can stop forwarding without closing anything (bytes sent meanwhile are held, and
so are new connections), then resume.

1. blog-service and user-service on PostgreSQL through the relay, DATABASE_QUERY_TIMEOUT_MS=1000:
   a post and a user are made and read.
2. Silence. Requests that need the database (post reads, the list, a registration), 8 at once,
   are each answered 503 ``unavailable`` with Retry-After within the query timeout plus slack,
   never 500 and never held; ``/stats`` answers and says OFFLINE; ``/health/ready`` is 503.
3. The network comes back: ONLINE again and serving within 5 s, no restart; what was written
   before is there; a new registration works.
4. A service started while the network is silent, DATABASE_STARTUP_TIMEOUT_S=2, exits 1 within
   its startup timeout plus slack, naming the database.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import HOST, Service, closed_redis_url, http_request, json_request, psql

QUERY_TIMEOUT_S = 1.0
# The answer deadline asserted for a request during the silence: the query timeout, plus a
# loaded 2-core machine's scheduling.
ANSWER_BOUND_S = QUERY_TIMEOUT_S + 2.0


class SilenceableRelay:
    """127.0.0.1:port → 127.0.0.1:target, byte for byte. ``silence()`` stops forwarding in both
    directions and opening upstream connections, closing nothing (what arrives is held, as a
    partitioned network holds it); ``resume()`` forwards what was held and goes on."""

    def __init__(self, target: int):
        self.target = target
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def silence(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        with self._lock:
            sockets = list(self._sockets) + [self._listener]
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass

    def _keep(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(s)
        return s

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(self._keep(client),), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._open.wait()
        try:
            upstream = self._keep(socket.create_connection((HOST, self.target), timeout=5))
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            self._open.wait()  # silent: hold it, the end of the stream too
            if self._closed:
                return
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except OSError:
                return


def database(server_url: str, name: str, relay_port: int) -> str:
    psql(server_url, f"CREATE DATABASE {name}")
    return f"postgres://postgres@{HOST}:{relay_port}/{name}"


def timed(port: int, method: str, path: str, obj=None, headers=None):
    start = time.monotonic()
    response = json_request(port, method, path, obj, headers=headers, timeout=15)
    return response, time.monotonic() - start


def database_status(port: int) -> str | None:
    response = http_request(port, "GET", "/stats", timeout=5)
    assert response.status == 200, f"/stats: {response}"
    dependencies = response.json().get("dependencies") or {}
    return (dependencies.get("database") or {}).get("status")


def test_silent_network_gets_503_within_the_query_timeout_and_recovers(postgres, fn_procs):
    relay = SilenceableRelay(int(postgres.rsplit(":", 1)[1].split("/")[0]))
    try:
        common = {
            "DATABASE_QUERY_TIMEOUT_MS": str(int(QUERY_TIMEOUT_S * 1000)), "DATABASE_CONNECT_TIMEOUT_MS": "1000",
            "DATABASE_POOL_SIZE": "4", "REDIS_URL": closed_redis_url(), "SHUTDOWN_DELAY_SECONDS": "0",
        }
        users = fn_procs.start("user-service", {**common, "BCRYPT_COST": "4",
                                                "DATABASE_URL": database(postgres, "users", relay.port)})
        blog = fn_procs.start("blog-service", {**common, "DATABASE_URL": database(postgres, "blog", relay.port),
                                               "USER_SERVICE_URL": users.url})
        made = json_request(users.port, "POST", "/api/users",
                            {"username": "before", "email": "before@example.com", "password": "password one"})
        assert made.status == 201, made
        assert http_request(blog.port, "GET", "/api/posts").status == 200
        assert database_status(blog.port) == "ONLINE" and database_status(users.port) == "ONLINE"

        relay.silence()
        requests = [(blog.port, "GET", "/api/posts", None), (blog.port, "GET", "/api/posts/1", None),
                    (users.port, "POST", "/api/users", {"username": "during", "email": "during@example.com",
                                                         "password": "password two"})] * 3
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            answers = list(pool.map(lambda r: timed(*r), requests))
        problems = []
        for (port, method, path, _), (response, elapsed) in zip(requests, answers):
            error = (response.json().get("error") or {}) if response.status == 503 else {}
            if response.status != 503 or error.get("code") != "unavailable" or response.header("Retry-After") is None:
                problems.append(f"{method} {path} on {port}: {response}")
            if elapsed > ANSWER_BOUND_S:
                problems.append(f"{method} {path} on {port}: answered after {elapsed:.2f} s")
        assert not problems, "\n".join(problems)
        slowest = max(elapsed for _, elapsed in answers)
        print(f"silent network: {len(answers)} requests answered 503, slowest after {slowest:.2f} s")

        for service in (blog, users):
            start = time.monotonic()
            assert database_status(service.port) == "OFFLINE", service.describe()
            assert time.monotonic() - start < ANSWER_BOUND_S, "/stats waited on the silent database"
            assert http_request(service.port, "GET", "/health/ready", timeout=5).status == 503

        relay.resume()
        resumed = time.monotonic()
        deadline = resumed + 5.0
        while time.monotonic() < deadline:
            if database_status(blog.port) == "ONLINE" and database_status(users.port) == "ONLINE":
                break
            time.sleep(0.1)
        online_after = time.monotonic() - resumed
        assert online_after < 5.0, f"still OFFLINE 5 s after the network came back:\n{blog.describe()}\n{users.describe()}"
        assert http_request(blog.port, "GET", "/api/posts").status == 200
        again = json_request(users.port, "POST", "/api/users",
                             {"username": "after", "email": "after@example.com", "password": "password three"})
        assert again.status == 201, again
        assert psql(postgres.rsplit("/", 1)[0] + "/users",
                    "SELECT string_agg(username, ',' ORDER BY id) FROM users WHERE username IN ('before', 'after')") \
            == "before,after"
        assert blog.alive() and users.alive(), "a service restarted or died"
        print(f"network back: ONLINE after {online_after:.2f} s")
    finally:
        relay.close()


def test_a_service_started_behind_a_silent_network_gives_up_at_its_startup_timeout(postgres, fn_procs):
    relay = SilenceableRelay(int(postgres.rsplit(":", 1)[1].split("/")[0]))
    try:
        url = database(postgres, "startup", relay.port)
        relay.silence()
        service = Service("blog-service", {
            "DATABASE_URL": url, "DATABASE_STARTUP_TIMEOUT_S": "2", "DATABASE_CONNECT_TIMEOUT_MS": "500",
            "DATA_DIR": str(fn_procs.tmp), "REDIS_URL": closed_redis_url(),
        })
        fn_procs.services.append(service)
        start = time.monotonic()
        service.start_without_waiting()  # it must never reach "listening"
        code = service.wait_exit(15)
        elapsed = time.monotonic() - start
        assert code == 1, f"exit {code} after {elapsed:.2f} s:\n{service.tail()}"
        assert elapsed < 2 + 3, f"gave up after {elapsed:.2f} s"
        assert "DATABASE_STARTUP_TIMEOUT_S" in service.tail(1), service.tail(3)
        print(f"silent network at start: exit 1 after {elapsed:.2f} s")
    finally:
        relay.close()
