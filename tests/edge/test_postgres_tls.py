"""PostgreSQL over TLS: ``sslmode=require`` verifies the server, ``sslrootcert`` names whom to trust.

A throwaway PostgreSQL gets a certificate for 127.0.0.1 from a test CA (openssl) and ``ssl=on``.

1. blog-service with ``?sslmode=require&sslrootcert=<the CA>`` starts and serves; every connection
   it holds (application_name ``titanium``) is encrypted, as ``pg_stat_ssl`` says.
2. The same with another CA's file, and with the system's roots (``sslmode=require`` alone): the
   certificate is refused, and the service exits 1 at its startup timeout without ever listening.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Service, closed_redis_url, http_request, psql, reachable_directory


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr}"


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Titanium test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)


def make_server_certificate(directory: Path, ca: str) -> None:
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=directory)
    if os.getuid() == 0:  # the server runs as postgres and must own its key
        user = pwd.getpwnam("postgres")
        for name in ("server.key", "server.pem"):
            os.chown(directory / name, user.pw_uid, user.pw_gid)
    (directory / "server.key").chmod(0o600)


def start_refused(fn_procs, url: str, label: str) -> tuple[int | None, float, Service]:
    service = Service("blog-service", {"DATABASE_URL": url, "DATABASE_STARTUP_TIMEOUT_S": "2",
                                       "DATA_DIR": str(fn_procs.tmp), "REDIS_URL": closed_redis_url()}, label=label)
    fn_procs.services.append(service)
    start = time.monotonic()
    service.start_without_waiting()
    code = service.wait_exit(20)
    return code, time.monotonic() - start, service


@pytest.fixture
def certificates():
    """The test CA's and the server's files, where the postgres user can read them."""
    yield from reachable_directory("titanium-edge-tls-")


def test_tls_is_verified_against_sslrootcert_or_the_system_roots(postgres, fn_procs, certificates):
    tmp_path = certificates
    make_ca(tmp_path, "ca")
    make_ca(tmp_path, "other-ca")
    make_server_certificate(tmp_path, "ca")
    psql(postgres, f"ALTER SYSTEM SET ssl_cert_file = '{tmp_path / 'server.pem'}'")
    psql(postgres, f"ALTER SYSTEM SET ssl_key_file = '{tmp_path / 'server.key'}'")
    psql(postgres, "ALTER SYSTEM SET ssl = on")
    psql(postgres, "SELECT pg_reload_conf()")
    time.sleep(0.5)
    assert psql(postgres, "SHOW ssl") == "on"
    psql(postgres, "CREATE DATABASE tls")
    base = postgres.rsplit("/", 1)[0] + "/tls"

    blog = fn_procs.start("blog-service", {"DATABASE_URL": f"{base}?sslmode=require&sslrootcert={tmp_path / 'ca.pem'}",
                                           "REDIS_URL": closed_redis_url()}, label="blog-tls")
    assert http_request(blog.port, "GET", "/api/posts").status == 200
    counts = psql(postgres, "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a "
                            "JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'titanium'")
    total, encrypted = map(int, counts.split())
    assert total > 0 and encrypted == total, f"{encrypted} of {total} connections encrypted"

    for label, url in [("blog-other-ca", f"{base}?sslmode=require&sslrootcert={tmp_path / 'other-ca.pem'}"),
                       ("blog-system-roots", f"{base}?sslmode=require")]:
        code, elapsed, service = start_refused(fn_procs, url, label)
        assert code == 1, f"{label}: exit {code} after {elapsed:.2f} s:\n{service.tail()}"
        assert elapsed < 2 + 5, f"{label}: gave up after {elapsed:.2f} s"
        assert not any(o.get("message") == "listening" for o in service.log_objects()), service.tail()
        # The last line says why, in PostgreSQL's and TLS's words.
        assert "CERTIFICATE_VERIFY_FAILED" in service.tail(1), service.tail(3)
        print(f"{label}: exit 1 after {elapsed:.2f} s")
