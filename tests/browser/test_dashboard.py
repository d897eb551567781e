#!/usr/bin/env python3
"""The live dashboard in a real browser, against a real stack.

Starts its own stack with scripts/stack.sh (binaries from TITANIUM_BIN_DIR, its own ports and
state folder), opens the dashboard in headless Chromium through Selenium and checks, in order:

  1. IDLE with its hint while nothing flows;
  2. the heartbeat toggle (driven by keyboard) turns IDLE off within 10 s;
  3. with the load balancer stopped the page says "load balancer unreachable", keeps the last
     figures dimmed, and recovers by itself (heartbeat included) once it is back;
  4. switching the heartbeat off brings IDLE back;
  5. under real /api traffic, every KPI and every table cell matches /stats fetched at the same
     moment (the same `generated_at`);
  6. stopping blog-service puts an alarm on the page within 5 s (and the figures still match
     /stats, now with 5xx answers); starting it again clears OFFLINE within 5 s;
  6b. a fault injected through the load balancer (PUT /admin/faults/blog-service, latency 300 ms
     on /api/posts*) shows on blog-service's row as "FAULT: latency 300 ms on /api/posts*, … left"
     and as a ⚑ alarm within 5 s, the time left as /stats says; removed (DELETE), the badge goes
     and a "removed" alarm follows within 5 s;
  7. recent traces (traffic stopped first): a GET /api/posts with a known X-Request-ID is listed
     within 8 s under the trace id of its `traceparent`, the row as /traces/recent has it; Tab and
     Down reach its row, Enter opens the waterfall: load-balancer, api-gateway, blog-service in
     that order, indented by depth, durations and bar positions as /traces/{id} fetched then;
     the list refreshes every 5 s (measured) and keeps its rows (the same elements) and the
     waterfall on its trace; Escape closes it and refocuses the row, a click opens it again;
     the waterfall is readable at 1280 px and 390 px;
  8. the page fits 1280 px and 390 px without sideways scrolling; full-page screenshots of both;
  9. the load balancer restarted with ADMIN_TOKEN: /traces answers 401, the page shows the
     token field, refuses a wrong token, and with the right one lists the traces again;
 10. the browser console has no error (besides the refused connections of steps 3 and 9, which
     are the restarts themselves, and the 401s of step 9).

The stack runs with TRACE_FLUSH_INTERVAL=500ms (BROWSER_TEST_TRACE_FLUSH), so that a trace is in
the stores half a second after its request rather than up to 5 s.

Screenshots: dashboard-1280.png and dashboard-390.png (full page, waterfall open),
dashboard-1280-degraded.png (while blog-service is stopped), traces-waterfall-1280.png and
traces-waterfall-390.png (the waterfall), traces-token-1280.png (the token field after a wrong token).

Screenshots go to BROWSER_TEST_OUTPUT (default test-output/dashboard/) on every run, passing or
not. The stack is always stopped. Prints "browser: N passed, N failed" last.
"""

import base64
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
OFFSET = int(os.environ.get("BROWSER_TEST_PORT_OFFSET", "5700"))
LB_PORT = 7100 + OFFSET
PORTS = [7100 + OFFSET, 7200 + OFFSET, 7301 + OFFSET, 7302 + OFFSET, 7303 + OFFSET]
REDIS_PORT = 7379 + OFFSET  # as the other stacks here: offset 3000 -> Redis 10379
BASE = f"http://127.0.0.1:{LB_PORT}"
OUT = Path(os.environ.get("BROWSER_TEST_OUTPUT", ROOT / "test-output" / "dashboard"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
DASH = "—"
WIDTHS = [(1280, 900), (390, 844)]

SERVICES = ["api-gateway", "auth-service", "user-service", "blog-service"]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Failure(AssertionError):
    pass


def wait_until(what, probe, timeout, interval=0.1):
    """Calls probe() until it returns something truthy; returns (value, seconds taken)."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = probe()
        except Failure:
            raise
        except Exception as error:  # noqa: BLE001 - keep polling through transient errors
            last = f"{type(error).__name__}: {error}"
            if time.monotonic() - start > timeout:
                raise Failure(f"{what}: not within {timeout} s; last: {last}") from error
            time.sleep(interval)
            continue
        if last:
            return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise Failure(f"{what}: not within {timeout} s")
        time.sleep(interval)


# ---- The stack -------------------------------------------------------------------------------


class Stack:
    def __init__(self, bin_dir):
        self.var = Path(tempfile.mkdtemp(prefix="titanium-browser-"))
        # Trace rows reach the stores within 0.5 s instead of 5 s (stack.sh passes TRACE_* on).
        self.env = dict(os.environ, TITANIUM_BIN_DIR=str(bin_dir), TITANIUM_VAR=str(self.var),
                        TITANIUM_PORT_OFFSET=str(OFFSET), REDIS_PORT=str(REDIS_PORT),
                        TRACE_FLUSH_INTERVAL=os.environ.get("BROWSER_TEST_TRACE_FLUSH", "500ms"))
        self.started = False

    def run(self, *args, timeout=120, env=None):
        started = time.monotonic()
        result = subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), *args], env=dict(self.env, **(env or {})), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if result.returncode != 0:
            raise Failure(f"stack.sh {' '.join(args)} exited {result.returncode}:\n{result.stdout}")
        return time.monotonic() - started

    def up(self):
        for port in PORTS + [REDIS_PORT]:
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise Failure(f"port {port} is already in use: set BROWSER_TEST_PORT_OFFSET to another value")
        self.started = True
        try:
            self.run("up", "--detach")
        except Failure as first:
            # The binaries may have been replaced by a rebuild in the middle of the start.
            log(f"stack start failed, retrying once: {first}")
            self.run("down")
            self.run("up", "--detach")

    def down(self):
        if self.started:
            try:
                self.run("down", timeout=60)
            except Exception as error:  # noqa: BLE001
                log(f"stack.sh down failed: {error}")
        logs = self.var / "log"
        if logs.is_dir():
            kept = OUT / "logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(logs, kept)
        shutil.rmtree(self.var, ignore_errors=True)


def get_stats():
    with urllib.request.urlopen(BASE + "/stats", timeout=5) as response:
        return json.load(response)


def send_json(method, path, body=None):
    """A request to the load balancer with an optional JSON body; returns (status, parsed body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def get_json(path, token=None):
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with urllib.request.urlopen(urllib.request.Request(BASE + path, headers=headers), timeout=5) as response:
        return json.load(response)


def traced_request(path):
    """One request through the load balancer with a known X-Request-ID; returns the trace id of
    its `traceparent` (00-<trace_id>-<span_id>-<flags>) and the status."""
    request_id = f"browser-test-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(BASE + path, headers={"X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
    if headers.get("X-Request-ID") != request_id:
        raise Failure(f"GET {path}: X-Request-ID {request_id!r} came back as {headers.get('X-Request-ID')!r}")
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}", headers.get("traceparent") or "")
    if not match:
        raise Failure(f"GET {path}: no valid traceparent in the answer: {headers.get('traceparent')!r}")
    return match.group(1), status


class Traffic:
    """Real /api requests through the load balancer (about 25/s), bounded in count and time."""

    PATHS = ["/api/posts?limit=5", "/api/users/1", "/api/auth/verify", "/api/posts/1"]

    def __init__(self, per_second=25, max_seconds=90):
        self.interval = 1 / per_second
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.statuses = {}
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        deadline = time.monotonic() + self.max_seconds
        i = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline and i < 5000:
            path = self.PATHS[i % len(self.PATHS)]
            i += 1
            try:
                with urllib.request.urlopen(BASE + path, timeout=3) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except Exception:  # noqa: BLE001 - the load balancer may be restarting
                status = "no answer"
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.stop_event.wait(self.interval)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=5)
        return dict(self.statuses)


# ---- The page --------------------------------------------------------------------------------

SNAPSHOT_JS = r"""
const byId = (id) => document.getElementById(id);
const text = (el) => (el ? el.innerText.trim() : null);
const shown = (el) => !!el && !el.hidden && el.getClientRects().length > 0;
return {
  generatedAt: byId('updated-at').dataset.generatedAt,
  status: text(byId('overall-status').querySelector('.badge-text')),
  statusState: byId('overall-status').dataset.state,
  idleHint: shown(byId('idle-hint')),
  active: text(byId('kpi-active')),
  rps: text(byId('kpi-rps')),
  mean: text(byId('kpi-mean')),
  p95: text(byId('kpi-p95')),
  p99: text(byId('kpi-p99')),
  success: text(byId('kpi-success')),
  database: text(byId('dep-database')),
  cache: text(byId('dep-cache')),
  cacheFault: shown(byId('dep-cache-fault')) ? text(byId('dep-cache-fault')) : null,
  rows: [...document.querySelectorAll('#services-body tr')].map((tr) => ({
    service: tr.dataset.service || null,
    name: text(tr.querySelector('.name')),
    instance: text(tr.querySelector('.instance')),
    status: text(tr.querySelector('.state')),
    rps: text(tr.querySelector('.rps')),
    p95: text(tr.querySelector('.p95')),
    errorRate: text(tr.querySelector('.error-rate')),
    uptime: text(tr.querySelector('.uptime')),
    fault: text(tr.querySelector('.fault-badge')),
  })),
  alarms: [...document.querySelectorAll('#alarms li')].map((li) => ({
    kind: li.dataset.kind, subject: li.dataset.subject, text: text(li.querySelector('.what')),
    datetime: li.querySelector('time') ? li.querySelector('time').dateTime : null,
    time: text(li.querySelector('time')), shown: shown(li),
  })),
  banner: shown(byId('conn-banner')),
  bannerText: text(byId('conn-banner')),
  stale: document.body.classList.contains('stale'),
  heartbeatPressed: byId('toggle-ws-heartbeat-btn').getAttribute('aria-pressed'),
  heartbeatLabel: text(byId('toggle-ws-heartbeat-btn')),
  heartbeatState: byId('ws-heartbeat-state').dataset.state,
};
"""


TRACES_JS = r"""
const byId = (id) => document.getElementById(id);
const text = (el) => (el ? el.innerText.trim() : null);
const shown = (el) => !!el && el.getClientRects().length > 0;
const box = (el) => { const r = el.getBoundingClientRect(); return { left: r.left, right: r.right, width: r.width }; };
const detail = byId('trace-detail');
const active = document.activeElement;
return {
  refreshes: Number(byId('traces-updated').dataset.refreshes || 0),
  listShown: shown(byId('traces-wrap')),
  message: shown(byId('traces-message')) ? text(byId('traces-message')) : '',
  tokenForm: shown(byId('traces-token-form')),
  rows: [...document.querySelectorAll('#traces-body tr[data-trace-id]')].map((tr) => ({
    id: tr.dataset.traceId, current: tr.getAttribute('aria-current'), tabIndex: tr.tabIndex,
    time: text(tr.querySelector('.when')), datetime: tr.querySelector('time').dateTime,
    request: text(tr.querySelector('.request')), status: text(tr.querySelector('.code')),
    services: text(tr.querySelector('.trace-services')), duration: text(tr.querySelector('.duration')),
    durationValue: tr.querySelector('.duration').dataset.value, steps: text(tr.querySelector('.steps')),
  })),
  detail: {
    shown: shown(detail), id: detail.dataset.traceId || '', state: detail.dataset.state || '',
    summary: text(byId('trace-detail-summary')), scaleEnd: text(byId('waterfall-end')),
    spans: [...detail.querySelectorAll('#waterfall > li')].map((li) => ({
      service: li.dataset.service, depth: Number(li.dataset.depth),
      durationMs: Number(li.dataset.durationMs), offsetMs: Number(li.dataset.offsetMs),
      name: text(li.querySelector('.span-service')), route: text(li.querySelector('.span-route')),
      status: text(li.querySelector('.span-status')), duration: text(li.querySelector('.span-duration')),
      offset: text(li.querySelector('.span-offset')),
      li: box(li), nameBox: box(li.querySelector('.span-service')),
      labels: [...li.querySelectorAll('.span-service, .span-route, .span-status, .span-duration, .span-offset')].map(
        (el) => ({ text: text(el), shown: shown(el), ...box(el) })),
      track: box(li.querySelector('.span-track')), bar: box(li.querySelector('.span-bar')),
    })),
  },
  active: !active ? null : active.parentElement && active.parentElement.id === 'traces-body'
    ? 'row:' + active.dataset.traceId : (active.id || active.tagName),
};
"""


class Page:
    def __init__(self):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,900", "--hide-scrollbars", "--lang=en-US"]:
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(20)
        self.console = []  # every browser log entry, with the step it was read in

    def open(self):
        self.set_width(*WIDTHS[0])
        self.driver.get(BASE + "/")

    def snapshot(self):
        return self.driver.execute_script(SNAPSHOT_JS)

    def traces(self):
        return self.driver.execute_script(TRACES_JS)

    def read_console(self, step):
        entries = self.driver.get_log("browser")
        for entry in entries:
            entry["step"] = step
        self.console.extend(entries)
        return entries

    def set_width(self, width, height):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def screenshot(self, path, width, height):
        self.set_width(width, height)
        time.sleep(0.6)  # the charts redraw on resize
        full = self.driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        return full

    def screenshot_of(self, path, width, height, selector):
        """The full width of the page, from the top to the bottom of one element."""
        self.set_width(width, height)
        time.sleep(0.4)
        top, bottom = self.driver.execute_script(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return [r.top + window.scrollY, r.bottom + window.scrollY]", selector)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": max(0, top - 8), "width": width, "height": bottom - top + 16, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))

    def overflow(self):
        return self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")

    def quit(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001
            pass


# ---- What the page must say, from /stats -----------------------------------------------------


def expected_state(stats):
    system = (stats.get("system") or {}).get("status", "").lower()
    if system == "down":
        return "DOWN"
    if system == "degraded":
        return "DEGRADED"
    if stats.get("has_real_traffic") is False:
        return "IDLE"
    return "HEALTHY" if system == "healthy" else "UNKNOWN"


def uptime_text(seconds):
    s = int(seconds // 1)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600:02d}h"


def check_number(where, shown, value, kind):
    """The text shown must be `value` in the page's format, within its display precision."""
    if value is None:
        if shown != DASH:
            raise Failure(f"{where}: shows {shown!r}, expected {DASH!r}")
        return
    if kind == "rps":
        suffix, scale, decimals = "", 1, 1
    elif kind == "ms":
        suffix, scale = " ms", 1
        decimals = 2 if value < 10 else 1 if value < 100 else 0
    elif kind == "percent":
        suffix, scale = "%", 100
        decimals = 0 if value in (0, 1) else 2
    else:
        raise ValueError(kind)
    pattern = r"-?\d+(\.\d{%d})?" % decimals if decimals else r"-?\d+"
    if not shown or not shown.endswith(suffix) or not re.fullmatch(pattern, shown[: len(shown) - len(suffix)]):
        raise Failure(f"{where}: shows {shown!r}, expected a number with {decimals} decimals{suffix and ' and ' + repr(suffix)} for {value}")
    number = float(shown[: len(shown) - len(suffix)])
    if abs(number - value * scale) > 0.5 * 10 ** -decimals + 1e-9:
        raise Failure(f"{where}: shows {shown!r}, /stats says {value}")


def compare(snapshot, stats):
    """Every figure on the page against the /stats body it was drawn from. Returns a summary."""
    if snapshot["status"] != expected_state(stats):
        raise Failure(f"status: page {snapshot['status']!r}, /stats means {expected_state(stats)!r}")
    if snapshot["idleHint"] != (stats["has_real_traffic"] is False):
        raise Failure(f"IDLE hint shown={snapshot['idleHint']} with has_real_traffic={stats['has_real_traffic']}")
    active = f"{stats['active_services']}/{stats['total_services']}"
    if snapshot["active"] != active:
        raise Failure(f"active services: page {snapshot['active']!r}, /stats {active!r}")
    measured = stats["requests_per_second"] > 0
    check_number("requests/s", snapshot["rps"], stats["requests_per_second"], "rps")
    check_number("mean response", snapshot["mean"], stats["avg_response_time_ms"] if measured else None, "ms")
    check_number("p95", snapshot["p95"], stats["p95_ms"] if measured else None, "ms")
    check_number("p99", snapshot["p99"], stats["p99_ms"] if measured else None, "ms")
    check_number("success rate", snapshot["success"], stats["success_rate"] if measured else None, "percent")
    for dependency in ("database", "cache"):
        want = stats[dependency]["status"]
        got = (snapshot[dependency] or "").replace("✓", "").replace("✕", "").replace("?", "").strip()
        if got != want:
            raise Failure(f"{dependency}: page {snapshot[dependency]!r}, /stats {want!r}")

    rows = snapshot["rows"]
    if len(rows) != 1 + len(stats["services"]):
        raise Failure(f"table has {len(rows)} rows, /stats has the load balancer and {len(stats['services'])} services")
    lb = rows[0]
    if lb["name"] != "load-balancer" or lb["status"] != "ONLINE":
        raise Failure(f"first row should be the load balancer, ONLINE: {lb}")
    check_number("load-balancer requests/s", lb["rps"], stats["requests_per_second"], "rps")
    check_number("load-balancer p95", lb["p95"], stats["p95_ms"] if measured else None, "ms")
    check_number("load-balancer error rate", lb["errorRate"], 1 - stats["success_rate"] if measured else None, "percent")
    want_uptime = uptime_text(stats["uptime_s"]) if "uptime_s" in stats else DASH
    if lb["uptime"] != want_uptime:
        raise Failure(f"load-balancer uptime: page {lb['uptime']!r}, expected {want_uptime!r}")
    for row, entry in zip(rows[1:], stats["services"]):
        name = entry["name"]
        if row["name"] != name or row["status"] != entry["status"]:
            raise Failure(f"row {row['name']} {row['status']!r}, /stats {name} {entry['status']!r}")
        own = entry.get("stats") or {}
        if entry["status"] != "ONLINE" or not own:
            for field in ("rps", "p95", "errorRate", "uptime"):
                if row[field] != DASH:
                    raise Failure(f"{name} is {entry['status']} but shows {field} {row[field]!r}")
            continue
        if row["instance"] != own["instance"]:
            raise Failure(f"{name} instance: page {row['instance']!r}, /stats {own['instance']!r}")
        busy = own["requests_per_second"] > 0
        check_number(f"{name} requests/s", row["rps"], own["requests_per_second"], "rps")
        check_number(f"{name} p95", row["p95"], own["p95_ms"] if busy else None, "ms")
        check_number(f"{name} error rate", row["errorRate"], own["error_rate"] if busy else None, "percent")
        if row["uptime"] != uptime_text(own["uptime_s"]):
            raise Failure(f"{name} uptime: page {row['uptime']!r}, /stats {own['uptime_s']} s")
    return (f"{snapshot['status']}, {snapshot['active']} active, {snapshot['rps']} req/s, mean {snapshot['mean']}, "
            f"p95 {snapshot['p95']}, success {snapshot['success']}, db {stats['database']['status']}, "
            f"cache {stats['cache']['status']}, {len(rows)} table rows")


def check_trace_row(row, headline):
    """A row of the recent-traces list against its entry in /traces/recent."""
    started = dt.datetime.fromtimestamp(headline["started_at"] / 1000, dt.timezone.utc)
    if dt.datetime.fromisoformat(row["datetime"].replace("Z", "+00:00")) != started:
        raise Failure(f"row time {row['datetime']}, /traces/recent started_at {headline['started_at']}")
    # The browser runs on this machine, in its time zone.
    clock = dt.datetime.fromtimestamp(headline["started_at"] / 1000).strftime("%H:%M:%S") + f".{headline['started_at'] % 1000:03d}"
    duration = headline["ended_at"] - headline["started_at"]
    want = {
        "time": clock,
        "request": f"{headline['root_method']} {headline.get('root_path') or headline['root_route']}",
        "services": ", ".join(headline["services"]),
        "duration": f"{duration} ms" if duration >= 1 else "< 1 ms",
        "durationValue": str(duration),
        "steps": str(headline["steps"]),
    }
    for field, value in want.items():
        if row[field] != value:
            raise Failure(f"row {field}: page {row[field]!r}, /traces/recent means {value!r}")
    if not re.fullmatch(rf"[✓▲✕] {headline['status_code']}", row["status"] or ""):
        raise Failure(f"row status: page {row['status']!r}, /traces/recent {headline['status_code']}")


def check_waterfall(detail, trace, services):
    """The waterfall on the page against /traces/{id}: one bar per span, in order, each labelled,
    placed at offset_ms and as long as duration_ms (of the whole trace's duration_ms)."""
    spans, shown = trace["spans"], detail["spans"]
    if [s["service"] for s in spans] != services:
        raise Failure(f"/traces/{trace['trace_id']} has spans of {[s['service'] for s in spans]}, expected {services}")
    if [s["name"] for s in shown] != services or [s["service"] for s in shown] != services:
        raise Failure(f"the waterfall shows {[s['name'] for s in shown]}, expected {services} in that order")
    if [s["depth"] for s in shown] != [s["depth"] for s in spans] or [s["depth"] for s in spans] != list(range(len(services))):
        raise Failure(f"depths: page {[s['depth'] for s in shown]}, /traces {[s['depth'] for s in spans]}")
    total = trace["duration_ms"]
    check_number("waterfall scale end", detail["scaleEnd"], total, "ms")
    if f"{len(spans)} spans" not in detail["summary"]:
        raise Failure(f"summary {detail['summary']!r} does not say {len(spans)} spans")
    for got, span in zip(shown, spans):
        name = span["service"]
        if got["durationMs"] != span["duration_ms"] or got["offsetMs"] != span["offset_ms"]:
            raise Failure(f"{name}: page {got['offsetMs']}+{got['durationMs']} ms, /traces {span['offset_ms']}+{span['duration_ms']} ms")
        check_number(f"{name} duration", got["duration"], span["duration_ms"], "ms")
        if got["route"].split(" (")[0] != f"{span['method']} {span['route']}":
            raise Failure(f"{name} route: page {got['route']!r}, /traces {span['method']} {span['route']}")
        if not re.fullmatch(rf"[✓▲✕] {span['status_code']}", got["status"] or ""):
            raise Failure(f"{name} status: page {got['status']!r}, /traces {span['status_code']}")
        track, bar = got["track"], got["bar"]
        left = track["left"] + track["width"] * span["offset_ms"] / total
        width = max(2, min(track["width"] * span["duration_ms"] / total, track["right"] - left))
        if abs(bar["left"] - left) > 1.5 or abs(bar["width"] - width) > 1.5:
            raise Failure(f"{name} bar at {bar['left'] - track['left']:.1f}+{bar['width']:.1f} px of {track['width']:.0f}, "
                          f"expected {left - track['left']:.1f}+{width:.1f} (offset {span['offset_ms']}, duration {span['duration_ms']} of {total} ms)")
        if bar["right"] > track["right"] + 0.5:
            raise Failure(f"{name} bar runs past its track")
    indents = [s["nameBox"]["left"] - s["li"]["left"] for s in shown]
    if any(b <= a for a, b in zip(indents, indents[1:])):
        raise Failure(f"names are not indented by depth: {indents}")
    return ", ".join(f"{s['name']} {s['status']} {s['duration']} {s['offset']}" for s in shown)


def same_moment(page):
    """The page's next refresh and /stats fetched right after it: the same answer (the load
    balancer reuses one answer for 1 s), recognised by its generated_at."""
    for _ in range(6):
        before = page.snapshot()["generatedAt"]
        wait_until("the page's next refresh", lambda: page.snapshot()["generatedAt"] != before, 5, interval=0.02)
        stats = get_stats()
        snapshot = page.snapshot()
        if stats["generated_at"] == snapshot["generatedAt"]:
            return snapshot, stats
    raise Failure("could not fetch /stats within the same second as the page (6 tries)")


# ---- The scenario ----------------------------------------------------------------------------


class Run:
    def __init__(self):
        self.passed = []
        self.failed = []

    def step(self, name, function):
        started = time.monotonic()
        try:
            detail = function()
        except Exception as error:  # noqa: BLE001
            self.failed.append(name)
            log(f"FAIL {name} ({time.monotonic() - started:.1f} s): {error}")
            if not isinstance(error, Failure):
                traceback.print_exc()
            return False
        self.passed.append(name)
        log(f"ok   {name} ({time.monotonic() - started:.1f} s){': ' + detail if detail else ''}")
        return True


def press_heartbeat_by_keyboard(page, key):
    """Reaches the toggle with Tab, as a keyboard user would, and presses `key` on it."""
    driver = page.driver
    driver.execute_script("window.scrollTo(0, 0)")
    # A click on the (unfocusable) title puts the Tab starting point at the top of the page.
    ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, "header h1")).click().perform()
    for tabs in range(1, 15):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.execute_script("return document.activeElement && document.activeElement.id") == "toggle-ws-heartbeat-btn":
            visible = driver.execute_script(
                "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0")
            if not visible:
                raise Failure("the heartbeat toggle has no visible focus outline")
            ActionChains(driver).send_keys(key).perform()
            return tabs
    raise Failure("Tab never reached #toggle-ws-heartbeat-btn")


def tab_to_traces(page, wanted):
    """Clicks the traces heading (which focuses <main>, its focusable ancestor) and presses Tab
    until the focus is on `wanted` (a TRACES_JS `active` value); returns the number of presses."""
    driver = page.driver
    heading = driver.find_element(By.ID, "traces-heading")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", heading)
    ActionChains(driver).move_to_element(heading).click().perform()
    seen = []
    for tabs in range(1, 8):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        active = page.traces()["active"]
        if active == wanted:
            return tabs
        seen.append(active)
    raise Failure(f"Tab from <main> never reached {wanted}; it went through {seen}")


def main():
    bin_dir = os.environ.get("TITANIUM_BIN_DIR")
    if not bin_dir or not (Path(bin_dir) / "load-balancer").exists():
        print(f"TITANIUM_BIN_DIR must name a folder with the built services (got {bin_dir!r})", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, terminate)

    run = Run()
    stack = Stack(bin_dir)
    page = None
    traffic = None
    shots_taken = False
    outage_console = []
    token_console = []
    started = time.monotonic()
    try:
        log(f"starting the stack on {BASE} (binaries {bin_dir}, offset {OFFSET})")
        seconds = time.monotonic()
        stack.up()
        log(f"stack up in {time.monotonic() - seconds:.1f} s")
        page = Page()
        page.open()

        def idle():
            snapshot, _ = wait_until("first figures on the page", lambda: (s := page.snapshot())["generatedAt"] and s, 10)
            if snapshot["status"] != "IDLE" or not snapshot["idleHint"]:
                raise Failure(f"expected IDLE with its hint before any traffic, got {snapshot['status']!r}, hint={snapshot['idleHint']}")
            hint = page.driver.find_element(By.ID, "idle-hint").text
            if "heartbeat" not in hint or "traffic" not in hint:
                raise Failure(f"the IDLE hint should suggest traffic or the heartbeat: {hint!r}")
            if get_stats()["has_real_traffic"] is not False:
                raise Failure("/stats has_real_traffic should be false before any traffic")
            return f"status {snapshot['status']}, hint shown, table rows {[r['name'] for r in snapshot['rows']]}"

        def heartbeat_on():
            tabs = press_heartbeat_by_keyboard(page, Keys.ENTER)
            clicked = time.monotonic()
            snapshot = page.snapshot()
            if snapshot["heartbeatPressed"] != "true" or snapshot["heartbeatLabel"] != "Heartbeat: ON":
                raise Failure(f"toggle did not turn on: aria-pressed={snapshot['heartbeatPressed']}, label {snapshot['heartbeatLabel']!r}")
            snapshot, _ = wait_until("IDLE off after the heartbeat is on", lambda: (s := page.snapshot())["status"] != "IDLE" and s, 10)
            took = time.monotonic() - clicked
            if snapshot["status"] != "HEALTHY" or snapshot["idleHint"]:
                raise Failure(f"expected HEALTHY without the IDLE hint, got {snapshot['status']} hint={snapshot['idleHint']}")
            if not get_stats()["has_real_traffic"]:
                raise Failure("/stats has_real_traffic is false while the page says otherwise")
            return f"reached by {tabs} Tab presses, Enter; IDLE gone after {took:.1f} s (socket {snapshot['heartbeatState']})"

        def outage():
            page.read_console("before the outage")
            stopped_in = stack.run("stop", "load-balancer")
            stopped = time.monotonic()
            snapshot, _ = wait_until("'load balancer unreachable' on the page",
                                     lambda: (s := page.snapshot())["banner"] and s, 5)
            took = time.monotonic() - stopped
            if "load balancer unreachable" not in snapshot["bannerText"].lower():
                raise Failure(f"banner text: {snapshot['bannerText']!r}")
            if not snapshot["stale"]:
                raise Failure("the old figures are not dimmed (body.stale missing)")
            # Five services, the load balancer's own row included, in the count as in the table.
            if not snapshot["generatedAt"] or snapshot["active"] != "5/5" or len(snapshot["rows"]) != 5:
                raise Failure(f"the last figures were not kept: {snapshot}")
            time.sleep(2.5)  # one more failed refresh must not blank them either
            later = page.snapshot()
            for field in ("banner", "stale", "active", "rps", "database", "cache", "rows", "generatedAt"):
                if later[field] != snapshot[field]:
                    raise Failure(f"the last figures were not kept: {field} {snapshot[field]!r} -> {later[field]!r}")
            if not any(a["text"].endswith("load balancer unreachable") and a["kind"] == "down" for a in snapshot["alarms"]):
                raise Failure("no alarm for the unreachable load balancer")
            page.driver.find_element(By.ID, "conn-banner").is_displayed() or fail("banner not displayed")
            wait_until("heartbeat reconnecting", lambda: page.snapshot()["heartbeatState"] in ("reconnecting", "connecting"), 5)
            stack.run("start", "load-balancer")
            restarted = time.monotonic()
            snapshot, _ = wait_until("the page recovering by itself", lambda: not (s := page.snapshot())["banner"] and s, 5)
            recovered = time.monotonic() - restarted
            if snapshot["stale"]:
                raise Failure("figures still dimmed after recovery")
            if not any(a["text"].endswith("reachable again") for a in snapshot["alarms"]):
                raise Failure("no alarm for the load balancer coming back")
            # The new load balancer has heard nothing yet: only a reconnected heartbeat ends IDLE.
            snapshot, _ = wait_until("heartbeat reconnected and IDLE off", lambda: (
                s := page.snapshot())["heartbeatState"] == "connected" and s["status"] == "HEALTHY" and s, 10)
            outage_console.extend(page.read_console("load balancer outage"))
            unexpected = [e for e in outage_console if e["level"] == "SEVERE" and not (
                "ERR_CONNECTION_REFUSED" in e["message"] and (f":{LB_PORT}/stats" in e["message"] or "ws-heartbeat" in e["message"]
                                                              or f":{LB_PORT}/traces/recent" in e["message"]))]
            if unexpected:
                raise Failure(f"console errors during the outage other than refused connections: {unexpected}")
            return (f"stopped in {stopped_in:.1f} s, banner after {took:.1f} s, figures kept and dimmed; "
                    f"recovered {recovered:.1f} s after restart; heartbeat reconnected; "
                    f"{len(outage_console)} refused-connection console lines (expected)")

        def heartbeat_off():
            tabs = press_heartbeat_by_keyboard(page, Keys.SPACE)
            clicked = time.monotonic()
            snapshot = page.snapshot()
            if snapshot["heartbeatPressed"] != "false" or snapshot["heartbeatState"] != "off":
                raise Failure(f"toggle did not turn off: {snapshot['heartbeatPressed']}, socket {snapshot['heartbeatState']}")
            # Last "hb" at most 5 s ago + 10 s window + 1 s answer reuse + 2 s refresh.
            snapshot, _ = wait_until("IDLE back after the heartbeat is off",
                                     lambda: (s := page.snapshot())["status"] == "IDLE" and s, 20)
            if not snapshot["idleHint"]:
                raise Failure("IDLE without its hint")
            if get_stats()["has_real_traffic"] is not False:
                raise Failure("page says IDLE but /stats has_real_traffic is true")
            return f"Space after {tabs} Tab presses; IDLE back after {time.monotonic() - clicked:.1f} s"

        def kpis_match():
            wait_until("traffic on the page", lambda: (s := page.snapshot())["status"] == "HEALTHY"
                       and s["rps"] not in ("0.0", DASH) and s["rows"][4]["rps"] not in ("0.0", DASH) and s, 15)
            snapshot, stats = same_moment(page)
            if stats["requests_per_second"] <= 0:
                raise Failure("no traffic measured: the comparison would prove little")
            return compare(snapshot, stats)

        def alarm_on_stop():
            stopped_in = stack.run("stop", "blog-service")
            stopped_at = dt.datetime.now(dt.timezone.utc)
            stopped = time.monotonic()
            snapshot, _ = wait_until("an alarm for blog-service", lambda: (s := page.snapshot()) and any(
                a["subject"] == "blog-service" and a["kind"] == "down" and a["shown"] for a in s["alarms"]) and s, 5, interval=0.05)
            took = time.monotonic() - stopped
            alarm = next(a for a in snapshot["alarms"] if a["subject"] == "blog-service" and a["kind"] == "down")
            if "blog-service" not in alarm["text"] or "OFFLINE" not in alarm["text"]:
                raise Failure(f"alarm text: {alarm['text']!r}")
            when = dt.datetime.fromisoformat(alarm["datetime"].replace("Z", "+00:00"))
            if not (stopped_at - dt.timedelta(seconds=stopped_in + 2) <= when <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)):
                raise Failure(f"alarm time {alarm['datetime']} is not when blog-service stopped ({stopped_at.isoformat()})")
            if not re.fullmatch(r"\d\d:\d\d:\d\d", alarm["time"] or ""):
                raise Failure(f"alarm shows no time: {alarm['time']!r}")
            row = next(r for r in snapshot["rows"] if r["name"] == "blog-service")
            if row["status"] != "OFFLINE":
                raise Failure(f"blog-service row says {row['status']!r}")
            if snapshot["status"] != "DEGRADED" or snapshot["active"] != "4/5":
                raise Failure(f"expected DEGRADED and 4/5, got {snapshot['status']} {snapshot['active']}")
            page.screenshot(OUT / "dashboard-1280-degraded.png", *WIDTHS[0])
            return f"alarm {alarm['time']} {alarm['text']!r} {took:.1f} s after the stop; row OFFLINE; DEGRADED 4/5"

        def kpis_match_degraded():
            # /api/posts now fails with 5xx: the success rate must show it, and match /stats.
            wait_until("5xx in the load balancer's window", lambda: get_stats()["success_rate"] < 1, 10, interval=0.5)
            snapshot, stats = same_moment(page)
            if stats["success_rate"] >= 1:
                raise Failure("expected failed requests in the window")
            return compare(snapshot, stats)

        def recovery():
            stack.run("start", "blog-service")
            ready = time.monotonic()
            snapshot, _ = wait_until("blog-service ONLINE again", lambda: (s := page.snapshot()) and any(
                r["name"] == "blog-service" and r["status"] == "ONLINE" for r in s["rows"]) and s, 5, interval=0.05)
            took = time.monotonic() - ready
            if any(r["status"] == "OFFLINE" for r in snapshot["rows"]):
                raise Failure(f"a row still says OFFLINE: {snapshot['rows']}")
            back = [a for a in snapshot["alarms"] if a["subject"] == "blog-service" and a["kind"] == "up"]
            if not back or "back ONLINE" not in back[0]["text"]:
                raise Failure(f"no 'back ONLINE' alarm: {snapshot['alarms']}")
            snapshot, _ = wait_until("HEALTHY again", lambda: (s := page.snapshot())["status"] == "HEALTHY" and s, 5)
            return f"ONLINE {took:.1f} s after ready; alarm {back[0]['time']} {back[0]['text']!r}; {snapshot['active']} {snapshot['status']}"

        def fault_shown():
            fault = {"latency_ms": 300, "routes": ["/api/posts*"], "duration_s": 120}
            status, body = send_json("PUT", "/admin/faults/blog-service", fault)
            applied = time.monotonic()
            if status != 200 or not body.get("instances") or any(i.get("status") != 200 for i in body["instances"]):
                raise Failure(f"PUT /admin/faults/blog-service: {status} {body}")
            try:
                snapshot, _ = wait_until("the fault badge on blog-service's row and its alarm", lambda: (s := page.snapshot()) and any(
                    r["name"] == "blog-service" and r["fault"] for r in s["rows"]) and any(
                    a["kind"] == "fault" and a["subject"] == "blog-service" and a["shown"] for a in s["alarms"]) and s, 5, interval=0.1)
                took = time.monotonic() - applied
                stats = get_stats()
                row = next(r for r in snapshot["rows"] if r["name"] == "blog-service")
                match = re.fullmatch(r"FAULT: latency 300 ms on /api/posts\*, (?:(\d+)m )?(\d+)s left", row["fault"] or "")
                if not match:
                    raise Failure(f"blog-service's badge: {row['fault']!r}")
                shown_left = int(match.group(1) or 0) * 60 + int(match.group(2))
                reported = next(e["stats"]["faults"] for e in stats["services"] if e["name"] == "blog-service")
                if reported["kinds"] != ["latency"] or not abs(shown_left - reported["remaining_s"]) <= 6:
                    raise Failure(f"the badge says {shown_left} s left, /stats {reported}")
                others = [r["name"] for r in snapshot["rows"] if r["fault"] and r["name"] != "blog-service"]
                if others:
                    raise Failure(f"a fault badge on rows without a fault: {others}")
                alarm = next(a for a in snapshot["alarms"] if a["kind"] == "fault" and a["subject"] == "blog-service")
                if "FAULT injected on blog-service: latency 300 ms" not in alarm["text"]:
                    raise Failure(f"fault alarm text: {alarm['text']!r}")
                page.screenshot(OUT / "dashboard-1280-fault.png", *WIDTHS[0])
            finally:
                status, body = send_json("DELETE", "/admin/faults/blog-service")
            removed = time.monotonic()
            if status != 200:
                raise Failure(f"DELETE /admin/faults/blog-service: {status} {body}")
            snapshot, _ = wait_until("the badge gone and a 'removed' alarm", lambda: (s := page.snapshot()) and not any(
                r["fault"] for r in s["rows"]) and any(a["kind"] == "fault-end" and a["subject"] == "blog-service" for a in s["alarms"]) and s, 5)
            gone = time.monotonic() - removed
            end = next(a for a in snapshot["alarms"] if a["kind"] == "fault-end" and a["subject"] == "blog-service")
            return (f"badge {row['fault']!r} and alarm {alarm['text']!r} {took:.1f} s after the PUT ({reported['remaining_s']} s left "
                    f"on /stats); gone {gone:.1f} s after the DELETE, alarm {end['text']!r}")

        def screenshots():
            nonlocal shots_taken
            taken = []
            page.driver.execute_script("document.activeElement && document.activeElement.blur()")
            for width, height in WIDTHS:
                path = OUT / f"dashboard-{width}.png"
                full = page.screenshot(path, width, height)
                shots_taken = True
                scroll_width, inner = page.overflow()
                if scroll_width > inner:
                    raise Failure(f"at {width} px the page scrolls sideways ({scroll_width} > {inner})")
                for element_id in ("overall-status", "kpi-rps", "services-body", "toggle-ws-heartbeat-btn", "alarms",
                                   "traces-body", "trace-detail"):
                    if not page.driver.find_element(By.ID, element_id).is_displayed():
                        raise Failure(f"#{element_id} is not displayed at {width} px")
                small = page.driver.execute_script(
                    "return [...document.querySelectorAll('#main *, header *')].filter(e => e.children.length === 0 && "
                    "e.innerText && e.innerText.trim() && e.getClientRects().length && parseFloat(getComputedStyle(e).fontSize) < 12)"
                    ".map(e => e.tagName + ':' + e.innerText.slice(0, 20))")
                if small:
                    raise Failure(f"text under 12 px at {width} px: {small[:5]}")
                taken.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({width}x{full})")
            page.set_width(*WIDTHS[0])
            return ", ".join(taken)

        # ---- Recent traces and the waterfall ----

        followed = {}  # the trace the next steps follow: id, and its /traces/{id} answer
        services_through_lb = ["load-balancer", "api-gateway", "blog-service"]

        def row_of(snapshot, trace_id):
            return next((r for r in snapshot["rows"] if r["id"] == trace_id), None)

        def trace_listed():
            traffic.stop()  # at 25 requests/s the 20 newest traces would all be traffic within a second
            trace_id, status = traced_request("/api/posts")
            sent = time.monotonic()
            followed["id"] = trace_id
            row, _ = wait_until("the trace in the page's recent list, with its 3 steps", lambda: (
                r := row_of(page.traces(), trace_id)) and r["steps"] == "3" and r, 8, interval=0.1)
            took = time.monotonic() - sent
            headline = next((t for t in get_json("/traces/recent?limit=200")["traces"] if t["trace_id"] == trace_id), None)
            if headline is None:
                raise Failure(f"the page lists {trace_id} but /traces/recent?limit=200 does not")
            check_trace_row(row, headline)
            if row["tabIndex"] != 0:
                raise Failure(f"trace rows are not focusable (tabIndex {row['tabIndex']})")
            return (f"GET /api/posts {status}, trace {trace_id} listed {took:.1f} s after the request: "
                    f"{row['time']} | {row['request']} | {row['status']} | {row['services']} | {row['duration']} | {row['steps']} steps")

        def waterfall_by_keyboard():
            driver = page.driver
            trace_id = followed["id"]
            ids = [r["id"] for r in page.traces()["rows"]]
            tabs = tab_to_traces(page, "row:" + ids[0])
            arrows = ids.index(trace_id)
            for _ in range(arrows):
                ActionChains(driver).send_keys(Keys.ARROW_DOWN).perform()
            if page.traces()["active"] != "row:" + trace_id:
                raise Failure(f"{arrows} Down presses did not reach the trace's row")
            outlined = driver.execute_script(
                "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0")
            if not outlined:
                raise Failure("the focused trace row has no visible focus outline")
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            opened = time.monotonic()
            snapshot, _ = wait_until("the waterfall of the trace", lambda: (s := page.traces())["detail"]["shown"]
                                     and s["detail"]["id"] == trace_id and s["detail"]["state"] == "loaded" and s, 5)
            took = time.monotonic() - opened
            trace = get_json(f"/traces/{trace_id}")
            followed["trace"] = trace
            summary = check_waterfall(snapshot["detail"], trace, services_through_lb)
            if snapshot["active"] != "trace-detail":
                raise Failure(f"focus should move to the waterfall; it is on {snapshot['active']}")
            current = [r["id"] for r in snapshot["rows"] if r["current"] == "true"]
            if current != [trace_id]:
                raise Failure(f"aria-current should be on the opened row only: {current}")
            return f"{tabs} × Tab to the first trace, {arrows} × Down, Enter; drawn in {took:.1f} s: {summary} (of {trace['duration_ms']} ms)"

        def waterfall_stays():
            driver = page.driver
            trace_id = followed["id"]
            selector = f"#traces-body tr[data-trace-id='{trace_id}']"
            driver.execute_script("document.querySelector(arguments[0]).dataset.testKept = 'yes'", selector)
            newer = [traced_request("/api/posts")[0] for _ in range(3)]
            sent = time.monotonic()
            changes = []  # (seconds, refresh count) each time the list was redrawn

            def newer_listed():
                snapshot = page.traces()
                if not changes or changes[-1][1] != snapshot["refreshes"]:
                    changes.append((time.monotonic(), snapshot["refreshes"]))
                listed = all(row_of(snapshot, n) for n in newer)
                # Two redraws after the first one seen: one whole interval measured.
                return listed and len(changes) >= 3 and snapshot

            snapshot, _ = wait_until("three newer traces listed, and two refreshes", newer_listed, 14, interval=0.05)
            ids = [r["id"] for r in snapshot["rows"]]
            if not all(ids.index(n) < ids.index(trace_id) for n in newer):
                raise Failure(f"newer traces should be listed above the older one: {ids}")
            interval = changes[-1][0] - changes[-2][0]
            if not 4.0 <= interval <= 7.0:
                raise Failure(f"the list refreshed {interval:.1f} s after the previous refresh, expected about every 5 s")
            kept = driver.execute_script("const tr = document.querySelector(arguments[0]); return !!tr && tr.dataset.testKept === 'yes'", selector)
            if not kept:
                raise Failure("the open trace's row was replaced by a new element on refresh (the list would flicker)")
            if row_of(snapshot, trace_id)["current"] != "true":
                raise Failure("the open trace's row lost aria-current on refresh")
            detail = snapshot["detail"]
            if not detail["shown"] or detail["id"] != trace_id or len(detail["spans"]) != 3:
                raise Failure(f"the waterfall left its trace: {detail['id']!r}, {len(detail['spans'])} spans")
            if snapshot["active"] != "trace-detail":
                raise Failure(f"a refresh moved the focus to {snapshot['active']}")
            return (f"3 newer traces listed above it {time.monotonic() - sent:.1f} s after they were sent; refresh interval "
                    f"{interval:.1f} s; its row kept (same element, aria-current); waterfall and focus unchanged")

        def close_and_click():
            driver = page.driver
            trace_id = followed["id"]
            ActionChains(driver).send_keys(Keys.ESCAPE).perform()
            snapshot = page.traces()
            if snapshot["detail"]["shown"]:
                raise Failure("Escape did not close the waterfall")
            if snapshot["active"] != "row:" + trace_id:
                raise Failure(f"closing should return focus to the trace's row; it is on {snapshot['active']}")
            row = driver.find_element(By.CSS_SELECTOR, f"#traces-body tr[data-trace-id='{trace_id}']")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
            ActionChains(driver).move_to_element(row).click().perform()
            snapshot, _ = wait_until("the waterfall again after a click", lambda: (s := page.traces())["detail"]["shown"]
                                     and s["detail"]["id"] == trace_id and s["detail"]["state"] == "loaded" and s, 5)
            check_waterfall(snapshot["detail"], followed["trace"], services_through_lb)
            return "Escape closed it and focused the row; a click opened it again"

        def waterfall_screenshots():
            nonlocal shots_taken
            taken = []
            for width, height in WIDTHS:
                path = OUT / f"traces-waterfall-{width}.png"
                page.screenshot_of(path, width, height, "#trace-detail")
                shots_taken = True
                scroll_width, inner = page.overflow()
                if scroll_width > inner:
                    raise Failure(f"at {width} px the page scrolls sideways ({scroll_width} > {inner})")
                detail = page.traces()["detail"]
                check_waterfall(detail, followed["trace"], services_through_lb)
                for span in detail["spans"]:
                    for label in span["labels"]:
                        if not label["shown"] or not label["text"]:
                            raise Failure(f"at {width} px a label of {span['name']} is empty or hidden: {label}")
                        if label["left"] < span["li"]["left"] - 0.5 or label["right"] > span["li"]["right"] + 0.5:
                            raise Failure(f"at {width} px {label['text']!r} sticks out of its row")
                    if span["track"]["width"] < 0.4 * width:
                        raise Failure(f"at {width} px the track of {span['name']} is only {span['track']['width']:.0f} px wide")
                taken.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            page.set_width(*WIDTHS[0])
            return ", ".join(taken) + "; labels inside their rows, bars in proportion at both widths"

        def restart_noise(entry):
            """A refused connection while the load balancer restarts, or a 401 from a trace route."""
            message = entry["message"]
            return entry["level"] == "SEVERE" and (
                ("ERR_CONNECTION_REFUSED" in message and re.search(rf":{LB_PORT}/(stats|traces/recent)", message))
                or (f":{LB_PORT}/traces/" in message and "status of 401" in message))

        def admin_token():
            page.read_console("before the admin token")
            try:
                detail = admin_token_steps(page.driver, f"browser-test-{uuid.uuid4().hex}")
            finally:
                # They are this step's point, not page errors; anything else is left to the console check.
                token_console.extend(e for e in page.read_console("admin token") if restart_noise(e))
            return f"{detail}; {len(token_console)} refused-connection and 401 console lines (expected)"

        def admin_token_steps(driver, token):
            stack.run("stop", "load-balancer")
            stack.run("start", "load-balancer", env={"ADMIN_TOKEN": token})
            restarted = time.monotonic()
            try:
                get_json("/traces/recent")
                raise Failure("with ADMIN_TOKEN set, /traces/recent answered without a token")
            except urllib.error.HTTPError as error:
                body = json.load(error)
                if error.code != 401 or body.get("error", {}).get("code") != "unauthorized":
                    raise Failure(f"/traces/recent without the token: {error.code} {body}") from error
            snapshot, _ = wait_until("the admin-token field", lambda: (s := page.traces())["tokenForm"] and s, 12)
            took = time.monotonic() - restarted
            if snapshot["listShown"] or "401" not in snapshot["message"]:
                raise Failure(f"with a 401 the list should give way to the token field and say why: {snapshot['message']!r}")
            tab_to_traces(page, "traces-token")
            ActionChains(driver).send_keys("wrong-" + token, Keys.ENTER).perform()
            wait_until("'refused' for a wrong token", lambda: "refused" in page.traces()["message"], 5)
            if driver.execute_script("return sessionStorage.getItem('titanium.adminToken')"):
                raise Failure("a refused token stayed in sessionStorage")
            page.screenshot_of(OUT / "traces-token-1280.png", *WIDTHS[0], ".traces-section")
            field = driver.find_element(By.ID, "traces-token")
            ActionChains(driver).move_to_element(field).click().send_keys(token, Keys.ENTER).perform()
            snapshot, _ = wait_until("the list back with the token", lambda: (s := page.traces())["listShown"]
                                     and not s["tokenForm"] and row_of(s, followed["id"]) and s, 5)
            if snapshot["message"]:
                raise Failure(f"a message is left over: {snapshot['message']!r}")
            if driver.execute_script("return sessionStorage.getItem('titanium.adminToken')") != token:
                raise Failure("the accepted token is not in sessionStorage")
            row = driver.find_element(By.CSS_SELECTOR, f"#traces-body tr[data-trace-id='{followed['id']}']")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
            ActionChains(driver).move_to_element(row).click().perform()
            snapshot, _ = wait_until("the waterfall with the token", lambda: (s := page.traces())["detail"]["shown"]
                                     and s["detail"]["id"] == followed["id"] and s["detail"]["state"] == "loaded" and s, 5)
            check_waterfall(snapshot["detail"], get_json(f"/traces/{followed['id']}", token=token), services_through_lb)
            return (f"load balancer restarted with ADMIN_TOKEN: token field {took:.1f} s later; a wrong token (Tab, typed, "
                    f"Enter) refused and not kept; the right one brought the list back and opened the waterfall")

        def console_clean():
            page.read_console("end")
            page_entries = [e for e in page.console if e not in outage_console and e not in token_console]
            errors = [e for e in page_entries if e["level"] == "SEVERE"]
            warnings = [e for e in page_entries if e["level"] == "WARNING"]
            for entry in warnings:
                log(f"console warning: {entry['message']}")
            if errors:
                raise Failure("console errors: " + "; ".join(f"[{e['step']}] {e['message']}" for e in errors))
            return f"{len(page_entries)} console lines outside the load balancer restarts, none an error"

        steps = [
            ("IDLE with its hint before any traffic", idle),
            ("heartbeat ON (keyboard) turns IDLE off within 10 s", heartbeat_on),
            ("load balancer unreachable: banner, last figures dimmed, recovers by itself", outage),
            ("heartbeat OFF (keyboard) brings IDLE back", heartbeat_off),
        ]
        for name, function in steps:
            if not run.step(name, function):
                break
        else:
            traffic = Traffic()
            traffic.start()
            for name, function in [
                ("KPIs and table match /stats at the same moment", kpis_match),
                ("stopping blog-service puts an alarm on the page within 5 s", alarm_on_stop),
                ("KPIs and table match /stats while degraded", kpis_match_degraded),
                ("starting blog-service clears OFFLINE", recovery),
                ("a fault injected through the load balancer: badge on its row and an alarm; removed, both say so", fault_shown),
                ("a request's trace is listed within 8 s, as /traces/recent has it", trace_listed),
                ("Enter on its row opens the waterfall: 3 services in order, durations as /traces/{id}", waterfall_by_keyboard),
                ("the list refreshes every 5 s without redrawing kept rows; the waterfall stays", waterfall_stays),
                ("Escape closes the waterfall, a click opens it", close_and_click),
                ("waterfall readable at 1280 px and 390 px; screenshots", waterfall_screenshots),
                ("readable at 1280 px and 390 px; screenshots", screenshots),
                ("ADMIN_TOKEN: a 401 shows the token field; the token brings the traces back", admin_token),
            ]:
                if not run.step(name, function):
                    break
        run.step("no error in the browser console", console_clean)
    except KeyboardInterrupt as interrupt:
        run.failed.append(f"interrupted ({interrupt})")
    except Exception as error:  # noqa: BLE001 - set-up failures
        run.failed.append(f"set-up: {error}")
        log(f"FAIL set-up: {error}")
        traceback.print_exc()
    finally:
        if traffic:
            log(f"traffic sent: {traffic.stop()}")
        if page:
            if not shots_taken:
                # Screenshots on every run: a failed one shows what the page said.
                for width, height in WIDTHS:
                    try:
                        page.screenshot(OUT / f"dashboard-{width}.png", width, height)
                    except Exception as error:  # noqa: BLE001
                        log(f"screenshot at {width} px failed: {error}")
            page.quit()
        stack.down()
        log(f"stack stopped; screenshots and service logs in {OUT}; {time.monotonic() - started:.0f} s in all")
    print(f"browser: {len(run.passed)} passed, {len(run.failed)} failed")
    return 1 if run.failed else 0


def fail(message):
    raise Failure(message)


if __name__ == "__main__":
    sys.exit(main())
