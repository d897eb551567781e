#!/usr/bin/env python3
"""The Docker build context, as .dockerignore shapes it (docker-py's implementation of the
rules), holds what the Dockerfile needs and nothing it must not: every target path of
Package.swift, the dashboard's files, and no .build, .git or host symlinks.

Run with the python of a virtualenv that has docker-py (the docker-compose one)."""
import os
import re
import sys

from docker.utils.build import exclude_paths

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
patterns = [line.strip() for line in open(os.path.join(ROOT, ".dockerignore"))
            if line.strip() and not line.startswith("#")]
context = exclude_paths(ROOT, patterns)
failed = []

def check(ok, message):
    if not ok:
        failed.append(message)
        print(f"FAIL {message}")

manifest = open(os.path.join(ROOT, "Package.swift")).read()
check("Package.swift" in context, "Package.swift is not in the build context")
# An interpolated path is inside a function that makes test targets (serviceTests): every
# target it makes is under Tests/, checked as one.
for path in {p if "\\(" not in p else p.split("/")[0] for p in re.findall(r'path:\s*"([^"]+)"', manifest)}:
    inside = [f for f in context if f == path or f.startswith(path + "/")]
    check(bool(inside), f"target path {path} of Package.swift is not in the build context")
check("dashboard-ui/index.html" in context, "dashboard-ui/index.html is not in the build context")
for forbidden in (".build/", ".git/", "dashboard-ui/vendor", ".venv"):
    leaked = sorted(f for f in context if f.startswith(forbidden))
    check(not leaked, f"{forbidden} leaks into the build context: {leaked[:3]}")
sizes = sum(os.path.getsize(os.path.join(ROOT, f)) for f in context if os.path.isfile(os.path.join(ROOT, f)))
print(f"docker build context: {len(context)} files, {sizes / 1e6:.1f} MB")
print(f"docker context: {0 if failed else 1} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
