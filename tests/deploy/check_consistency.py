#!/usr/bin/env python3
"""Consistency of the deployment files with the code.

What the services really do is read from the Swift sources, never from a hand-kept list:
the environment variables each service reads (the `settings.<type>("dotted.key")` calls of its
target and of the shared modules it links, per Package.swift), its routes, its default port
and the metric names the code exports. Then:

- docker-compose.yml and every rendered Kustomize overlay set only variables their service
  reads; probe and healthcheck paths are routes of the service they point at; container ports
  are the ports the services listen on; every URL in a setting names a real compose service or
  Kubernetes Service, on a port it serves and a path it routes; the load balancer's
  STATS_TARGETS lists every other service (headless Services in Kubernetes), never itself;
  paths a service writes are on writable volumes under a read-only root filesystem.
- each Services/*/README.md lists exactly the variables its service reads beyond the ones every
  service reads (ServiceConfiguration, TraceConfiguration), every route it registers beyond the
  operational ones, and only metric names its code exports (every one specific to it included).
- every image skaffold builds is used by the manifests, and every image the manifests use is
  built (or is a pinned third-party image); every build target exists in the Dockerfile.
- the Prometheus configurations scrape every service where it listens (the Kubernetes
  relabelling is simulated on the rendered pods), and every metric name used by the alert rules
  and the Grafana dashboards is one the services export; dashboard queries parse (promtool).
- the NetworkPolicies allow exactly the connections the settings make (simulated per overlay).
- the monitoring component (k8s-manifests/components/monitoring, in the *-monitoring overlays)
  mounts monitoring/'s files where its configuration reads them (every rule file and dashboard),
  its Prometheus has the RBAC its discovery roles need, Alertmanager routes as compose does to a
  receiver that logs, and a real notification from Debian's Alertmanager through that receiver's
  nginx configuration lands in its log; the skaffold profile `monitoring` renders that overlay.
- openapi/titanium.json and Services/api-gateway/OpenAPIDocument.swift are what scripts/openapi.py
  makes from openapi/titanium.yaml now.
- the users.db backup script of the CronJob runs against a live WAL database and keeps the
  newest BACKUP_KEEP copies; the CronJob mounts user-service's users.db volume read-only, and the
  on-demand restore Job (k8s-manifests/base/user-service-restore-job.yaml) writes that volume
  and reads the backup volume read-only (tests/edge/test_backup_restore.py runs both scripts); the dashboard-ui image's nginx.conf serves dashboard-ui/ (with
  Debian's nginx).
- the postgres component (k8s-manifests/components/postgres, in the *-postgres overlays): user-
  and blog-service reach PostgreSQL by DATABASE_URL (a URL like any other: its host is a Service
  on its port, and the NetworkPolicies allow exactly those connections), keep no SQLite volume and
  no pod affinity, spread over nodes, blog-service runs 2 replicas; the pg_dump CronJob replaces
  the users.db one with the same schedule and retention and uses the database the services use,
  as does the on-demand restore Job beside it; the skaffold profile `postgres` renders that
  overlay and creates its Secret first. Variables set only to be expanded into another one
  (`$(POSTGRES_PASSWORD)` in DATABASE_URL, done by the kubelet) need no reader.

Usage: check_consistency.py [--rendered OVERLAY=FILE ...] [--promtool PATH]
Overlays that are not given rendered are rendered with `kubectl kustomize`.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVICES = ["load-balancer", "api-gateway", "auth-service", "user-service", "blog-service"]
OVERLAYS = {"local": "k8s-manifests/overlays/local", "production": "k8s-manifests/overlays/production",
            "local-monitoring": "k8s-manifests/overlays/local-monitoring",
            "production-monitoring": "k8s-manifests/overlays/production-monitoring",
            "local-postgres": "k8s-manifests/overlays/local-postgres",
            "production-postgres": "k8s-manifests/overlays/production-postgres"}
MONITORING_COMPONENT = "k8s-manifests/components/monitoring"
POSTGRES_COMPONENT = "k8s-manifests/components/postgres"
IMAGE_PREFIX = "titanium/"

# Variables set in the deployment files ahead of the code that reads them (being added by
# another change). Setting one that is not read yet is a warning, not a failure; once the code
# reads it, the entry is reported as stale and should be removed.
# (None now: issue 22's DATABASE_URL and OTEL_EXPORTER_OTLP_ENDPOINT are read by the code.)
PENDING: dict[str, set[str]] = {
}

# Variables naming a place a service writes (the directory must be writable under a read-only
# root filesystem), and ones naming a file it only reads when present.
WRITTEN_PATHS = {"DATA_DIR": "dir", "USER_DB_PATH": "file", "BLOG_DB_PATH": "file", "TRACE_DB_PATH": "file"}
READ_PATHS = {"JWT_PRIVATE_KEY_FILE": "file", "DASHBOARD_DIR": "dir"}

# Series Prometheus itself produces.
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                      "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.warnings: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(message)
            print(f"FAIL {message}")
        return ok

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"WARN {message}")


R = Report()


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------
# What the Swift code does


def balanced_block(text: str, start: int) -> str:
    """The text from `start` (an opening parenthesis) to its matching closing one."""
    depth = 0
    in_string = False
    i = start
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1
    raise ValueError("unbalanced parentheses in Package.swift")


class SwiftPackage:
    TARGET_KINDS = ("target", "executableTarget", "systemLibrary", "testTarget")
    SETTINGS_METHODS = ("string", "optionalString", "int", "double", "bool", "choice", "httpURL", "httpURLs", "list")

    def __init__(self) -> None:
        manifest = read("Package.swift")
        self.targets: dict[str, dict] = {}
        for match in re.finditer(r"\.(%s)\(" % "|".join(self.TARGET_KINDS), manifest):
            block = balanced_block(manifest, match.end() - 1)
            literal = re.search(r'name:\s*"([^"]+)"', block)
            if literal is None:
                continue  # a target made by a function (Package.swift's serviceTests): test code only
            name = literal.group(1)
            path = re.search(r'path:\s*"([^"]+)"', block)
            deps: list[str] = []
            dep_match = re.search(r"dependencies:\s*\[", block)
            if dep_match:
                deps_text = balanced_block(block, dep_match.end() - 1)
                deps_text = re.sub(r"\.product\([^)]*\)", "", deps_text)
                deps = re.findall(r'"([^"]+)"', deps_text)
            self.targets[name] = {"path": path.group(1) if path else f"Sources/{name}", "deps": deps}
        self.products = {m.group(1): m.group(2) for m in
                         re.finditer(r'\.executable\(name:\s*"([^"]+)",\s*targets:\s*\["([^"]+)"\]', manifest)}

    def closure(self, target: str) -> list[str]:
        seen: list[str] = []
        stack = [target]
        while stack:
            t = stack.pop()
            if t in seen or t not in self.targets:
                continue
            seen.append(t)
            stack.extend(self.targets[t]["deps"])
        return seen

    def swift_files(self, product: str) -> list[str]:
        files: list[str] = []
        for target in self.closure(self.products[product]):
            files += sorted(glob.glob(os.path.join(ROOT, self.targets[target]["path"], "**", "*.swift"), recursive=True))
        return files

    @classmethod
    def settings_keys(cls, path: str) -> tuple[set[str], list[str]]:
        """Dotted keys read in one file, and the calls whose key could not be resolved."""
        text = open(path, encoding="utf-8").read()
        keys: set[str] = set()
        unresolved: list[str] = []
        methods = "|".join(cls.SETTINGS_METHODS)
        keys.update(re.findall(r'\bsettings\.(?:%s)\(\s*"([^"]+)"' % methods, text))
        keys.update(re.findall(r'\bConfigKey\(\s*"([^"]+)"', text))
        # A key passed through a helper: `func pool(_ key: String, ...) { settings.httpURLs(key, ...) }`
        # reads the literals of every `pool("...")` call in the same file.
        for match in re.finditer(r'\bsettings\.(?:%s)\(\s*([A-Za-z_]\w*)\s*[,)]' % methods, text):
            variable = match.group(1)
            helper = None
            for func in re.finditer(r'func\s+(\w+)\s*\(\s*_\s+%s\s*:\s*String' % re.escape(variable), text[:match.start()]):
                helper = func.group(1)
            literals = re.findall(r'\b%s\(\s*"([^"]+)"' % re.escape(helper), text) if helper else []
            if literals:
                keys.update(literals)
            else:
                unresolved.append(f"{os.path.relpath(path, ROOT)}: settings.…({variable})")
        # Direct reads of the process environment.
        direct = set(re.findall(r'environment\[\s*"([A-Z][A-Z0-9_]*)"\s*\]', text))
        direct |= set(re.findall(r'getenv\(\s*"([A-Z][A-Z0-9_]*)"\s*\)', text))
        keys.update(k.lower().replace("_", ".") for k in direct)
        return keys, unresolved

    @staticmethod
    def variable(key: str) -> str:
        return key.upper().replace(".", "_").replace("-", "_")

    def variables(self, product: str) -> set[str]:
        result: set[str] = set()
        for path in self.swift_files(product):
            keys, unresolved = self.settings_keys(path)
            for call in unresolved:
                R.check(False, f"{product}: cannot tell which setting {call} reads; teach tests/deploy/check_consistency.py")
            result |= {self.variable(k) for k in keys}
        return result

    def route_calls(self, product: str) -> set[tuple[str | None, str]]:
        """(method, path) of every route registered with a literal path; the method is None for `.on(…)`."""
        calls: set[tuple[str | None, str]] = set()
        for path in self.swift_files(product):
            text = open(path, encoding="utf-8").read()
            for method, route in re.findall(r'\.(get|post|put|patch|delete|head|on)\(\s*"(/[^"]*)"', text):
                calls.add((None if method == "on" else method.upper(), route))
        return calls

    def routes(self, product: str) -> set[str]:
        return {route for _, route in self.route_calls(product)}

    def default_port(self, product: str) -> int | None:
        for path in self.swift_files(product):
            match = re.search(r'ServiceMain\.run\(\s*service:\s*"%s",\s*defaultPort:\s*(\d+)' % re.escape(product),
                              open(path, encoding="utf-8").read())
            if match:
                return int(match.group(1))
        return None

    @staticmethod
    def exported_metrics(paths: list[str] | None = None) -> dict[str, str]:
        """Metric name → type, for every metric the services' code (or the files `paths`) registers or prints."""
        metrics: dict[str, str] = {}
        if paths is None:
            paths = glob.glob(os.path.join(ROOT, "Services", "**", "*.swift"), recursive=True) + \
                glob.glob(os.path.join(ROOT, "Shared", "**", "*.swift"), recursive=True)
        for path in paths:
            text = open(path, encoding="utf-8").read()
            for kind, name in re.findall(r'make(Counter|Gauge|DurationHistogram|ValueHistogram|Histogram|Summary)\(\s*named?:\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', text):
                metrics[name] = "histogram" if "Histogram" in kind else kind.lower()
            for kind, name in re.findall(r'\b(Counter|Gauge|Meter|Timer|Recorder|FloatingPointCounter)\(\s*label:\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', text):
                metrics[name] = "histogram" if kind in ("Timer", "Recorder") else "counter"
            for name, kind in re.findall(r'# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) (counter|gauge|histogram|summary)', text):
                metrics[name] = kind
        return metrics


# ----------------------------------------------------------------------------------------------
# Helpers


def compose_interpolate(value: str) -> str:
    """docker-compose variable substitution with no variables set: defaults, `$$` → `$`."""
    def substitute(match: re.Match) -> str:
        body = match.group(1)
        for op in (":-", "-"):
            if op in body:
                return body.split(op, 1)[1]
        return ""
    value = re.sub(r"\$\{([^}]+)\}", substitute, value.replace("$$", "\x00"))
    return value.replace("\x00", "$")


def compose_env(service: dict) -> dict:
    """A compose service's environment, from the mapping or the KEY=VALUE list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: compose_interpolate(str(v)) for k, v in env.items()}


def urls_in(value: str) -> list[str]:
    return re.findall(r"\b(?:https?|redis|postgres(?:ql)?)://[^\s,]+", str(value))


def split_url(url: str) -> tuple[str, int | None, str]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443, "redis": 6379, "postgres": 5432, "postgresql": 5432}.get(parts.scheme)
    return parts.hostname or "", parts.port or default, parts.path or ""


def parse_stats_targets(value: str) -> list[tuple[str, str]]:
    pairs = []
    for entry in [e.strip() for e in str(value).split(",") if e.strip()]:
        name, _, url = entry.partition("=")
        pairs.append((name, url))
    return pairs


def under(path: str, mounts: list[str]) -> bool:
    path = os.path.normpath(path)
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in map(os.path.normpath, mounts))


class Dockerfile:
    def __init__(self, path: str = "Dockerfile") -> None:
        self.text = read(path)
        self.stages: dict[str, dict] = {}
        current = None
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            heredoc = re.match(r'^\s*COPY\s+<<["\']?(\w+)["\']?\s+(\S+)', line)
            if heredoc:
                end = heredoc.group(1)
                body = []
                i += 1
                while i < len(lines) and lines[i].strip() != end:
                    body.append(lines[i])
                    i += 1
                if current:
                    current["files"][heredoc.group(2)] = "\n".join(body)
                i += 1
                continue
            # A file copied from the build context keeps its content under its destination too.
            copied = re.match(r"^\s*COPY\s+([^-\s]\S*)\s+(/\S+)\s*$", line)
            if copied and current is not None and os.path.isfile(os.path.join(ROOT, copied.group(1))):
                current["files"][copied.group(2)] = read(copied.group(1))
            m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            if m:
                current = {"from": m.group(1), "user": None, "env": {}, "entrypoint": None, "expose": [], "files": {}}
                self.stages[m.group(2) or f"stage{len(self.stages)}"] = current
            elif current is not None:
                if m := re.match(r"^USER\s+(\S+)", line):
                    current["user"] = m.group(1)
                elif m := re.match(r"^ENTRYPOINT\s+(\[.*\])", line):
                    current["entrypoint"] = json.loads(m.group(1))
                elif m := re.match(r"^EXPOSE\s+(.+)", line):
                    current["expose"] += [int(p.split("/")[0]) for p in m.group(1).split()]
                elif re.match(r"^ENV\s", line):
                    statement = line
                    while statement.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        statement = statement[:-1] + " " + lines[i].strip()
                    for key, value in re.findall(r"(\w+)=(\S+)", statement[4:]):
                        current["env"][key] = value
            i += 1

    def resolved(self, stage: str, field: str):
        """A field of a stage, inherited from the stage it is built FROM."""
        seen = set()
        while stage in self.stages and stage not in seen:
            seen.add(stage)
            value = self.stages[stage][field]
            if value:
                return value
            stage = self.stages[stage]["from"]
        return None

    def env(self, stage: str) -> dict:
        chain = []
        while stage in self.stages and stage not in chain:
            chain.append(stage)
            stage = self.stages[stage]["from"]
        env: dict = {}
        for s in reversed(chain):
            env.update(self.stages[s]["env"])
        return env

    def nginx(self) -> tuple[set[int], set[str]]:
        """Ports nginx listens on and exact locations it answers, from the dashboard-ui stage."""
        conf = "\n".join(self.stages.get("dashboard-ui", {}).get("files", {}).values())
        ports = {int(p) for p in re.findall(r"^\s*listen\s+(\d+)", conf, re.M)}
        locations = set(re.findall(r"location\s*=\s*(\S+)", conf))
        return ports, locations


def dashboard_files() -> set[str]:
    base = os.path.join(ROOT, "dashboard-ui")
    files = {"/"} if os.path.exists(os.path.join(base, "index.html")) else set()
    for path in glob.glob(os.path.join(base, "**", "*"), recursive=True):
        if os.path.isfile(path):
            files.add("/" + os.path.relpath(path, base))
    return files


# ----------------------------------------------------------------------------------------------
# Checks


def check_variables(where: str, service: str, names: set[str], read_vars: dict[str, set[str]]) -> None:
    for name in sorted(names):
        if name in read_vars[service]:
            R.check(True, "")
            continue
        if service in PENDING.get(name, set()):
            R.warn(f"{where}: {service} sets {name}, which the code does not read yet (pending)")
            continue
        R.check(False, f"{where}: {service} sets {name}, but {service} never reads it")


def check_pending(read_vars: dict[str, set[str]]) -> None:
    for name, services in PENDING.items():
        for service in services:
            if name in read_vars[service]:
                R.warn(f"PENDING entry {name} for {service} is read by the code now: remove it from tests/deploy/check_consistency.py")


def check_compose(pkg: SwiftPackage, df: Dockerfile, read_vars, routes, ports) -> dict:
    compose = yaml.safe_load(read("docker-compose.yml"))
    services = compose.get("services", {})
    nginx_ports, nginx_locations = df.nginx()
    listen: dict[str, int] = {}
    for name in SERVICES:
        if not R.check(name in services, f"docker-compose.yml: no service {name}"):
            continue
        env = compose_env(services[name])
        listen[name] = int(env.get("HTTP_PORT") or df.env(name).get("HTTP_PORT") or ports[name])
    listen["dashboard-ui"] = min(nginx_ports) if nginx_ports else 0
    listen["redis"] = 6379

    for name, svc in services.items():
        image = str(svc.get("image", ""))
        build = svc.get("build")
        if build:
            target = build.get("target") if isinstance(build, dict) else None
            R.check(target in df.stages, f"docker-compose.yml: {name} builds Dockerfile target {target!r}, which does not exist")
            R.check(image.startswith(f"{IMAGE_PREFIX}{target}:") or image == f"{IMAGE_PREFIX}{target}",
                    f"docker-compose.yml: {name} builds target {target} but is tagged {image!r}")
        else:
            R.check(":" in image and not image.endswith(":latest"), f"docker-compose.yml: {name} uses unpinned image {image!r}")
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                R.check(os.path.exists(os.path.join(ROOT, source)), f"docker-compose.yml: {name} mounts missing {source}")
        for dep, spec in (svc.get("depends_on") or {}).items():
            R.check(dep in services, f"docker-compose.yml: {name} depends on unknown {dep}")
            if isinstance(spec, dict) and spec.get("condition") == "service_healthy":
                R.check("healthcheck" in services.get(dep, {}), f"docker-compose.yml: {name} waits for {dep} to be healthy, but {dep} has no healthcheck")

    for name in SERVICES:
        if name not in services:
            continue
        svc = services[name]
        env = compose_env(svc)
        check_variables("docker-compose.yml", name, set(env), read_vars)
        # Ports: what is exposed or published is where the service listens.
        container_ports = {int(str(p).split(":")[-1].split("/")[0]) for p in (svc.get("expose") or [])}
        container_ports |= {int(compose_interpolate(str(p)).split(":")[-1].split("/")[0]) for p in (svc.get("ports") or [])}
        R.check(container_ports == {listen[name]}, f"docker-compose.yml: {name} listens on {listen[name]} but exposes {sorted(container_ports)}")
        # Healthcheck on /health/ready of this very service.
        test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
        test = compose_interpolate(test)
        paths = re.findall(r"GET (/\S*) HTTP|https?://[^/\s]+(/\S*)", test)
        paths = [a or b for a, b in paths]
        R.check(paths == ["/health/ready"], f"docker-compose.yml: {name} healthcheck should GET /health/ready, found {paths}")
        for path in paths:
            R.check(path in routes[name], f"docker-compose.yml: {name} healthcheck path {path} is not a route of {name}")
        R.check("$HTTP_PORT" in test or str(listen[name]) in test, f"docker-compose.yml: {name} healthcheck does not use the service's port")
        # URLs point at compose services, on the port they listen on, at paths they route.
        for key, value in env.items():
            for url in urls_in(value):
                host, port, path = split_url(url)
                if not R.check(host in services, f"docker-compose.yml: {name} {key} points at unknown host {host}"):
                    continue
                R.check(port == listen.get(host), f"docker-compose.yml: {name} {key}={url}: {host} listens on {listen.get(host)}")
                if path and host in SERVICES:
                    R.check(path in routes[host], f"docker-compose.yml: {name} {key}={url}: {path} is not a route of {host}")
        if name == "load-balancer":
            check_stats_targets("docker-compose.yml", env.get("STATS_TARGETS", ""), lambda host: host)
        # Read-only root filesystem: written paths on volumes or tmpfs.
        if svc.get("read_only"):
            mounts = [str(v).split(":")[1] for v in svc.get("volumes") or []] + list(svc.get("tmpfs") or [])
            check_paths("docker-compose.yml", name, {**df.env(name), **env}, mounts, mounts)

    # dashboard-ui: healthcheck on a location nginx answers.
    if "dashboard-ui" in services:
        test = " ".join(map(str, services["dashboard-ui"].get("healthcheck", {}).get("test", [])))
        found = re.findall(r"https?://[^:/\s]+:(\d+)(/\S*)", test)
        found += [(port, path) for port in re.findall(r"/dev/tcp/[^/\s]+/(\d+)", test) for path in re.findall(r"GET (/\S*) HTTP", test)]
        R.check(bool(found), "docker-compose.yml: dashboard-ui healthcheck requests no path")
        for port, path in found:
            R.check(int(port) in nginx_ports, f"docker-compose.yml: dashboard-ui healthcheck port {port} is not nginx's {sorted(nginx_ports)}")
            R.check(path in nginx_locations | dashboard_files(), f"docker-compose.yml: dashboard-ui healthcheck path {path} is not served")

    # Prometheus scrapes every service where compose runs it.
    prom = yaml.safe_load(read("monitoring/prometheus.yml"))
    scraped: dict[str, str] = {}
    for job in prom.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, port = target.partition(":")
                if host in ("localhost", "127.0.0.1"):
                    continue
                R.check(host in SERVICES and int(port) == listen.get(host),
                        f"monitoring/prometheus.yml: target {target} is not a Titanium service on its port")
                R.check(static.get("labels", {}).get("service") == host, f"monitoring/prometheus.yml: target {target} needs label service={host}")
                R.check(job.get("metrics_path", "/metrics") in routes.get(host, set()), f"monitoring/prometheus.yml: {target} has no route {job.get('metrics_path', '/metrics')}")
                scraped[host] = target
    for name in SERVICES:
        R.check(name in scraped, f"monitoring/prometheus.yml: {name} is not scraped")
    return compose


def check_stats_targets(where: str, value: str, resolve) -> None:
    pairs = parse_stats_targets(value)
    names = [n for n, _ in pairs]
    R.check(sorted(names) == sorted(s for s in SERVICES if s != "load-balancer"),
            f"{where}: STATS_TARGETS should list every service but the load balancer once, has {names}")
    for name, url in pairs:
        host, _, _ = split_url(url)
        R.check(resolve(host) != "load-balancer", f"{where}: STATS_TARGETS entry {name} points at the load balancer itself")


def check_paths(where: str, service: str, env: dict, writable: list[str], readable: list[str]) -> None:
    for key, kind in WRITTEN_PATHS.items():
        if key in env:
            directory = env[key] if kind == "dir" else os.path.dirname(env[key])
            R.check(under(directory, writable), f"{where}: {service} writes {key}={env[key]} outside its writable volumes {writable}")
    for key, kind in READ_PATHS.items():
        if key in env and key != "DASHBOARD_DIR":
            directory = env[key] if kind == "dir" else os.path.dirname(env[key])
            R.check(under(directory, readable), f"{where}: {service} reads {key}={env[key]} from outside its volumes {readable}")


def pod_specs(resources: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(workload, pod template metadata, pod spec) of every Deployment, StatefulSet and CronJob."""
    result = []
    for r in resources:
        kind = r["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            t = r["spec"]["template"]
        elif kind == "CronJob":
            t = r["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Job":
            t = r["spec"]["template"]
        else:
            continue
        result.append((r, t.get("metadata", {}), t["spec"]))
    return result


def image_name(image: str) -> tuple[str, str | None]:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", None)
    return (name, tag) if tag is not None else (image, None)


def check_overlay(overlay: str, resources: list[dict], df: Dockerfile, read_vars, routes, ports, prom_k8s) -> set[str]:
    where = f"overlay {overlay}"
    by_kind: dict[str, dict[str, dict]] = {}
    for r in resources:
        by_kind.setdefault(r["kind"], {})[r["metadata"]["name"]] = r
    configmaps = by_kind.get("ConfigMap", {})
    services = by_kind.get("Service", {})
    pvcs = by_kind.get("PersistentVolumeClaim", {})
    nginx_ports, nginx_locations = df.nginx()
    template_secret = yaml.safe_load(read("k8s-manifests/base/auth-jwt-key.secret.template.yaml"))
    images_used: set[str] = set()

    pods = pod_specs(resources)
    # Which Titanium service each pod template runs, and its labels.
    pod_service: list[tuple[str | None, dict, dict, dict]] = []
    for workload, meta, spec in pods:
        service = None
        for c in spec.get("containers", []):
            name, _ = image_name(c["image"])
            if name.startswith(IMAGE_PREFIX) and name[len(IMAGE_PREFIX):] in SERVICES:
                service = name[len(IMAGE_PREFIX):]
        pod_service.append((service, workload, meta, spec))

    def container_env(c: dict) -> dict:
        env: dict = {}
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]["name"]
                if R.check(ref in configmaps, f"{where}: envFrom ConfigMap {ref} does not exist"):
                    env.update(configmaps[ref].get("data", {}))
            if "secretRef" in source:
                env.update({k: "<secret>" for k in by_kind.get("Secret", {}).get(source["secretRef"]["name"], {}).get("data", {})})
        for e in c.get("env", []):
            env[e["name"]] = e.get("value", "<ref>")
        return env

    def service_for_host(host: str) -> tuple[dict | None, str | None]:
        svc = services.get(host)
        if not svc:
            return None, None
        selector = svc["spec"].get("selector", {})
        for service, _, meta, _ in pod_service:
            labels = meta.get("labels", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                return svc, service or labels.get("app.kubernetes.io/name")
        return svc, None

    for service, workload, meta, spec in pod_service:
        wname = f"{workload['kind']} {workload['metadata']['name']}"
        security = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                R.check(claim in pvcs, f"{where}: {wname} mounts PVC {claim}, which does not exist")
            if "secret" in v:
                secret = v["secret"]["secretName"]
                R.check(secret in by_kind.get("Secret", {}) or secret == template_secret["metadata"]["name"],
                        f"{where}: {wname} mounts Secret {secret}, neither rendered nor the documented template")
            if "configMap" in v:
                R.check(v["configMap"]["name"] in configmaps, f"{where}: {wname} mounts missing ConfigMap {v['configMap']['name']}")
        for c in spec.get("containers", []):
            cname = f"{wname} container {c['name']}"
            name, tag = image_name(c["image"])
            if name.startswith(IMAGE_PREFIX):
                images_used.add(name)
            else:
                R.check(tag not in (None, "latest"), f"{where}: {cname} uses unpinned third-party image {c['image']}")
            # Hardening and resources, on every container.
            csec = c.get("securityContext", {})
            R.check(csec.get("runAsNonRoot", security.get("runAsNonRoot")) is True, f"{where}: {cname} is not runAsNonRoot")
            R.check(csec.get("readOnlyRootFilesystem") is True, f"{where}: {cname} has a writable root filesystem")
            R.check(csec.get("allowPrivilegeEscalation") is False, f"{where}: {cname} allows privilege escalation")
            R.check("ALL" in csec.get("capabilities", {}).get("drop", []), f"{where}: {cname} does not drop ALL capabilities")
            res = c.get("resources", {})
            R.check(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
                    f"{where}: {cname} lacks cpu/memory requests and limits")
            mounts = c.get("volumeMounts", [])
            writable = [m["mountPath"] for m in mounts if not m.get("readOnly")
                        and not {"secret", "configMap"} & set(volumes.get(m["name"], {}))]
            readable = [m["mountPath"] for m in mounts]
            env = container_env(c)
            container_ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

            if service:
                svc_env = {**df.env(service), **env}
                # Set only to be expanded into another variable by the kubelet ($(NAME)).
                expanded = {e["name"] for e in c.get("env", [])
                            if any(f"$({e['name']})" in str(o.get("value", "")) for o in c.get("env", []) if o is not e)}
                check_variables(where, service, set(env) - expanded, read_vars)
                listen = int(svc_env.get("HTTP_PORT") or ports[service])
                R.check(list(container_ports.values()) == [listen], f"{where}: {cname} listens on {listen} but declares ports {container_ports}")
                for probe_kind, expected in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", None)):
                    probe = c.get(probe_kind)
                    if probe is None:
                        R.check(probe_kind == "startupProbe", f"{where}: {cname} has no {probe_kind}")
                        continue
                    get = probe.get("httpGet", {})
                    port = get.get("port")
                    port = container_ports.get(port, port)
                    R.check(port == listen, f"{where}: {cname} {probe_kind} port {get.get('port')} is not the service port {listen}")
                    R.check(get.get("path") in routes[service], f"{where}: {cname} {probe_kind} path {get.get('path')} is not a route of {service}")
                    if expected:
                        R.check(get.get("path") == expected, f"{where}: {cname} {probe_kind} should be {expected}")
                annotations = meta.get("annotations", {})
                R.check(annotations.get("prometheus.io/scrape") == "true", f"{where}: {wname} lacks prometheus.io/scrape: \"true\"")
                R.check(annotations.get("prometheus.io/port") == str(listen), f"{where}: {wname} prometheus.io/port is not {listen}")
                R.check(annotations.get("prometheus.io/path") in routes[service], f"{where}: {wname} prometheus.io/path is not a route of {service}")
                check_paths(where, service, svc_env, writable, readable)
                key_file = svc_env.get("JWT_PRIVATE_KEY_FILE")
                if key_file:
                    for m in mounts:
                        v = volumes.get(m["name"], {})
                        if "secret" in v and under(os.path.dirname(key_file), [m["mountPath"]]):
                            names = [i["path"] for i in v["secret"].get("items", [])] or list(template_secret.get("stringData", {}))
                            R.check(os.path.basename(key_file) in names, f"{where}: {cname} reads {key_file} but the Secret volume holds {names}")
                            keys = [i["key"] for i in v["secret"].get("items", [])]
                            R.check(all(k in template_secret.get("stringData", {}) for k in keys),
                                    f"{where}: {cname} mounts Secret keys {keys} the template does not define")
                for key, value in env.items():
                    for url in urls_in(value):
                        host, port, path = split_url(url)
                        target, target_service = service_for_host(host)
                        if not R.check(target is not None, f"{where}: {service} {key}={url}: no Service named {host}"):
                            continue
                        R.check(port in [p["port"] for p in target["spec"]["ports"]], f"{where}: {service} {key}={url}: Service {host} has no port {port}")
                        if path and target_service in SERVICES:
                            R.check(path in routes[target_service], f"{where}: {service} {key}={url}: {path} is not a route of {target_service}")
                if service == "load-balancer" and "STATS_TARGETS" in env:
                    check_stats_targets(where, env["STATS_TARGETS"], lambda host: service_for_host(host)[1])
                    for _, url in parse_stats_targets(env["STATS_TARGETS"]):
                        host, _, _ = split_url(url)
                        target = services.get(host)
                        R.check(bool(target) and target["spec"].get("clusterIP") == "None",
                                f"{where}: STATS_TARGETS host {host} is not a headless Service, so /stats would see one pod")
                # The relabelling of monitoring/prometheus-kubernetes.yml finds this pod's /metrics.
                check_relabel(where, wname, service, meta, listen, prom_k8s, workload["metadata"].get("namespace", ""))
            elif name == f"{IMAGE_PREFIX}dashboard-ui":
                for probe_kind in ("livenessProbe", "readinessProbe"):
                    get = c.get(probe_kind, {}).get("httpGet", {})
                    port = container_ports.get(get.get("port"), get.get("port"))
                    R.check(port in nginx_ports, f"{where}: {cname} {probe_kind} port {port} is not nginx's {sorted(nginx_ports)}")
                    R.check(get.get("path") in nginx_locations | dashboard_files(), f"{where}: {cname} {probe_kind} path {get.get('path')} is not served by nginx")
                R.check(set(container_ports.values()) <= nginx_ports, f"{where}: {cname} declares ports {container_ports}, nginx listens on {sorted(nginx_ports)}")

    # Services select pods and target their ports.
    for sname, svc in services.items():
        selector = svc["spec"].get("selector", {})
        matched = [(meta, spec) for _, _, meta, spec in pod_service if selector and all(meta.get("labels", {}).get(k) == v for k, v in selector.items())]
        if not R.check(bool(matched), f"{where}: Service {sname} selects no pod"):
            continue
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            found = any(target in (cp.get("name"), cp["containerPort"]) for _, spec in matched for c in spec["containers"] for cp in c.get("ports", []))
            R.check(found, f"{where}: Service {sname} targets port {target}, which its pods do not declare")

    # HPAs and PDBs point at real workloads.
    deployments = by_kind.get("Deployment", {})
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        target = deployments.get(hpa["spec"]["scaleTargetRef"]["name"])
        if R.check(target is not None, f"{where}: HPA {hpa['metadata']['name']} scales a missing Deployment"):
            # Every apply would set the count back to it, undoing the HPA's scale-up.
            R.check("replicas" not in target["spec"], f"{where}: Deployment {target['metadata']['name']} is scaled by an HPA but sets spec.replicas")
    # Replicas spread over nodes where they can (a soft constraint counting the Deployment's own
    # pods), except those pinned to one node by a required pod affinity to each other
    # (user-service, for its shared SQLite volume): spreading them would contradict the pin.
    hpa_min = {h["spec"]["scaleTargetRef"]["name"]: h["spec"].get("minReplicas", 1) for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    for dname, d in deployments.items():
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        spec = d["spec"]["template"]["spec"]
        replicas = hpa_min.get(dname, d["spec"].get("replicas", 1))
        pinned = any(t.get("topologyKey") == "kubernetes.io/hostname" and not t.get("labelSelector", {}).get("matchExpressions")
                     and all(labels.get(k) == v for k, v in t.get("labelSelector", {}).get("matchLabels", {}).items())
                     for t in spec.get("affinity", {}).get("podAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", []))
        spreads = spec.get("topologySpreadConstraints", [])
        for c in spreads:
            selector = c.get("labelSelector", {})
            R.check(c.get("whenUnsatisfiable") == "ScheduleAnyway", f"{where}: {dname} spreads over {c.get('topologyKey')} with {c.get('whenUnsatisfiable')}, not ScheduleAnyway")
            R.check(bool(selector.get("matchLabels")) and not selector.get("matchExpressions")
                    and all(labels.get(k) == v for k, v in selector["matchLabels"].items())
                    and all(k in labels or k == "pod-template-hash" for k in c.get("matchLabelKeys", [])),
                    f"{where}: {dname}'s spread constraint on {c.get('topologyKey')} does not count its own pods")
        if pinned:
            R.check(not spreads, f"{where}: {dname} is pinned to one node by pod affinity and also spread over nodes")
        elif replicas > 1:
            R.check(any(c.get("topologyKey") == "kubernetes.io/hostname" for c in spreads),
                    f"{where}: {dname} runs {replicas} replicas but does not spread them over nodes")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        labels = pdb["spec"]["selector"]["matchLabels"]
        R.check(any(all(meta.get("labels", {}).get(k) == v for k, v in labels.items()) for _, _, meta, _ in pod_service),
                f"{where}: PodDisruptionBudget {pdb['metadata']['name']} selects no pod")
    return images_used


class Peer:
    """A pod that may open a connection: its labels and namespace (and that namespace's labels)."""

    def __init__(self, name: str, labels: dict, namespace: str, namespace_labels: dict | None = None):
        self.name, self.labels, self.namespace = name, labels, namespace
        self.namespace_labels = namespace_labels if namespace_labels is not None else {"kubernetes.io/metadata.name": namespace}


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions with In/NotIn/Exists/DoesNotExist)."""
    selector = selector or {}
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if not {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[op]:
            return False
    return True


def ingress_allowed(policies: list[dict], source: Peer, labels: dict, namespace: str, port: int, port_name: str | None) -> bool:
    """Whether the NetworkPolicies let `source` connect to a pod (labels, namespace) on a TCP port."""
    applying = [p for p in policies if p["metadata"].get("namespace", "") == namespace and selects(p["spec"].get("podSelector"), labels)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not applying:
        return True  # a pod no policy selects is not isolated
    for policy in applying:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("protocol", "TCP") == "TCP" and p.get("port") in (port, port_name, None) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    R.check(False, f"NetworkPolicy {policy['metadata']['name']}: ipBlock peers are not simulated; teach tests/deploy/check_consistency.py")
                    continue
                if "namespaceSelector" in peer:
                    in_namespace = selects(peer["namespaceSelector"], source.namespace_labels)
                else:
                    in_namespace = source.namespace == namespace
                if in_namespace and selects(peer.get("podSelector"), source.labels):
                    return True
    return False


def check_network_policies(where: str, resources: list[dict], extra_required: set[tuple[str, str, int]] = frozenset()) -> None:
    """The NetworkPolicies allow exactly the connections the settings make, no more: every URL a
    pod's settings name (Service → pods → port), the NodePort/LoadBalancer Services from anyone,
    Prometheus (any namespace) to every annotated /metrics port; `extra_required` adds
    (source app, destination app, port) triples read from other configuration."""
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    if not R.check(bool(policies), f"{where}: no NetworkPolicy"):
        return
    # Default deny: a pod added later without a policy of its own is closed, not open.
    R.check(any(p["spec"].get("podSelector") in ({}, None) and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
                for p in policies), f"{where}: no default-deny ingress NetworkPolicy (podSelector: {{}}, no rules)")
    configmaps = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}
    services = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Service"}
    pods = [(meta.get("labels", {}), workload["metadata"].get("namespace", ""), meta, spec) for workload, meta, spec in pod_specs(resources)]
    namespace = pods[0][1] if pods else ""

    def container_ports(spec: dict) -> list[tuple[int, str | None]]:
        return [(p["containerPort"], p.get("name")) for c in spec.get("containers", []) for p in c.get("ports", []) if p.get("protocol", "TCP") == "TCP"]

    def targets(service: dict, port: int | None) -> list[tuple[str, int]]:
        """(app, container port) of the pods a Service port leads to."""
        found = []
        for p in service["spec"]["ports"]:
            if port is not None and p["port"] != port:
                continue
            target = p.get("targetPort", p["port"])
            for labels, _, _, spec in pods:
                if selects({"matchLabels": service["spec"].get("selector", {})}, labels):
                    found += [(labels.get("app.kubernetes.io/name", ""), number) for number, name in container_ports(spec) if target in (number, name)]
        return found

    anyone, prometheus = "(anyone)", "(Prometheus)"
    required: set[tuple[str, str, int]] = set(extra_required)
    for service in services.values():
        if service["spec"].get("type") in ("NodePort", "LoadBalancer"):
            required |= {(anyone, app, port) for app, port in targets(service, None)}
    for labels, _, meta, spec in pods:
        app = labels.get("app.kubernetes.io/name", "")
        annotations = meta.get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            required.add((prometheus, app, int(annotations.get("prometheus.io/port", 0))))
        for c in spec.get("containers", []):
            env = {}
            for source in c.get("envFrom", []):
                env.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
            env.update({e["name"]: e.get("value", "") for e in c.get("env", [])})
            for value in env.values():
                for url in urls_in(value):
                    host, port, _ = split_url(url)
                    if host in services:
                        required |= {(app, target_app, target_port) for target_app, target_port in targets(services[host], port)}

    sources = {anyone: Peer(anyone, {"app.kubernetes.io/name": "someone-else"}, "elsewhere"),
               prometheus: Peer(prometheus, {"app.kubernetes.io/name": "prometheus"}, "monitoring")}
    sources["(a pod of the namespace)"] = Peer("(a pod of the namespace)", {"run": "debug"}, namespace)
    for labels, ns, _, _ in pods:
        app = labels.get("app.kubernetes.io/name", "")
        sources.setdefault(app, Peer(app, labels, ns))
    for name, source in sorted(sources.items()):
        for labels, ns, _, spec in pods:
            app = labels.get("app.kubernetes.io/name", "")
            for port, port_name in container_ports(spec):
                # A Prometheus of the namespace (the monitoring component's) scrapes like any other.
                roles = {name, anyone} | ({prometheus} if source.labels.get("app.kubernetes.io/name") == "prometheus" else set())
                needed = any((role, app, port) in required for role in roles)
                allowed = ingress_allowed(policies, source, labels, ns, port, port_name)
                if needed:
                    R.check(allowed, f"{where}: {name} must reach {app}:{port}, but no NetworkPolicy allows it")
                else:
                    R.check(not allowed, f"{where}: NetworkPolicies let {name} reach {app}:{port}, which no setting needs")


def app_of(resource: dict) -> str:
    return resource["metadata"].get("labels", {}).get("app.kubernetes.io/name", "")


def check_local_overlay_shape(resources: list[dict]) -> None:
    where = "overlay local"
    expected = {"load-balancer": 2, "api-gateway": 2, "auth-service": 2, "user-service": 2, "dashboard-ui": 2, "redis": 1, "blog-service": 1}
    deployments = {app_of(r): r for r in resources if r["kind"] == "Deployment"}
    hpa_min = {r["spec"]["scaleTargetRef"]["name"]: r["spec"].get("minReplicas", 1) for r in resources if r["kind"] == "HorizontalPodAutoscaler"}
    for app, replicas in expected.items():
        d = deployments.get(app)
        if R.check(d is not None, f"{where}: no Deployment for {app}"):
            # A Deployment an HPA scales gets its count from the HPA's minReplicas (check_overlay).
            count = hpa_min.get(d["metadata"]["name"], d["spec"].get("replicas"))
            R.check(count == replicas, f"{where}: {app} runs {count} replicas, the spec says {replicas}")
    for r in resources:
        if r["kind"] not in ("Namespace",):
            R.check(r["metadata"].get("namespace") == "titanium-local", f"{where}: {r['kind']} {r['metadata']['name']} is not in titanium-local")
        R.check(r["metadata"]["name"].startswith("local-") or r["kind"] == "Namespace", f"{where}: {r['kind']} {r['metadata']['name']} lacks the local- prefix")
    lb = [r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == "local-load-balancer-service"]
    if R.check(len(lb) == 1, f"{where}: no Service local-load-balancer-service"):
        spec = lb[0]["spec"]
        R.check(spec.get("type") == "NodePort" and [p.get("nodePort") for p in spec["ports"]] == [30700] and [p["port"] for p in spec["ports"]] == [7100],
                f"{where}: local-load-balancer-service should be NodePort 30700 → 7100")
    hpas = {r["spec"]["scaleTargetRef"]["name"] for r in resources if r["kind"] == "HorizontalPodAutoscaler"}
    R.check(hpas == {"local-api-gateway", "local-load-balancer"}, f"{where}: HPAs should scale the gateway and the load balancer, found {sorted(hpas)}")
    headless = {app_of(r) for r in resources if r["kind"] == "Service" and r["spec"].get("clusterIP") == "None"}
    R.check(headless >= {"api-gateway", "auth-service", "user-service", "blog-service"}, f"{where}: headless Services only for {sorted(headless)}")
    # user-service replicas (and the backup job that mounts their volume) are pinned to one node.
    pinned = {"matchLabels": {"app.kubernetes.io/name": "user-service"}}
    for _, meta, spec in pod_specs(resources):
        mounts_users = any(v.get("persistentVolumeClaim", {}).get("claimName") == "local-user-data" for v in spec.get("volumes", []))
        if mounts_users:
            terms = spec.get("affinity", {}).get("podAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
            R.check(any(t.get("labelSelector") == pinned and t.get("topologyKey") == "kubernetes.io/hostname" for t in terms),
                    f"{where}: a pod mounting local-user-data is not pinned to the user-service node")
    cron = [r for r in resources if r["kind"] == "CronJob"]
    if R.check(len(cron) == 1, f"{where}: expected one backup CronJob"):
        R.check(cron[0]["spec"]["schedule"] == "0 0 * * *" and cron[0]["spec"].get("timeZone") in ("Etc/UTC", "UTC"),
                f"{where}: the backup CronJob should run daily at 00:00 UTC")


def check_relabel(where: str, wname: str, service: str, meta: dict, port: int, prom_k8s: dict, namespace: str) -> None:
    """Apply the pod-role relabelling of monitoring/prometheus-kubernetes.yml to this pod."""
    jobs = [j for j in prom_k8s.get("scrape_configs", []) if any(sd.get("role") == "pod" for sd in j.get("kubernetes_sd_configs", []))]
    if not R.check(bool(jobs), "monitoring/prometheus-kubernetes.yml: no kubernetes_sd_configs job with role pod"):
        return
    job = jobs[0]
    names = [n for sd in job["kubernetes_sd_configs"] for n in sd.get("namespaces", {}).get("names", [])]
    R.check(not names or namespace in names, f"monitoring/prometheus-kubernetes.yml: namespace {namespace} of {wname} is not discovered")

    def sanitize(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    labels = {"__address__": "10.244.1.7", "__metrics_path__": "/metrics", "__scheme__": "http",
              "__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": wname.split()[-1] + "-abc12",
              "__meta_kubernetes_pod_phase": "Running"}
    for k, v in meta.get("annotations", {}).items():
        labels["__meta_kubernetes_pod_annotation_" + sanitize(k)] = v
    for k, v in meta.get("labels", {}).items():
        labels["__meta_kubernetes_pod_label_" + sanitize(k)] = v
    for rule in job.get("relabel_configs", []):
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        regex = "^(?:%s)$" % rule.get("regex", "(.*)")
        match = re.match(regex, value)
        if action == "keep" and not match:
            R.check(False, f"monitoring/prometheus-kubernetes.yml drops {wname} ({service})")
            return
        if action == "drop" and match:
            R.check(False, f"monitoring/prometheus-kubernetes.yml drops {wname} ({service})")
            return
        if action == "replace" and match:
            replacement = rule.get("replacement", "$1")
            result = re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))) or "", replacement)
            labels[rule["target_label"]] = result
    R.check(labels["__address__"] == f"10.244.1.7:{port}", f"monitoring/prometheus-kubernetes.yml: {wname} would be scraped at {labels['__address__']}, not port {port}")
    R.check(labels["__metrics_path__"] == "/metrics", f"monitoring/prometheus-kubernetes.yml: {wname} would be scraped at {labels['__metrics_path__']}")
    R.check(labels.get("service") == service, f"monitoring/prometheus-kubernetes.yml: {wname} would get service={labels.get('service')!r}, not {service}")


def check_skaffold(df: Dockerfile, images_used: set[str], rendered: dict[str, list[dict]]) -> None:
    sk = yaml.safe_load(read("skaffold.yaml"))
    artifacts = sk.get("build", {}).get("artifacts", [])
    built = [a["image"] for a in artifacts]
    R.check(len(built) == len(set(built)), f"skaffold.yaml: an image is built twice: {built}")
    for a in artifacts:
        docker = a.get("docker", {})
        context = os.path.join(ROOT, a.get("context", "."))
        R.check(os.path.isfile(os.path.join(context, docker.get("dockerfile", "Dockerfile"))), f"skaffold.yaml: {a['image']}: Dockerfile missing")
        target = docker.get("target")
        R.check(target in df.stages, f"skaffold.yaml: {a['image']} builds target {target!r}, which the Dockerfile lacks")
        R.check(a["image"] == f"{IMAGE_PREFIX}{target}", f"skaffold.yaml: image {a['image']} is built from target {target}")
        user = df.resolved(target, "user") or "root"
        R.check(user.split(":")[0] not in ("root", "0"), f"Dockerfile: target {target} runs as root")
        if target in SERVICES:
            R.check(df.resolved(target, "entrypoint") == [f"/app/{target}"], f"Dockerfile: target {target} does not run /app/{target}")
            R.check(df.env(target).get("HTTP_HOST") == "0.0.0.0", f"Dockerfile: target {target} does not set HTTP_HOST=0.0.0.0")
    for image in sorted(set(built) - images_used):
        R.check(False, f"skaffold.yaml builds {image}, which no manifest uses")
    for image in sorted(images_used - set(built)):
        R.check(False, f"the manifests use {image}, which skaffold.yaml does not build")
    paths = sk.get("manifests", {}).get("kustomize", {}).get("paths", [])
    R.check(paths == [OVERLAYS["local"]], f"skaffold.yaml: should render {OVERLAYS['local']}, renders {paths}")
    local = rendered.get("local", [])
    namespaces = {r["metadata"]["name"] for r in local if r["kind"] == "Namespace"}
    for pf in sk.get("portForward", []):
        svc = [r for r in local if r["kind"] == "Service" and r["metadata"]["name"] == pf.get("resourceName")]
        if R.check(bool(svc), f"skaffold.yaml: port-forward of missing Service {pf.get('resourceName')}"):
            R.check(pf.get("port") in [p["port"] for p in svc[0]["spec"]["ports"]], f"skaffold.yaml: port-forward port {pf.get('port')} is not a port of {pf.get('resourceName')}")
        R.check(pf.get("namespace") in namespaces, f"skaffold.yaml: port-forward namespace {pf.get('namespace')} is not the overlay's")
        R.check(pf.get("port") == 7100 and pf.get("localPort") == 7100, "skaffold.yaml: the load balancer should be forwarded on 7100")
    for hook in sk.get("deploy", {}).get("kubectl", {}).get("hooks", {}).get("before", []):
        command = hook.get("host", {}).get("command", [])
        scripts = [c for c in command if c.endswith(".sh")]
        for script in scripts:
            R.check(os.path.isfile(os.path.join(ROOT, script)), f"skaffold.yaml: hook script {script} is missing")
        if namespaces:
            R.check(any(ns in command for ns in namespaces), f"skaffold.yaml: hook {command} does not name the overlay's namespace")
    profiles = {p["name"]: p for p in sk.get("profiles", [])}
    R.check({"kind", "minikube", "monitoring"} <= set(profiles), f"skaffold.yaml: profiles kind, minikube and monitoring expected, found {sorted(profiles)}")
    # The profile `monitoring`, applied as skaffold applies it: renders the overlay with the
    # monitoring component and forwards ports of Services that overlay has.
    if "monitoring" in profiles:
        try:
            patched = apply_json_patch(sk, profiles["monitoring"].get("patches", []))
        except (KeyError, IndexError, ValueError) as error:
            R.check(False, f"skaffold.yaml: profile monitoring does not apply: {error!r}")
            return
        paths = patched.get("manifests", {}).get("kustomize", {}).get("paths", [])
        R.check(paths == [OVERLAYS["local-monitoring"]], f"skaffold.yaml: profile monitoring should render {OVERLAYS['local-monitoring']}, renders {paths}")
        resources = rendered.get("local-monitoring", [])
        namespaces = {r["metadata"]["name"] for r in resources if r["kind"] == "Namespace"}
        for pf in patched.get("portForward", []):
            svc = [r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == pf.get("resourceName") and r["metadata"].get("namespace") == pf.get("namespace")]
            if R.check(bool(svc), f"skaffold.yaml: profile monitoring forwards {pf.get('namespace')}/{pf.get('resourceName')}, which overlay local-monitoring lacks"):
                R.check(pf.get("port") in [p["port"] for p in svc[0]["spec"]["ports"]], f"skaffold.yaml: port-forward port {pf.get('port')} is not a port of {pf.get('resourceName')}")
            R.check(pf.get("namespace") in namespaces, f"skaffold.yaml: port-forward namespace {pf.get('namespace')} is not the overlay's")
        forwarded = {pf.get("resourceName") for pf in patched.get("portForward", [])}
        R.check({"grafana", "prometheus", "alertmanager", "jaeger"} <= forwarded, f"skaffold.yaml: profile monitoring should forward grafana, prometheus, alertmanager and jaeger, forwards {sorted(forwarded)}")
    # The profile `postgres`: renders the overlay with the postgres component, after creating the
    # Secret its pods read (in that overlay's namespace).
    if R.check("postgres" in profiles, "skaffold.yaml: no profile postgres"):
        try:
            patched = apply_json_patch(sk, profiles["postgres"].get("patches", []))
        except (KeyError, IndexError, ValueError) as error:
            R.check(False, f"skaffold.yaml: profile postgres does not apply: {error!r}")
            return
        paths = patched.get("manifests", {}).get("kustomize", {}).get("paths", [])
        R.check(paths == [OVERLAYS["local-postgres"]], f"skaffold.yaml: profile postgres should render {OVERLAYS['local-postgres']}, renders {paths}")
        resources = rendered.get("local-postgres", [])
        namespaces = {r["metadata"]["name"] for r in resources if r["kind"] == "Namespace"}
        secrets = {ref["name"] for _, _, spec in pod_specs(resources) for c in spec.get("containers", [])
                   for e in c.get("env", []) for ref in [e.get("valueFrom", {}).get("secretKeyRef")] if ref}
        hooks = [h.get("host", {}).get("command", []) for h in patched.get("deploy", {}).get("kubectl", {}).get("hooks", {}).get("before", [])]
        made = set()
        for command in hooks:
            for script in (c for c in command if c.endswith(".sh")):
                if R.check(os.path.isfile(os.path.join(ROOT, script)), f"skaffold.yaml: profile postgres hook script {script} is missing"):
                    made |= set(re.findall(r"create secret generic ([a-z0-9-]+)", read(script)))
            R.check(any(ns in command for ns in namespaces), f"skaffold.yaml: profile postgres hook {command} does not name the overlay's namespace")
        R.check(secrets <= made, f"skaffold.yaml: profile postgres deploys pods reading Secrets {sorted(secrets - made)} that no hook creates")


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"}


def promql_metrics(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # strings
    text = re.sub(r"\$\{?\w+\}?", "5m", text)                   # Grafana variables
    text = re.sub(r"\{[^}]*\}", "", text)                        # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                       # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        following = text[m.end():].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or text[max(0, m.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def check_monitoring(exported: dict[str, str], promtool: str | None) -> None:
    known = set(PROMETHEUS_BUILTIN)
    for name, kind in exported.items():
        known.add(name)
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    # Alert rules.
    rule_files = sorted(glob.glob(os.path.join(ROOT, "monitoring", "rules", "*.yml")))
    alerts: set[str] = set()
    for path in rule_files:
        for group in yaml.safe_load(open(path)).get("groups", []):
            for rule in group.get("rules", []):
                alerts.add(rule.get("alert") or rule.get("record"))
                for metric in promql_metrics(rule["expr"]):
                    R.check(metric in known, f"{os.path.relpath(path, ROOT)}: {rule.get('alert')} uses {metric}, which no service exports")
    required = {"ServiceDown", "HighErrorRate", "HighResponseTime", "RateLimitSpike", "CacheDown"}
    R.check(required <= alerts, f"monitoring/rules: missing alerts {sorted(required - alerts)}")
    # Every alert has a unit test where it fires and one where it does not.
    tested: dict[str, set[bool]] = {}
    for path in glob.glob(os.path.join(ROOT, "monitoring", "tests", "*.yml")):
        for test in yaml.safe_load(open(path)).get("tests", []):
            for case in test.get("alert_rule_test", []):
                tested.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for alert in sorted(alerts):
        R.check(tested.get(alert) == {True, False}, f"monitoring/tests: {alert} needs a test where it fires and one where it does not")

    # Grafana: provisioned datasource, dashboards that parse, queries on exported metrics.
    datasources = yaml.safe_load(read("monitoring/grafana/provisioning/datasources/prometheus.yml"))["datasources"]
    uids = {d["uid"] for d in datasources}
    R.check(all(d["url"] == "http://prometheus:9090" for d in datasources), "grafana datasource should point at http://prometheus:9090")
    provider = yaml.safe_load(read("monitoring/grafana/provisioning/dashboards/titanium.yml"))["providers"][0]
    compose = yaml.safe_load(read("docker-compose.yml"))
    grafana_mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    source = grafana_mounts.get(provider["options"]["path"], "")
    R.check(os.path.normpath(source) == os.path.normpath("./monitoring/grafana/dashboards"),
            "grafana dashboard provider path is not where docker-compose.yml mounts monitoring/grafana/dashboards")
    queries: list[tuple[str, str]] = []
    dashboards = sorted(glob.glob(os.path.join(ROOT, "monitoring", "grafana", "dashboards", "*.json")))
    R.check(len(dashboards) >= 4, "monitoring/grafana/dashboards: expected a dashboard per concern (RED, cache, rate limits, process)")
    seen_uids = set()
    for path in dashboards:
        rel = os.path.relpath(path, ROOT)
        try:
            board = json.load(open(path))
        except json.JSONDecodeError as error:
            R.check(False, f"{rel}: not JSON: {error}")
            continue
        R.check(board.get("uid") not in seen_uids, f"{rel}: duplicate uid {board.get('uid')}")
        seen_uids.add(board.get("uid"))
        panels = list(board.get("panels", []))
        for p in list(panels):
            panels += p.get("panels", [])
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if q:
                for metric in re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", q):
                    R.check(metric in known, f"{rel}: variable {var['name']} uses {metric}, which no service exports")
        for p in panels:
            for t in p.get("targets", []):
                R.check(t.get("datasource", p.get("datasource", {})).get("uid") in uids, f"{rel}: panel {p.get('title')!r} uses an unprovisioned datasource")
                for metric in promql_metrics(t["expr"]):
                    R.check(metric in known, f"{rel}: panel {p.get('title')!r} uses {metric}, which no service exports")
                queries.append((f"{rel}: {p.get('title')}", t["expr"]))
    # PromQL syntax of the dashboard queries, by promtool: as recording rules of a scratch file.
    if not R.check(bool(promtool), "promtool not found: cannot parse the dashboard queries"):
        return
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__rate_interval|\$__interval|\$__range", "5m", e).replace("$service", ".+")}
        for i, (_, e) in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        R.check(result.returncode == 0, f"grafana dashboards: promtool rejects a query:\n{result.stdout}{result.stderr}")
    finally:
        os.unlink(f.name)


def check_backup_script(resources: list[dict]) -> None:
    """Run the CronJob's script against a live WAL database, as the job would."""
    cron = [r for r in resources if r["kind"] == "CronJob"]
    if not cron:
        return
    container = cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    script = "\n".join(container.get("command", [])[2:] + container.get("args", []))
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    for name in env:
        R.check(f"${name}" in script or f"${{{name}}}" in script, f"backup CronJob sets {name} but its script does not use it")
    R.check(".backup" in script and "cp " not in script, "backup CronJob should copy with sqlite3 .backup, not cp")
    if not R.check(shutil.which("sqlite3") is not None, "sqlite3 not installed: cannot run the backup script"):
        return
    with tempfile.TemporaryDirectory() as work:
        data, backup, shim = (os.path.join(work, d) for d in ("data", "backup", "bin"))
        for d in (data, backup, shim):
            os.mkdir(d)
        db_path = os.path.join(data, "users.db")
        live = sqlite3.connect(db_path)
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        live.executemany("INSERT INTO users (name) VALUES (?)", [(f"user{i}",) for i in range(500)])
        live.commit()  # committed rows sit in the -wal file: a cp of users.db alone would miss them
        # A `date` that moves one day per run, so each run makes a new backup name.
        counter = os.path.join(work, "runs")
        with open(os.path.join(shim, "date"), "w") as f:
            f.write(f'#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {counter}\n'
                    'printf "2030-01-%02d-000000\\n" "$n"\n')
        os.chmod(os.path.join(shim, "date"), 0o755)
        run_env = {**os.environ, **env, "DB_PATH": db_path, "BACKUP_DIR": backup, "BACKUP_KEEP": "2",
                   "PATH": shim + os.pathsep + os.environ.get("PATH", "")}
        for run in range(4):
            live.execute("INSERT INTO users (name) VALUES (?)", (f"late{run}",))
            live.commit()
            result = subprocess.run(["sh", "-c", script], env=run_env, capture_output=True, text=True)
            if not R.check(result.returncode == 0, f"backup script failed (run {run + 1}): {result.stderr.strip()}"):
                return
        live.close()
        kept = sorted(os.listdir(backup))
        R.check(kept == ["users.db.2030-01-03-000000", "users.db.2030-01-04-000000"],
                f"backup script should keep the newest 2 as users.db.YYYY-mm-dd-HHMMSS, left {kept}")
        if kept:
            copy = sqlite3.connect(os.path.join(backup, kept[-1]))
            count = copy.execute("SELECT count(*) FROM users").fetchone()[0]
            copy.close()
            R.check(count == 504, f"the newest backup holds {count} users, the live database had 504")


RESTORE_JOB = "k8s-manifests/base/user-service-restore-job.yaml"


def check_backup_mounts(overlay: str, resources: list[dict]) -> None:
    """The backup CronJob reads users.db through a read-only mount of user-service's volume; the
    restore Job (kept out of the kustomization, named for the production overlay) writes that
    volume, reads the backups read-only, and runs as user-service's user."""
    where = f"overlay {overlay}"
    users = [r for r in resources if r["kind"] == "Deployment" and app_of(r) == "user-service"]
    cron = [r for r in resources if r["kind"] == "CronJob"]
    if not users or len(cron) != 1 or app_of(cron[0]) != "users-db-backup":
        return  # reported by the other checks (check_postgres_overlay for the pg_dump CronJob)
    prefix = users[0]["metadata"]["name"][:-len("user-service")]
    configmaps = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}

    def mount_of(spec: dict, container: dict, path: str) -> tuple[dict, str | None]:
        """The mount holding `path`, and the PVC behind it."""
        mounts = [m for m in container.get("volumeMounts", []) if under(path, [m["mountPath"]])]
        if not mounts:
            return {}, None
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
        return mount, volume.get("persistentVolumeClaim", {}).get("claimName")

    user_spec = users[0]["spec"]["template"]["spec"]
    user_container = user_spec["containers"][0]
    user_env: dict = {}
    for source in user_container.get("envFrom", []):
        user_env.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    db_path = user_env.get("USER_DB_PATH")
    if not R.check(bool(db_path), f"{where}: user-service has no USER_DB_PATH"):
        return
    user_mount, users_claim = mount_of(user_spec, user_container, db_path)
    R.check(users_claim is not None and not user_mount.get("readOnly"), f"{where}: user-service's {db_path} is not on a writable PVC")

    cron_spec = cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cron_container = cron_spec["containers"][0]
    cron_env = {e["name"]: e.get("value") for e in cron_container.get("env", [])}
    cron_db = cron_env.get("DB_PATH", "")
    cron_mount, cron_claim = mount_of(cron_spec, cron_container, cron_db)
    R.check(cron_claim == users_claim, f"{where}: the backup CronJob reads {cron_db} from PVC {cron_claim}, user-service's users.db is on {users_claim}")
    R.check(cron_mount.get("readOnly") is True, f"{where}: the backup CronJob should mount {cron_mount.get('mountPath')} read-only")
    R.check(os.path.relpath(cron_db, cron_mount.get("mountPath", "/")) == os.path.relpath(db_path, user_mount.get("mountPath", "/")),
            f"{where}: the backup CronJob reads {cron_db}, user-service writes {db_path}")
    backup_mount, backup_claim = mount_of(cron_spec, cron_container, cron_env.get("BACKUP_DIR", "") + "/x")
    R.check(backup_claim is not None and not backup_mount.get("readOnly"), f"{where}: the backup CronJob's BACKUP_DIR is not on a writable PVC")

    job = yaml.safe_load(read(RESTORE_JOB))
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    R.check(container["image"] == cron_container["image"], f"{RESTORE_JOB}: image {container['image']} is not the backup CronJob's {cron_container['image']}")
    R.check(env.get("DB_PATH") == cron_db and env.get("BACKUP_DIR") == cron_env.get("BACKUP_DIR"),
            f"{RESTORE_JOB}: DB_PATH/BACKUP_DIR differ from the backup CronJob's")
    mount, claim = mount_of(spec, container, env.get("DB_PATH", ""))
    R.check(prefix + str(claim) == users_claim and not mount.get("readOnly"),
            f"{RESTORE_JOB}: should mount PVC {users_claim} (without the prefix {prefix!r}) writable at {cron_mount.get('mountPath')}")
    mount, claim = mount_of(spec, container, env.get("BACKUP_DIR", "") + "/x")
    R.check(prefix + str(claim) == backup_claim and mount.get("readOnly") is True,
            f"{RESTORE_JOB}: should mount PVC {backup_claim} (without the prefix {prefix!r}) read-only at {env.get('BACKUP_DIR')}")
    security = spec.get("securityContext", {})
    R.check(security.get("runAsUser") == user_spec.get("securityContext", {}).get("runAsUser"),
            f"{RESTORE_JOB}: runs as {security.get('runAsUser')}, user-service as {user_spec.get('securityContext', {}).get('runAsUser')}")
    csec = container.get("securityContext", {})
    R.check(security.get("runAsNonRoot") is True and csec.get("readOnlyRootFilesystem") is True and csec.get("allowPrivilegeEscalation") is False
            and "ALL" in csec.get("capabilities", {}).get("drop", []), f"{RESTORE_JOB}: not hardened like the other pods")
    R.check(all(k in container.get("resources", {}).get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
            f"{RESTORE_JOB}: lacks cpu/memory requests and limits")


POSTGRES_RESTORE_JOB = f"{POSTGRES_COMPONENT}/postgres-restore-job.yaml"


def check_postgres_overlay(overlay: str, resources: list[dict], sqlite_resources: list[dict]) -> None:
    """An overlay with the postgres component: user- and blog-service on the one PostgreSQL, as
    Deployments that can spread (no SQLite volume, no pod affinity), blog-service with 2 replicas;
    the pg_dump CronJob in place of the users.db one (the schedule and retention of the overlay it
    wraps, `sqlite_resources`), on the services' database; the restore Job beside it likewise."""
    where = f"overlay {overlay}"
    by_app = {app_of(r): r for r in resources if r["kind"] in ("Deployment", "StatefulSet", "CronJob")}
    server = by_app.get("postgres")
    if not R.check(server is not None and server["kind"] == "StatefulSet" and server["spec"].get("replicas") == 1,
                   f"{where}: no one-replica postgres StatefulSet"):
        return
    claims = server["spec"].get("volumeClaimTemplates", [])
    data_dir = next((e.get("value") for e in server["spec"]["template"]["spec"]["containers"][0].get("env", []) if e["name"] == "PGDATA"), "")
    mounts = server["spec"]["template"]["spec"]["containers"][0].get("volumeMounts", [])
    R.check(any(m["name"] in {c["metadata"]["name"] for c in claims} and under(data_dir, [m["mountPath"]]) for m in mounts),
            f"{where}: postgres keeps PGDATA={data_dir} outside its volumeClaimTemplates")

    def url_of(container: dict) -> str:
        return next((e.get("value", "") for e in container.get("env", []) if e["name"] == "DATABASE_URL"), "")

    def database(url: str) -> tuple:
        parts = urlsplit(url)
        return parts.hostname, parts.port, parts.username, parts.path

    urls = {}
    for app in ("user-service", "blog-service"):
        d = by_app.get(app)
        if not R.check(d is not None, f"{where}: no {app} Deployment"):
            continue
        spec = d["spec"]["template"]["spec"]
        urls[app] = url_of(spec["containers"][0])
        R.check(urls[app].startswith(("postgres://", "postgresql://")), f"{where}: {app} has no postgres:// DATABASE_URL")
        R.check(not any("persistentVolumeClaim" in v for v in spec.get("volumes", [])), f"{where}: {app} still mounts a PersistentVolumeClaim")
        R.check("podAffinity" not in spec.get("affinity", {}), f"{where}: {app} is still pinned by pod affinity")
    R.check(len({database(u) for u in urls.values()}) == 1, f"{where}: user- and blog-service use different databases: {urls}")
    blog = by_app.get("blog-service")
    if blog:
        R.check(blog["spec"].get("replicas") == 2, f"{where}: blog-service runs {blog['spec'].get('replicas')} replicas, not 2")
        R.check(blog["spec"].get("strategy", {}).get("type") != "Recreate", f"{where}: blog-service still rolls out by Recreate")
    R.check(not any(r["kind"] == "PersistentVolumeClaim" and app_of(r) in ("user-service", "blog-service", "users-db-backup") for r in resources),
            f"{where}: the SQLite volumes are still rendered")

    crons = [r for r in resources if r["kind"] == "CronJob"]
    sqlite_cron = next((r for r in sqlite_resources if r["kind"] == "CronJob" and app_of(r) == "users-db-backup"), None)
    if not R.check(len(crons) == 1 and app_of(crons[0]) == "postgres-backup", f"{where}: expected the postgres-backup CronJob alone, found {[c['metadata']['name'] for c in crons]}"):
        return
    cron = crons[0]
    if R.check(sqlite_cron is not None, f"{where}: the overlay it wraps has no users-db-backup CronJob to compare with"):
        for key in ("schedule", "timeZone", "concurrencyPolicy"):
            R.check(cron["spec"].get(key) == sqlite_cron["spec"].get(key), f"{where}: postgres-backup {key} {cron['spec'].get(key)!r} is not the users.db backup's {sqlite_cron['spec'].get(key)!r}")
        keep = {name: next((e.get("value") for e in r["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("env", []) if e["name"] == "BACKUP_KEEP"), None)
                for name, r in (("postgres", cron), ("sqlite", sqlite_cron))}
        R.check(keep["postgres"] is not None and keep["postgres"] == keep["sqlite"], f"{where}: postgres-backup keeps {keep['postgres']} backups, the users.db backup {keep['sqlite']}")
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    R.check(database(url_of(container)) in {database(u) for u in urls.values()}, f"{where}: postgres-backup dumps {url_of(container)}, not the services' database")
    server_image = server["spec"]["template"]["spec"]["containers"][0]["image"]
    R.check(container["image"] == server_image, f"{where}: postgres-backup runs {container['image']}, the server {server_image} (pg_dump must match its major version)")
    job = yaml.safe_load(read(POSTGRES_RESTORE_JOB))
    jspec = job["spec"]["template"]["spec"]
    jcontainer = jspec["containers"][0]
    R.check(jcontainer["image"] == container["image"], f"{POSTGRES_RESTORE_JOB}: image {jcontainer['image']} is not the backup CronJob's {container['image']}")
    R.check(database(url_of(jcontainer)) == database(url_of(container)), f"{POSTGRES_RESTORE_JOB}: restores into another database than the CronJob dumps")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    jenv = {e["name"]: e.get("value") for e in jcontainer.get("env", [])}
    R.check(jenv.get("BACKUP_DIR") == env.get("BACKUP_DIR"), f"{POSTGRES_RESTORE_JOB}: BACKUP_DIR differs from the CronJob's")
    claim = lambda s: {v["persistentVolumeClaim"]["claimName"] for v in s.get("volumes", []) if "persistentVolumeClaim" in v}
    R.check(claim(jspec) == claim(spec), f"{POSTGRES_RESTORE_JOB}: mounts {claim(jspec)}, the CronJob {claim(spec)}")
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    labels = server["spec"]["template"]["metadata"].get("labels", {})
    R.check(ingress_allowed(policies, Peer("postgres-restore", job["spec"]["template"]["metadata"].get("labels", {}), server["metadata"].get("namespace", "")),
                            labels, server["metadata"].get("namespace", ""), 5432, "postgres"),
            f"{where}: the NetworkPolicies keep {POSTGRES_RESTORE_JOB} from postgres:5432")


def generator_files(kustomization: str) -> dict[str, dict[str, str]]:
    """ConfigMap name → {key: file} of a kustomization's configMapGenerator."""
    listed: dict[str, dict[str, str]] = {}
    for gen in yaml.safe_load(read(kustomization)).get("configMapGenerator", []):
        for item in gen.get("files", []):
            key, _, path = item.partition("=") if "=" in item else (os.path.basename(item), "", item)
            listed.setdefault(gen["name"], {})[key] = path
    return listed


def check_monitoring_sources() -> None:
    """monitoring/kustomization.yaml makes ConfigMaps of every file the component needs (no copies,
    no globs: every rule file and dashboard must be listed), and the Kubernetes Alertmanager routes
    and inhibits as compose's does, to receivers that deliver somewhere."""
    listed = generator_files("monitoring/kustomization.yaml")
    rules = {os.path.relpath(p, os.path.join(ROOT, "monitoring")) for p in glob.glob(os.path.join(ROOT, "monitoring", "rules", "*.yml"))}
    R.check(set(listed.get("prometheus-rules", {}).values()) == rules, f"monitoring/kustomization.yaml: prometheus-rules should hold {sorted(rules)}")
    boards = {os.path.relpath(p, os.path.join(ROOT, "monitoring")) for p in glob.glob(os.path.join(ROOT, "monitoring", "grafana", "dashboards", "*.json"))}
    R.check(set(listed.get("grafana-dashboards", {}).values()) == boards, f"monitoring/kustomization.yaml: grafana-dashboards should hold {sorted(boards)}")
    R.check(listed.get("prometheus-config") == {"prometheus.yml": "prometheus-kubernetes.yml"}, "monitoring/kustomization.yaml: prometheus-config is not prometheus-kubernetes.yml")
    R.check(listed.get("alertmanager-config") == {"alertmanager.yml": "alertmanager-kubernetes.yml"}, "monitoring/kustomization.yaml: alertmanager-config is not alertmanager-kubernetes.yml")
    component = yaml.safe_load(read(f"{MONITORING_COMPONENT}/kustomization.yaml"))
    R.check(component.get("kind") == "Component" and "../../../monitoring" in component.get("resources", []),
            f"{MONITORING_COMPONENT}: should be a Component with ../../../monitoring among its resources")
    compose_am = yaml.safe_load(read("monitoring/alertmanager.yml"))
    k8s_am = yaml.safe_load(read("monitoring/alertmanager-kubernetes.yml"))
    R.check(k8s_am.get("route") == compose_am.get("route") and k8s_am.get("inhibit_rules") == compose_am.get("inhibit_rules"),
            "monitoring/alertmanager-kubernetes.yml: route and inhibit_rules should be those of monitoring/alertmanager.yml")
    for receiver in k8s_am.get("receivers", []):
        R.check(bool(receiver.get("webhook_configs")), f"monitoring/alertmanager-kubernetes.yml: receiver {receiver['name']} delivers nowhere")


# Kubernetes service discovery role → (API group, resource) pairs Prometheus must list and watch.
SD_ROLE_RESOURCES = {
    "pod": {("", "pods")}, "service": {("", "services")}, "node": {("", "nodes")},
    "endpoints": {("", "endpoints"), ("", "services"), ("", "pods")},
    "endpointslice": {("discovery.k8s.io", "endpointslices"), ("", "services"), ("", "pods")},
    "ingress": {("networking.k8s.io", "ingresses")},
}


def check_monitoring_overlay(where: str, resources: list[dict]) -> set[tuple[str, str, int]]:
    """The component as rendered: files where the configuration reads them, RBAC, the images of
    compose's observability profile, the URLs between its parts. Returns the connections its
    configuration makes (for the NetworkPolicy check)."""
    deployments = {app_of(r): r for r in resources if r["kind"] == "Deployment"}
    edges: set[tuple[str, str, int]] = set()
    if "prometheus" not in deployments:
        return edges
    configmaps = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}
    services = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Service"}
    compose = yaml.safe_load(read("docker-compose.yml"))["services"]

    def pod(app: str) -> tuple[dict, dict, str]:
        d = deployments[app]
        spec = d["spec"]["template"]["spec"]
        return spec, spec["containers"][0], d["metadata"].get("namespace", "")

    def configmap_at(spec: dict, container: dict, path: str) -> tuple[dict | None, str | None]:
        """The ConfigMap data and key a file path of the container reads, if a ConfigMap is there."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for m in container.get("volumeMounts", []):
            data = configmaps.get(volumes.get(m["name"], {}).get("configMap", {}).get("name"))
            if data is None:
                continue
            if m.get("subPath") and m["mountPath"] == path:
                return data, m["subPath"]
            if not m.get("subPath") and os.path.dirname(path) == m["mountPath"].rstrip("/"):
                return data, os.path.basename(path)
        return None, None

    def file_at(spec: dict, container: dict, path: str) -> str | None:
        data, key = configmap_at(spec, container, path)
        return None if data is None else data.get(key)

    def keys_at(spec: dict, container: dict, directory: str) -> set[str]:
        data, _ = configmap_at(spec, container, directory.rstrip("/") + "/x")
        return set(data or {})

    def arg(container: dict, flag: str) -> str:
        return next((a.split("=", 1)[1] for a in container.get("args", []) if a.startswith(flag + "=")), "")

    def service_target(url_or_target: str, expected_app: str) -> int | None:
        """The container port of `expected_app` behind host:port (a URL or a bare target)."""
        host, port, _ = split_url(url_or_target if "://" in url_or_target else "http://" + url_or_target)
        svc = services.get(host)
        if not R.check(svc is not None, f"{where}: {url_or_target} names no Service"):
            return None
        for p in svc["spec"]["ports"]:
            if p["port"] == port:
                spec, container, _ = pod(expected_app)
                if not selects({"matchLabels": svc["spec"].get("selector", {})}, deployments[expected_app]["spec"]["template"]["metadata"].get("labels", {})):
                    break
                for cp in container.get("ports", []):
                    if p.get("targetPort", p["port"]) in (cp["containerPort"], cp.get("name")):
                        return cp["containerPort"]
        R.check(False, f"{where}: {url_or_target} does not lead to {expected_app}")
        return None

    for app, compose_name in (("prometheus", "prometheus"), ("alertmanager", "alertmanager"), ("grafana", "grafana"), ("jaeger", "jaeger")):
        if R.check(app in deployments, f"{where}: the monitoring component has no {app} Deployment"):
            R.check(pod(app)[1]["image"] == compose[compose_name]["image"],
                    f"{where}: {app} runs {pod(app)[1]['image']}, compose's observability profile {compose[compose_name]['image']}")

    # Prometheus: its configuration and rule files, its discovery's RBAC, its Alertmanager.
    spec, container, namespace = pod("prometheus")
    config_path = arg(container, "--config.file")
    text = file_at(spec, container, config_path)
    if R.check(text == read("monitoring/prometheus-kubernetes.yml"), f"{where}: prometheus does not read monitoring/prometheus-kubernetes.yml at {config_path}"):
        config = yaml.safe_load(text)
        rules = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "monitoring", "rules", "*.yml"))}
        for pattern in config.get("rule_files", []):
            directory = os.path.join(os.path.dirname(config_path), os.path.dirname(pattern))
            found = {k for k in keys_at(spec, container, directory) if fnmatch.fnmatch(k, os.path.basename(pattern))}
            R.check(found == rules, f"{where}: prometheus rule_files {pattern} finds {sorted(found)} at {directory}, not {sorted(rules)}")
        roles = {sd["role"] for job in config.get("scrape_configs", []) for sd in job.get("kubernetes_sd_configs", [])}
        account = spec.get("serviceAccountName", "default")
        R.check(spec.get("automountServiceAccountToken") is not False, f"{where}: prometheus has no API token for its discovery")
        granted: set[tuple[str, str]] = set()
        cluster_roles = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ClusterRole"}
        for binding in (r for r in resources if r["kind"] == "ClusterRoleBinding"):
            if any(s.get("kind") == "ServiceAccount" and s.get("name") == account and s.get("namespace") == namespace for s in binding.get("subjects", [])):
                role = cluster_roles.get(binding["roleRef"]["name"])
                R.check(role is not None, f"{where}: ClusterRoleBinding {binding['metadata']['name']} binds a missing ClusterRole")
                for rule in (role or {}).get("rules", []):
                    R.check(set(rule.get("verbs", [])) <= {"get", "list", "watch"}, f"{where}: prometheus may {rule.get('verbs')}: discovery only reads")
                    if {"list", "watch"} <= set(rule.get("verbs", [])):
                        granted |= {(g, res) for g in rule.get("apiGroups", []) for res in rule.get("resources", [])}
        needed = set().union(*(SD_ROLE_RESOURCES.get(role, {("?", role)}) for role in roles)) if roles else set()
        R.check(needed <= granted, f"{where}: prometheus's discovery (roles {sorted(roles)}) needs list/watch on {sorted(needed - granted)}")
        for am in config.get("alerting", {}).get("alertmanagers", []):
            for static in am.get("static_configs", []):
                for target in static.get("targets", []):
                    port = service_target(target, "alertmanager")
                    if port:
                        edges.add(("prometheus", "alertmanager", port))

    # Alertmanager: the Kubernetes configuration, each webhook to a receiver that logs the body.
    spec, container, _ = pod("alertmanager")
    text = file_at(spec, container, arg(container, "--config.file"))
    if R.check(text == read("monitoring/alertmanager-kubernetes.yml"), f"{where}: alertmanager does not read monitoring/alertmanager-kubernetes.yml"):
        for receiver in yaml.safe_load(text).get("receivers", []):
            for hook in receiver.get("webhook_configs", []):
                host, _, path = split_url(hook["url"])
                app = app_of(services[host]) if host in services else ""
                port = service_target(hook["url"], app) if app in deployments else None
                if not R.check(port is not None, f"{where}: alertmanager's webhook {hook['url']} reaches no receiver pod"):
                    continue
                edges.add(("alertmanager", app, port))
                rspec, rcontainer, _ = pod(app)
                command = rcontainer.get("command", [])
                conf = file_at(rspec, rcontainer, command[command.index("-c") + 1]) if "-c" in command else None
                block = re.search(r"location\s*=\s*%s\s*\{(.*?)(?=\n\s*location\s|\Z)" % re.escape(path), conf or "", re.S)
                logged = block and re.search(r"^\s*access_log\s+/dev/stdout\s+\w+", block.group(1), re.M)
                R.check(bool(logged), f"{where}: {app} does not log the notifications posted to {path}")

    # Grafana: datasource, dashboard provider, dashboards, home dashboard.
    spec, container, _ = pod("grafana")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    datasources = file_at(spec, container, "/etc/grafana/provisioning/datasources/prometheus.yml")
    if R.check(datasources == read("monitoring/grafana/provisioning/datasources/prometheus.yml"), f"{where}: grafana lacks the provisioned datasource"):
        for source in yaml.safe_load(datasources)["datasources"]:
            port = service_target(source["url"], "prometheus")
            if port:
                edges.add(("grafana", "prometheus", port))
    provider = file_at(spec, container, "/etc/grafana/provisioning/dashboards/titanium.yml")
    if R.check(provider == read("monitoring/grafana/provisioning/dashboards/titanium.yml"), f"{where}: grafana lacks the dashboard provider"):
        path = yaml.safe_load(provider)["providers"][0]["options"]["path"]
        boards = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "monitoring", "grafana", "dashboards", "*.json"))}
        R.check(keys_at(spec, container, path) == boards, f"{where}: grafana's {path} should hold {sorted(boards)}")
        home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        R.check(home is None or file_at(spec, container, home) is not None, f"{where}: grafana's home dashboard {home} is not mounted")
    return edges


def check_alert_delivery() -> None:
    """A notification from a real Alertmanager (Debian's) with monitoring/alertmanager-kubernetes.yml
    (its webhook pointed at 127.0.0.1, group_wait 0 s) lands in the log of nginx (Debian's) running
    the component's alert-log.nginx.conf."""
    import socket
    import time
    import urllib.request
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not R.check(bool(alertmanager and nginx), "alertmanager or nginx not installed: cannot deliver a notification to alert-log"):
        return

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    log_port, inner_port, am_port = port(), port(), port()
    with tempfile.TemporaryDirectory() as work:
        conf = read(f"{MONITORING_COMPONENT}/alert-log.nginx.conf")
        R.check("listen 8080;" in conf and "127.0.0.1:8081" in conf, "alert-log.nginx.conf: listens elsewhere than this check rewrites")
        conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{log_port};").replace("127.0.0.1:8081", f"127.0.0.1:{inner_port}").replace("/tmp/", work + "/")
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(conf)
        config = yaml.safe_load(read("monitoring/alertmanager-kubernetes.yml"))
        config["route"]["group_wait"] = "0s"
        hooks = [h for r in config["receivers"] for h in r.get("webhook_configs", [])]
        for hook in hooks:
            host, hook_port, path = split_url(hook["url"])
            hook["url"] = f"http://127.0.0.1:{log_port}{path}"
        with open(os.path.join(work, "alertmanager.yml"), "w") as f:
            yaml.safe_dump(config, f)
        log_path = os.path.join(work, "alert-log.out")
        processes = []
        try:
            with open(log_path, "w") as out:
                processes.append(subprocess.Popen([nginx, "-c", os.path.join(work, "nginx.conf"), "-p", work, "-g", "daemon off;"],
                                                  stdout=out, stderr=subprocess.DEVNULL))
            processes.append(subprocess.Popen([alertmanager, f"--config.file={work}/alertmanager.yml", f"--storage.path={work}/am",
                                               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            alert = [{"labels": {"alertname": "ServiceDown", "service": "user-service", "severity": "critical"},
                      "annotations": {"summary": "consistency check"}}]
            posted, line = False, None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and line is None:
                if not posted:
                    try:
                        request = urllib.request.Request(f"http://127.0.0.1:{am_port}/api/v2/alerts", data=json.dumps(alert).encode(),
                                                         headers={"Content-Type": "application/json"}, method="POST")
                        urllib.request.urlopen(request, timeout=2).close()
                        posted = True
                    except OSError:
                        pass
                for text in open(log_path).read().splitlines():
                    if "ServiceDown" in text:
                        line = text
                time.sleep(0.2)
            if not R.check(line is not None, f"alert-log: no notification logged within 20 s (alert posted: {posted})"):
                return
            notification = json.loads(json.loads(line)["notification"])
            alerts = notification.get("alerts", [])
            R.check(notification.get("receiver") == "default" and notification.get("status") == "firing"
                    and [a["labels"].get("alertname") for a in alerts] == ["ServiceDown"],
                    f"alert-log: the logged notification is not the alert sent: {line[:300]}")
        finally:
            for process in processes:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def apply_json_patch(document, operations: list[dict]):
    """RFC 6902 add/replace/remove, as skaffold applies a profile's patches."""
    import copy
    document = copy.deepcopy(document)
    for op in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            if op["op"] == "add":
                target.insert(len(target) if last == "-" else int(last), op["value"])
            elif op["op"] == "replace":
                target[int(last)] = op["value"]
            elif op["op"] == "remove":
                del target[int(last)]
        else:
            if op["op"] == "replace" and last not in target:
                raise KeyError(op["path"])
            if op["op"] in ("add", "replace"):
                target[last] = op["value"]
            elif op["op"] == "remove":
                del target[last]
    return document


def check_nginx(df: Dockerfile) -> None:
    """Serve dashboard-ui/ with the dashboard-ui image's nginx.conf (Debian's nginx)."""
    conf = df.stages.get("dashboard-ui", {}).get("files", {}).get("/etc/nginx/nginx.conf")
    if not R.check(conf is not None, "Dockerfile: the dashboard-ui stage writes no /etc/nginx/nginx.conf"):
        return
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not R.check(nginx is not None and os.path.exists("/etc/nginx/mime.types"), "nginx not installed: cannot try the dashboard-ui configuration"):
        return
    import socket
    import time
    import urllib.request
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        site = os.path.join(work, "html")
        shutil.copytree(os.path.join(ROOT, "dashboard-ui"), site, symlinks=False, ignore=shutil.ignore_patterns("vendor"))
        os.makedirs(os.path.join(site, "vendor"))
        chart = "/usr/share/javascript/chart.js/chart.min.js"
        if os.path.exists(chart):
            shutil.copy(chart, os.path.join(site, "vendor", "chart.min.js"))
        for d, _, files in os.walk(work):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        listen = re.findall(r"^\s*listen\s+(\d+)", conf, re.M)
        local = re.sub(r"^(\s*listen\s+)\d+", r"\g<1>127.0.0.1:%d" % port, conf, flags=re.M)
        local = local.replace("/tmp/", work + "/").replace("/usr/share/nginx/html", site)
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(local)
        test = subprocess.run([nginx, "-t", "-q", "-c", os.path.join(work, "nginx.conf"), "-p", work], capture_output=True, text=True)
        if not R.check(test.returncode == 0, f"Dockerfile: nginx rejects the dashboard-ui nginx.conf: {test.stderr.strip()}"):
            return
        R.check(listen == ["8080"], f"Dockerfile: dashboard-ui nginx should listen on 8080 only, listens on {listen}")
        server = subprocess.Popen([nginx, "-c", os.path.join(work, "nginx.conf"), "-p", work, "-g", "daemon off;"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wanted = [("/healthz", "text/plain"), ("/", "text/html")]
            if os.path.exists(chart):
                wanted.append(("/vendor/chart.min.js", "javascript"))
            for path, kind in wanted:
                status, ctype = None, ""
                for _ in range(50):
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                            status, ctype = response.status, response.headers.get("Content-Type", "")
                        break
                    except urllib.error.HTTPError as error:
                        status = error.code
                        break
                    except OSError:
                        time.sleep(0.1)
                R.check(status == 200 and kind in ctype, f"dashboard-ui nginx: GET {path} answered {status} {ctype!r}")
        finally:
            server.terminate()
            server.wait(timeout=10)


# ----------------------------------------------------------------------------------------------
# Each service's README against its code

ROUTE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def readme_sections(text: str) -> dict[str, list[str]]:
    """The lines under each `## ` heading, by lower-cased heading."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.+?)\s*$", line)
        if heading:
            current = sections.setdefault(heading.group(1).lower(), [])
        elif current is not None:
            current.append(line)
    return sections


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of a markdown table's body rows (header and separator left out)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.strip().startswith("|")]
    return rows[2:] if len(rows) >= 2 and re.fullmatch(r"[-:| ]+", "|".join(rows[1])) else rows


def parse_service_readme(text: str) -> dict:
    """What a Services/*/README.md claims: `## Configuration` (a table, variables in backticks in
    the first column), `## Routes` (a table: methods, then paths in backticks) and `## Metrics`
    (a list, the metric name first in backticks)."""
    sections = readme_sections(text)
    parsed: dict = {"missing": [h for h in ("configuration", "routes", "metrics") if h not in sections]}
    parsed["variables"] = {v for row in table_rows(sections.get("configuration", [])) if row
                           for v in re.findall(r"`([A-Z][A-Z0-9_]*)`", row[0])}
    routes: set[tuple[str | None, str]] = set()
    for row in table_rows(sections.get("routes", [])):
        if len(row) < 2:
            continue
        methods = [m for m in re.findall(r"[A-Za-z]+", row[0]) if m.upper() in ROUTE_METHODS] or [None]
        for route in re.findall(r"`(/[^`\s]*)`", row[1]):
            routes |= {(m.upper() if m else None, route) for m in methods}
    parsed["routes"] = routes
    parsed["metrics"] = {m.split("{")[0] for line in sections.get("metrics", [])
                         for m in re.findall(r"^\s*[-*]\s+`([A-Za-z_:][A-Za-z0-9_:]*(?:\{[^`]*\})?)`", line)}
    return parsed


def check_service_readmes(pkg: SwiftPackage, read_vars: dict[str, set[str]]) -> None:
    """Services/<name>/README.md lists exactly the variables its service reads beyond those every
    service reads, every route it registers beyond the ones every service has (with the method),
    and only metric names its code exports, every one specific to it included. All from the code
    as it is now, wherever in the service's folder or its shared modules a read moves."""
    common_vars = set.intersection(*read_vars.values())
    calls = {name: pkg.route_calls(name) for name in SERVICES}
    common_routes = set.intersection(*({r for _, r in c} for c in calls.values()))
    exported = {name: set(pkg.exported_metrics(pkg.swift_files(name))) for name in SERVICES}
    common_metrics = set.intersection(*exported.values())
    for name in SERVICES:
        folder = pkg.targets[pkg.products[name]]["path"]
        where = f"{folder}/README.md"
        if not R.check(os.path.exists(os.path.join(ROOT, where)), f"{where}: missing"):
            continue
        doc = parse_service_readme(read(where))
        R.check(not doc["missing"], f"{where}: no section(s) {', '.join('## ' + h.title() for h in doc['missing'])}")
        specific = read_vars[name] - common_vars
        for variable in sorted(specific - doc["variables"]):
            R.check(False, f"{where}: ## Configuration lacks {variable}, which {name} reads")
        for variable in sorted(doc["variables"] - specific):
            why = "read by every service (ServiceConfiguration/TraceConfiguration): not listed per service" \
                if variable in common_vars else f"{name} never reads it"
            R.check(False, f"{where}: ## Configuration lists {variable}, {why}")
        R.check(True, "")
        documented = doc["routes"]
        documented_paths = {r for _, r in documented}
        own_text = "".join(open(f, encoding="utf-8").read() for f in glob.glob(os.path.join(ROOT, folder, "**", "*.swift"), recursive=True))
        for method, route in sorted(calls[name], key=lambda c: (c[1], c[0] or "")):
            if route in common_routes:
                continue
            if method is None:
                R.check(route in documented_paths, f"{where}: ## Routes lacks {route}, which {name} registers")
            else:
                R.check((method, route) in documented or (None, route) in documented,
                        f"{where}: ## Routes lacks {method} {route}, which {name} registers")
        code_paths = {r for _, r in calls[name]}
        for method, route in sorted((m, r) for m, r in documented if m and r in code_paths):
            # HEAD comes with every GET (the routers generate it).
            R.check((method, route) in calls[name] or (None, route) in calls[name] or (method == "HEAD" and ("GET", route) in calls[name]),
                    f"{where}: ## Routes lists {method} {route}, but {name} registers {route} for "
                    f"{', '.join(sorted(m or 'any method' for m, r in calls[name] if r == route))} only")
        for route in sorted(documented_paths - code_paths):
            # A path the service serves without a literal route of its own (a proxied prefix, a
            # WebSocket route): its literal, or its prefix before `/**`, is in the service's folder.
            literal = route[:-3] if route.endswith("/**") else route
            R.check(f'"{route}"' in own_text or f'"{literal}"' in own_text,
                    f"{where}: ## Routes lists {route}, which {name} neither registers nor names in {folder}")
        for metric in sorted(doc["metrics"] - exported[name]):
            R.check(False, f"{where}: ## Metrics lists {metric}, which {name}'s code does not export")
        for metric in sorted(exported[name] - common_metrics - doc["metrics"]):
            R.check(False, f"{where}: ## Metrics lacks {metric}, which {name} exports")
        R.check(True, "")


def check_openapi() -> None:
    """The files generated from openapi/titanium.yaml (scripts/openapi.py) are current: the JSON the
    route-coverage tests read and the Swift file the gateway serves it from."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("openapi_generator", os.path.join(ROOT, "scripts", "openapi.py"))
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for path in generator.stale():
        R.check(False, f"{path} is stale: run python3 scripts/openapi.py after changing {generator.SOURCE}")
    R.check(True, "")


def render(overlay: str) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, OVERLAYS[overlay])], capture_output=True, text=True)
    if result.returncode != 0:
        R.check(False, f"kubectl kustomize {OVERLAYS[overlay]} failed: {result.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rendered", action="append", default=[], metavar="OVERLAY=FILE")
    parser.add_argument("--promtool", default=shutil.which("promtool"))
    args = parser.parse_args()

    pkg = SwiftPackage()
    for name in SERVICES:
        R.check(name in pkg.products, f"Package.swift has no executable product {name}")
    read_vars = {name: pkg.variables(name) for name in SERVICES}
    routes = {name: pkg.routes(name) for name in SERVICES}
    ports = {name: pkg.default_port(name) for name in SERVICES}
    for name in SERVICES:
        R.check(len(read_vars[name]) > 5 and "HTTP_PORT" in read_vars[name], f"{name}: found only {sorted(read_vars[name])} settings in its sources")
        R.check({"/health/live", "/health/ready", "/metrics"} <= routes[name], f"{name}: operational routes not found in its sources")
        R.check(ports[name] is not None, f"{name}: default port not found")
    print("settings read, from the Swift sources:")
    for name in SERVICES:
        print(f"  {name} (:{ports[name]}): {' '.join(sorted(read_vars[name]))}")
    check_pending(read_vars)
    check_service_readmes(pkg, read_vars)
    check_openapi()

    df = Dockerfile()
    check_compose(pkg, df, read_vars, routes, ports)

    rendered: dict[str, list[dict]] = {}
    for item in args.rendered:
        overlay, _, path = item.partition("=")
        rendered[overlay] = [d for d in yaml.safe_load_all(open(path)) if d]
    for overlay in OVERLAYS:
        if overlay not in rendered:
            rendered[overlay] = render(overlay)
    prom_k8s = yaml.safe_load(read("monitoring/prometheus-kubernetes.yml"))
    images: set[str] = set()
    for overlay, resources in rendered.items():
        images |= check_overlay(overlay, resources, df, read_vars, routes, ports, prom_k8s)
    check_local_overlay_shape(rendered["local"])
    check_skaffold(df, images, rendered)
    check_monitoring(pkg.exported_metrics(), args.promtool)
    check_backup_script(rendered["local"])
    check_monitoring_sources()
    for overlay in ("local-postgres", "production-postgres"):
        check_postgres_overlay(overlay, rendered[overlay], rendered[overlay.removesuffix("-postgres")])
    for overlay, resources in rendered.items():
        check_backup_mounts(overlay, resources)
        edges = check_monitoring_overlay(f"overlay {overlay}", resources)
        check_network_policies(f"overlay {overlay}", resources, edges)
    R.check(any(r["kind"] == "Deployment" and app_of(r) == "prometheus" for r in rendered.get("local-monitoring", [])),
            "overlay local-monitoring: the monitoring component is missing")
    check_alert_delivery()
    check_nginx(df)

    if R.warnings:
        print(f"{len(R.warnings)} warnings (above)")
    print(f"consistency: {R.passed} passed, {len(R.failed)} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
