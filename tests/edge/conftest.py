"""Shared harness of the edge suite: real Titanium processes, a raw-socket HTTP/1.1 client and a
counting upstream.

Nothing here compiles Swift: the already-built executables are taken from ``TITANIUM_BIN_DIR``
(default ``<repo>/.build/debug``). Every process is started on 127.0.0.1 with ``HTTP_PORT=0``
(or a fixed port chosen here), its stdout+stderr read by a thread (so a chatty service never
blocks on a full pipe) and its port learned from the JSON ``listening`` log line. Every process is
registered and killed by the fixture that started it and, as a last resort, at the end of the
session; on Linux each child also gets ``PR_SET_PDEATHSIG=SIGKILL`` so that it dies with pytest
even when pytest itself is killed.

Pieces:

* ``Service`` / ``ProcessGroup`` - start a binary, wait for its port, keep its log lines, signal
  it, wait for its exit, restart it on the same port.
* ``RawConnection`` / ``Response`` - send exact bytes, read answers with a strict deadline,
  parse status line, headers and a Content-Length or chunked body, and tell whether (and when)
  the server closed the connection.
* ``CountingUpstream`` - a threaded HTTP/1.1 server that records every request head it parses
  (method, target, headers, body, framing), supports keep-alive and pipelining, answers
  ``200 {"ok":true,"path":...}`` with Content-Length, and can delay answers by path prefix.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("TITANIUM_BIN_DIR") or REPO / ".build" / "debug")
HOST = "127.0.0.1"

# Every process this session started and has not reaped yet (last-resort cleanup).
_ALL_PROCESSES: "set[subprocess.Popen]" = set()
_ALL_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------

try:  # loaded once here: the child after fork only makes the call (no dlopen after fork)
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the thread that started it (pytest's main thread) dies."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A port nothing listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, 0))
        return s.getsockname()[1]


# Bound, never listening, open for the whole session: every connection to it is refused, and no
# other server can take the port meanwhile (one that was merely free a moment ago can be taken,
# and a test expecting a refusal then meets that server). TestSupport's Ports.refused() in Swift.
_REFUSED_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_REFUSED_SOCKET.bind((HOST, 0))
REFUSED_PORT: int = _REFUSED_SOCKET.getsockname()[1]


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{name} is not built at {path} (set TITANIUM_BIN_DIR to the folder of the built executables)",
                    pytrace=False)
    return path


class Service:
    """One Titanium executable as a child process. Output lines are kept (bounded)."""

    def __init__(self, name: str, env: dict[str, str], *, port: int = 0, label: str | None = None):
        self.name = name
        self.label = label or name
        self.extra_env = dict(env)
        self.fixed_port = port
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=50_000)
        self._reader: threading.Thread | None = None
        self._lines_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "Service":
        self.start_without_waiting()
        self.wait_for_port(timeout)
        return self

    def wait_for_port(self, timeout: float = 20.0) -> int:
        """After ``start_without_waiting``: the port from the "listening" line (fails the test if
        the process exits or says nothing in time)."""
        self.port = self._wait_for_port(timeout)
        return self.port

    def start_without_waiting(self) -> "Service":
        """Starts the process and returns at once (``port`` stays None)."""
        exe = binary(self.name)
        env = dict(os.environ)
        env.update({"HTTP_HOST": HOST, "HTTP_PORT": str(self.fixed_port), "LOG_LEVEL": "info"})
        env.update(self.extra_env)
        self.port = None
        with self._lines_lock:
            self.lines.clear()
        self.proc = subprocess.Popen(
            [str(exe)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
        with _ALL_LOCK:
            _ALL_PROCESSES.add(self.proc)
        proc = self.proc
        self._reader = threading.Thread(target=self._read, args=(proc,), name=f"{self.label}-stdout", daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # ends at EOF (the process exited or closed stdout)
            with self._lines_lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for obj in self.log_objects():
                if obj.get("message") == "listening" and isinstance(obj.get("port"), int) and obj["port"] > 0:
                    return obj["port"]
                if obj.get("message") == "listening" and str(obj.get("port", "")).isdigit():
                    return int(obj["port"])
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the reader collect the last lines
                self.kill()
                pytest.fail(f"{self.label} exited with {self.proc.returncode} before listening:\n{self.tail(40)}",
                            pytrace=False)
            time.sleep(0.03)
        self.kill()
        pytest.fail(f"{self.label} did not log its port within {timeout}s:\n{self.tail(40)}", pytrace=False)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None (and the process is SIGKILLed) if it did not exit in time."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._forget()
        return code

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._forget()

    def _forget(self) -> None:
        with _ALL_LOCK:
            _ALL_PROCESSES.discard(self.proc)
        if self._reader is not None:
            self._reader.join(timeout=2)

    def restart(self, timeout: float = 20.0) -> "Service":
        """Starts the binary again with the same environment (and the same port if it was fixed)."""
        if self.alive():
            self.kill()
        return self.start(timeout)

    # -- output ---------------------------------------------------------------------------
    def output(self) -> list[str]:
        with self._lines_lock:
            return list(self.lines)

    def log_objects(self) -> list[dict]:
        objects = []
        for line in self.output():
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    objects.append(obj)
        return objects

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.output()[-n:])

    def describe(self) -> str:
        state = "alive" if self.alive() else f"EXITED with {self.proc.returncode if self.proc else None}"
        return f"{self.label} (port {self.port}, {state}); last output:\n{self.tail(25)}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class ProcessGroup:
    """Starts services and a Redis server; kills whatever is left when closed."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.services: list[Service] = []
        self.redis: list[subprocess.Popen] = []

    def start(self, name: str, env: dict[str, str] | None = None, *, label: str | None = None, port: int = 0,
              timeout: float = 20.0) -> Service:
        label = label or name
        env = dict(env or {})
        env.setdefault("DATA_DIR", str(self._data_dir(label)))
        service = Service(name, env, port=port, label=label)
        self.services.append(service)
        return service.start(timeout)

    def _data_dir(self, label: str) -> Path:
        path = self.tmp / f"{label}-{len(self.services)}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_redis(self, timeout: float = 10.0) -> int:
        port = free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
        with _ALL_LOCK:
            _ALL_PROCESSES.add(proc)
        self.redis.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=0.5) as s:
                    s.settimeout(0.5)
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return port
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}", pytrace=False)
            time.sleep(0.05)
        pytest.fail("redis-server did not answer PING", pytrace=False)

    def close(self) -> None:
        for service in self.services:
            service.kill()
        for proc in self.redis:
            _reap(proc)
            with _ALL_LOCK:
                _ALL_PROCESSES.discard(proc)


def _process_group(tmp_path_factory, name: str) -> Iterable[ProcessGroup]:
    group = ProcessGroup(tmp_path_factory.mktemp(name))
    try:
        yield group
    finally:
        group.close()


@pytest.fixture(scope="module")
def procs(tmp_path_factory) -> Iterable[ProcessGroup]:
    """A module's processes: killed at the end of the module whatever happened."""
    yield from _process_group(tmp_path_factory, "edge")


@pytest.fixture
def fn_procs(tmp_path_factory) -> Iterable[ProcessGroup]:
    """A single test's processes: killed at the end of the test whatever happened."""
    yield from _process_group(tmp_path_factory, "edge-fn")


@pytest.fixture(scope="session", autouse=True)
def _kill_leftovers():
    yield
    with _ALL_LOCK:
        leftovers = list(_ALL_PROCESSES)
    for proc in leftovers:
        _reap(proc)


def _reap(proc) -> None:
    """Kills a process still running and waits for it (5 s at most)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def dashboard_dir(tmp: Path) -> str:
    path = tmp / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    (path / "index.html").write_text("<!doctype html><title>edge</title>")
    return str(path)


def closed_redis_url() -> str:
    """A Redis URL nothing listens on (the gateway starts and fails open)."""
    return f"redis://{HOST}:{REFUSED_PORT}"


# --------------------------------------------------------------------------------------------
# raw-socket client
# --------------------------------------------------------------------------------------------

class ParseError(Exception):
    pass


class HeaderLookup:
    """Case-insensitive look-ups in a ``headers`` list of (name, value) pairs."""
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]


@dataclass
class Response(HeaderLookup):
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes = b""


    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error_shape_problem(self) -> str | None:
        """None when the body is the system's JSON error {"error":{"code":..,"message":..}}."""
        try:
            obj = self.json()
        except (ValueError, UnicodeDecodeError):
            return f"body is not JSON: {self.body[:200]!r}"
        err = obj.get("error") if isinstance(obj, dict) else None
        if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
            return f"body is not {{\"error\":{{\"code\",\"message\"}}}}: {self.body[:200]!r}"
        return None

    def __repr__(self) -> str:
        return f"<{self.status} {self.reason} {dict(self.headers)} {self.body[:160]!r}>"


class RawConnection:
    """One TCP connection that sends exact bytes and reads answers against deadlines."""

    def __init__(self, port: int, *, host: str = HOST, connect_timeout: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False  # the server closed (FIN or RST)
        self.reset = False
        self.eof_at: float | None = None
        self.send_failed = False
        self.opened_at = time.monotonic()

    def send(self, data: bytes, timeout: float = 5.0) -> bool:
        """sendall; False (and no exception) if the server already closed or reset."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.send_failed = True
            return False
        except socket.timeout:
            self.send_failed = True
            return False

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False on timeout or EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof, self.reset, self.eof_at = True, True, time.monotonic()
            return False
        if not chunk:
            self.eof, self.eof_at = True, time.monotonic()
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout: float = 5.0, *, skip_interim: bool = True, head_request: bool = False
                      ) -> Response | None:
        """The next complete response, or None if the connection closed (or the deadline passed)
        before one was complete. Raises ParseError for bytes that are not an HTTP/1.x response."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self._read_one(deadline, head_request)
            if resp is None:
                return None
            if skip_interim and 100 <= resp.status < 200 and resp.status != 101:
                continue
            return resp

    def _read_one(self, deadline: float, head_request: bool) -> Response | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ParseError(f"response head larger than 1 MiB: {self.buf[:200]!r}")
            if self.buf and not b"HTTP/1."[: len(self.buf)].startswith(self.buf[:7]):
                raise ParseError(f"not an HTTP response: {self.buf[:200]!r}")
            if not self._fill(deadline):
                if self.buf and self.eof:
                    raise ParseError(f"connection closed inside a response head: {self.buf[:300]!r}")
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ParseError(f"bad status line {status_line!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for raw in lines[1:]:
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise ParseError(f"bad header line {raw!r}")
            headers.append((name.strip(), value.strip()))
        resp = Response(status, reason, parts[0], headers, b"", head)
        self.buf = rest
        if head_request or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None and "chunked" in te.lower():
            resp.body = self._read_chunked(deadline)
            if resp.body is None:
                raise ParseError(f"chunked body of {status} incomplete: {self.buf[:200]!r}")
        elif cl is not None:
            if not cl.isdigit():
                raise ParseError(f"bad Content-Length {cl!r}")
            n = int(cl)
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise ParseError(f"body of {status} incomplete: {len(self.buf)} of {n} bytes")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:  # delimited by close
            while self._fill(deadline):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def _read_chunked(self, deadline: float) -> bytes | None:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill(deadline):
                    return None
            size_line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while b"\r\n" not in self.buf:  # trailers end with an empty line
                    if not self._fill(deadline):
                        return None
                while not self.buf.startswith(b"\r\n"):
                    _, _, self.buf = self.buf.partition(b"\r\n")
                    while b"\r\n" not in self.buf:
                        if not self._fill(deadline):
                            return None
                self.buf = self.buf[2:]
                return body
            while len(self.buf) < size + 2:
                if not self._fill(deadline):
                    return None
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def wait_closed(self, timeout: float) -> bool:
        """True if the server closes (FIN/RST) within timeout; any bytes received meanwhile stay in buf."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline)
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Exchange:
    """What one raw exchange produced."""
    responses: list[Response] = field(default_factory=list)
    closed: bool = False
    closed_after: float | None = None  # seconds from the send until the server closed
    first_response_after: float | None = None
    leftover: bytes = b""
    parse_error: str | None = None
    send_ok: bool = True

    @property
    def first(self) -> Response | None:
        return self.responses[0] if self.responses else None

    def answer_problems(self, bound: float, allowed) -> list[str]:
        """Why this is not one answer with an allowed status (an error in the JSON shape) and a
        close, both within bound seconds."""
        problems = []
        if self.parse_error:
            problems.append(f"unparseable answer: {self.parse_error}")
        if self.responses:
            first = self.responses[0]
            if not allowed(first.status):
                problems.append(f"answered {first.status}")
            elif first.status >= 400 and (shape := first.error_shape_problem()):
                problems.append(f"{first.status} without the JSON error body: {shape}")
            if self.first_response_after is not None and self.first_response_after > bound:
                problems.append(f"answered only after {self.first_response_after:.2f}s")
        if not self.closed:
            problems.append(f"connection still open after {bound + 1}s")
        elif self.closed_after is not None and self.closed_after > bound:
            problems.append(f"closed only after {self.closed_after:.2f}s (bound {bound}s)")
        return problems

    def summary(self) -> str:
        return (f"responses={[(r.status, r.body[:120]) for r in self.responses]} closed={self.closed} "
                f"closed_after={self.closed_after if self.closed_after is None else round(self.closed_after, 2)} "
                f"leftover={self.leftover[:120]!r} parse_error={self.parse_error} send_ok={self.send_ok}")


def exchange(port: int, data: bytes, *, timeout: float = 3.0, max_responses: int = 5,
             close_wait: float | None = None) -> Exchange:
    """Sends data on a fresh connection, reads up to max_responses answers until timeout, then
    waits (at most close_wait, default: what is left of timeout) for the server to close."""
    result = Exchange()
    start = time.monotonic()
    deadline = start + timeout
    with RawConnection(port) as conn:
        result.send_ok = conn.send(data)
        try:
            while len(result.responses) < max_responses:
                resp = conn.read_response(max(0.0, deadline - time.monotonic()))
                if resp is None:
                    break
                if result.first_response_after is None:
                    result.first_response_after = time.monotonic() - start
                result.responses.append(resp)
        except ParseError as error:
            result.parse_error = str(error)
        if not conn.eof:
            wait = close_wait if close_wait is not None else max(0.0, deadline - time.monotonic())
            conn.wait_closed(wait)
        result.closed = conn.eof
        if conn.eof_at is not None:
            result.closed_after = conn.eof_at - start
        result.leftover = conn.buf
    return result


def http_request(port: int, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
                 timeout: float = 5.0) -> Response:
    """One well-formed request on a fresh connection (Connection: close); raises if no answer."""
    hdrs = {"Host": f"{HOST}:{port}", "Connection": "close"}
    hdrs.update(headers or {})
    if body or method in ("POST", "PUT", "PATCH"):
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with RawConnection(port) as conn:
        conn.send(head.encode("latin-1") + body)
        resp = conn.read_response(timeout, head_request=(method == "HEAD"))
    if resp is None:
        raise AssertionError(f"no answer to {method} {path} on port {port} within {timeout}s")
    return resp


def try_request(port: int, method: str, path: str, **kw) -> Response | str:
    """Like http_request, but an error becomes its description (for use in loops and threads)."""
    try:
        return http_request(port, method, path, **kw)
    except (OSError, ParseError, AssertionError) as error:
        return f"{type(error).__name__}: {error}"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------------------------
# counting upstream
# --------------------------------------------------------------------------------------------

# Paths the proxies ask on their own (health checks, /stats fan-out): answered, not counted.
NOT_COUNTED = ("/health/", "/stats", "/metrics")


@dataclass
class UpstreamRequest(HeaderLookup):
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes | None = None  # None until the body was read completely
    framing: str = "none"  # "content-length", "chunked", "none" or "invalid: ..."
    malformed: str | None = None
    connection: int = 0
    at: float = 0.0

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


    @property
    def counted(self) -> bool:
        return self.malformed is not None or not self.path.startswith(NOT_COUNTED)


class CountingUpstream:
    """A small threaded HTTP/1.1 server standing in for a service or a gateway.

    Records every request head it parses (malformed ones too, so that anything a proxy lets
    through is seen), supports keep-alive and pipelining, reads Content-Length and chunked bodies
    (sending ``100 Continue`` first when asked), and answers ``200 {"ok":true,"path":...}`` with
    Content-Length. ``delays[prefix] = seconds`` delays answers to paths under ``prefix``.
    Health and stats paths are answered at once and are not counted."""

    MAX_HEAD = 256 * 1024
    CONNECTION_IDLE = 60.0

    def __init__(self, port: int = 0):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, port))
        self.listener.listen(1024)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.records: list[UpstreamRequest] = []
        self.delays: dict[str, float] = {}
        self.connections = 0
        self.stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="upstream-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- queries --------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.records.clear()

    def requests(self) -> list[UpstreamRequest]:
        with self.lock:
            return [r for r in self.records if r.counted]

    @property
    def count(self) -> int:
        return len(self.requests())

    def wait_for(self, predicate: Callable[[list[UpstreamRequest]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                if predicate([r for r in self.records if r.counted]):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.1))

    def wait_for_count(self, n: int, timeout: float) -> bool:
        return self.wait_for(lambda rs: len(rs) >= n, timeout)

    # -- server ---------------------------------------------------------------------------
    LIFETIME = 1800.0  # seconds: a hard bound on the accept loop even if stop() is never called

    def _accept_loop(self) -> None:
        end = time.monotonic() + self.LIFETIME
        while not self.stopping.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self._socks.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._serve, args=(conn, number), name=f"upstream-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _record(self, record: UpstreamRequest) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(self.CONNECTION_IDLE)
        buf = b""

        def fill() -> bool:
            nonlocal buf
            if self.stopping.is_set():
                return False
            try:
                chunk = conn.recv(65536)
            except (OSError, socket.timeout):
                return False
            if not chunk:
                return False
            buf += chunk
            return True

        try:
            for _ in range(100_000):  # requests per connection, bounded
                while b"\r\n\r\n" not in buf:
                    if len(buf) > self.MAX_HEAD:
                        self._record(UpstreamRequest("?", "?", "?", [], buf[:2000], malformed="head too large",
                                                     connection=number, at=time.monotonic()))
                        self._answer(conn, 431, b'{"ok":false}', close=True)
                        return
                    if not fill():
                        if buf.strip():
                            self._record(UpstreamRequest("?", "?", "?", [], buf[:2000], malformed="incomplete head",
                                                         connection=number, at=time.monotonic()))
                        return
                head, _, buf = buf.partition(b"\r\n\r\n")
                record = self._parse_head(head, number)
                self._record(record)
                if record.malformed:
                    self._answer(conn, 400, b'{"ok":false}', close=True)
                    return
                # body
                te = record.header_all("transfer-encoding")
                cl = record.header_all("content-length")
                if record.header("expect") and record.header("expect").lower() == "100-continue" and (te or cl):
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if te:
                    if len(te) != 1 or te[0] != "chunked" or cl:
                        record.framing = f"invalid: te={te} cl={cl}"
                        self._answer(conn, 400, b'{"ok":false}', close=True)
                        return
                    record.framing = "chunked"
                    body = b""
                    while True:
                        while b"\r\n" not in buf:
                            if not fill():
                                return
                        size_line, _, buf = buf.partition(b"\r\n")
                        try:
                            size = int(size_line.split(b";")[0].strip(), 16)
                        except ValueError:
                            record.framing = f"invalid chunk size {size_line[:40]!r}"
                            self._answer(conn, 400, b'{"ok":false}', close=True)
                            return
                        if size == 0:
                            while True:  # trailers, then the empty line
                                while b"\r\n" not in buf:
                                    if not fill():
                                        return
                                line, _, buf = buf.partition(b"\r\n")
                                if line == b"":
                                    break
                            break
                        while len(buf) < size + 2:
                            if not fill():
                                return
                        body += buf[:size]
                        buf = buf[size + 2:]
                    record.body = body
                elif cl:
                    if len(cl) != 1 or not cl[0].isdigit():
                        record.framing = f"invalid: cl={cl}"
                        self._answer(conn, 400, b'{"ok":false}', close=True)
                        return
                    record.framing = "content-length"
                    n = int(cl[0])
                    while len(buf) < n:
                        if not fill():
                            return
                    record.body, buf = buf[:n], buf[n:]
                else:
                    record.body = b""
                with self.changed:
                    self.changed.notify_all()
                delay = self._delay_for(record.path)
                if delay > 0 and not record.path.startswith(NOT_COUNTED):
                    end = time.monotonic() + delay
                    while time.monotonic() < end and not self.stopping.is_set():
                        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
                close = (record.header("connection") or "").lower() == "close"
                payload = json.dumps({"ok": True, "path": record.target}, separators=(",", ":")).encode()
                self._answer(conn, 200, payload, close=close, head=record.method == "HEAD")
                if close:
                    return
        except OSError:
            return
        finally:
            with self.lock:
                self._socks.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _parse_head(self, head: bytes, number: int) -> UpstreamRequest:
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        record = UpstreamRequest("?", "?", "?", [], head, connection=number, at=time.monotonic())
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            record.malformed = f"bad request line {lines[0][:100]!r}"
            return record
        record.method, record.target, record.version = parts
        for raw in lines[1:]:
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip() or raw[:1] in (b" ", b"\t"):
                record.malformed = f"bad header line {raw[:100]!r}"
                return record
            record.headers.append((name, value.strip(" \t")))
        return record

    def _delay_for(self, path: str) -> float:
        with self.lock:
            best = 0.0
            for prefix, seconds in self.delays.items():
                if path.startswith(prefix):
                    best = max(best, seconds)
            return best

    @staticmethod
    def answered_path(status: int, body: bytes) -> str:
        """The path a 200 echo answer is about (without its query), or "" for any other answer."""
        if status != 200 or not body.startswith(b'{"ok":true'):
            return ""
        try:
            return json.loads(body).get("path", "").split("?", 1)[0]
        except ValueError:
            return ""

    def _answer(self, conn: socket.socket, status: int, body: bytes, *, close: bool, head: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 431: "Request Header Fields Too Large"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", f"Connection: {'close' if close else 'keep-alive'}"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)
        conn.sendall(data)

    def stop(self) -> None:
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self._acceptor.join(timeout=2)
        for thread in list(self._threads):
            thread.join(timeout=1)


@pytest.fixture(scope="module")
def upstream() -> Iterable[CountingUpstream]:
    server = CountingUpstream()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fn_upstream() -> Iterable[CountingUpstream]:
    server = CountingUpstream()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# common topologies
# --------------------------------------------------------------------------------------------

def gateway_env(services_url: str, **extra: str) -> dict[str, str]:
    env = {
        "AUTH_SERVICE_URL": services_url, "USER_SERVICE_URL": services_url, "BLOG_SERVICE_URL": services_url,
        "REDIS_URL": closed_redis_url(), "RATE_LIMIT_ENABLED": "false",
    }
    env.update(extra)
    return env


def balancer_env(gateway_urls: list[str], dashboard: str, **extra: str) -> dict[str, str]:
    env = {
        "GATEWAY_URLS": ",".join(gateway_urls),
        "STATS_TARGETS": ",".join(f"api-gateway={u}" for u in gateway_urls),
        "DASHBOARD_DIR": dashboard,
    }
    env.update(extra)
    return env


def assert_alive(*services: Service) -> None:
    dead = [s for s in services if s.proc is None or s.proc.poll() is not None]
    assert not dead, "processes died:\n" + "\n\n".join(s.describe() for s in dead)


# --------------------------------------------------------------------------------------------
# JSON requests, stats, rate limiting, trace rows
# --------------------------------------------------------------------------------------------

def json_request(port: int, method: str, path: str, obj=None, *, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> Response:
    """``http_request`` with a JSON body (UTF-8, not ASCII-escaped); the target is sent as given."""
    hdrs = {}
    body = b""
    if obj is not None:
        hdrs["Content-Type"] = "application/json"
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    hdrs.update(headers or {})
    return http_request(port, method, path, headers=hdrs, body=body, timeout=timeout)


def get_stats(port: int) -> dict:
    resp = http_request(port, "GET", "/stats", timeout=10)
    assert resp.status == 200, f"GET /stats on port {port}: {resp}"
    return resp.json()


def refused_url() -> str:
    """An http:// URL nothing listens on (a proxied request to it is answered 502)."""
    return f"http://{HOST}:{REFUSED_PORT}"


def rate_limited_problem(resp: Response) -> str | None:
    """None when resp is the system's 429: JSON error code rate_limited with a Retry-After."""
    if resp.status != 429:
        return f"status {resp.status}, not 429: {resp.body[:200]!r}"
    if shape := resp.error_shape_problem():
        return shape
    if resp.json()["error"]["code"] != "rate_limited":
        return f"error code {resp.json()['error']['code']!r}"
    retry = resp.header("retry-after")
    if retry is None or not retry.isdigit() or int(retry) < 1:
        return f"Retry-After {retry!r}"
    return None


def service_data_dir(service: Service) -> Path:
    return Path(service.extra_env["DATA_DIR"])


def trace_rows(db_path: Path, where: str = "1", args: tuple = ()) -> list[dict]:
    """Rows of a service's trace store: ``trace_steps`` in ``traces.db`` and the not yet compacted
    ``trace_inbox`` in ``traces.db-inbox`` (read-only, with a busy timeout)."""
    import sqlite3
    rows: list[dict] = []
    for path, table in ((db_path, "trace_steps"), (Path(str(db_path) + "-inbox"), "trace_inbox")):
        if not path.exists():
            continue
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error:
            continue
        try:
            db.row_factory = sqlite3.Row
            rows += [dict(r) for r in db.execute(f"SELECT * FROM {table} WHERE {where}", args)]
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
        finally:
            db.close()
    return rows


# --------------------------------------------------------------------------------------------
# PostgreSQL (Debian's, throwaway: scripts/lib/postgres.sh)
# --------------------------------------------------------------------------------------------

def postgres_start(directory: Path) -> str:
    script = '. scripts/lib/postgres.sh && postgres_start "$1" >&2 && printf "%s" "$POSTGRES_URL"'
    proc = subprocess.run(["bash", "-c", script, "postgres", str(directory)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL did not start (scripts/install-deps.sh test installs it):\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()


def postgres_stop(directory: Path) -> None:
    subprocess.run(["bash", "-c", '. scripts/lib/postgres.sh && postgres_stop "$1"', "postgres", str(directory)],
                   cwd=REPO, capture_output=True, timeout=90)


def psql(url: str, sql: str) -> str:
    proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"psql {sql!r}: {proc.stderr}"
    return proc.stdout.strip()


def reachable_directory(prefix: str) -> Iterable[Path]:
    """A new directory under /tmp, mode 0755, removed afterwards: for files another user (the
    postgres user, a job's user) must reach, which pytest's own temporary folders (private to
    root) are not. Use it as a fixture body: ``yield from reachable_directory("titanium-x-")``."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL for one test; its URL (superuser postgres, database postgres)."""
    directory = Path(tempfile.mkdtemp(prefix="titanium-edge-pg-"))
    try:
        yield postgres_start(directory)
    finally:
        postgres_stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
