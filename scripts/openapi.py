#!/usr/bin/env python3
"""Generates, from openapi/titanium.yaml (the source of truth), the two files made from it:

- openapi/titanium.json: the document as JSON (read by the route-coverage tests, and by clients);
- Services/api-gateway/OpenAPIDocument.swift: the same JSON in the gateway's binary, which
  serves it at GET /api/openapi.json (container images carry only the binaries), with its ETag.

    python3 scripts/openapi.py           write both files
    python3 scripts/openapi.py --check   exit 1, naming them, when either is stale

tests/deploy/check_consistency.py (run by scripts/validate-deploy.sh) runs the check. Needs PyYAML.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SOURCE = "openapi/titanium.yaml"
JSON_FILE = "openapi/titanium.json"
SWIFT_FILE = "Services/api-gateway/OpenAPIDocument.swift"


def document_json() -> str:
    """The YAML as JSON text: its key order kept, two-space indent, ASCII (other characters
    escaped, so that no invisible one hides in the Swift source), no trailing newline."""
    with open(os.path.join(ROOT, SOURCE), encoding="utf-8") as f:
        document = yaml.safe_load(f)
    return json.dumps(document, indent=2, ensure_ascii=True)


def raw_string_delimiter(text: str) -> str:
    """The fewest `#` with which a Swift raw string literal holds `text` verbatim: no `\\#…`
    escape and no closing `\"\"\"#…` inside."""
    hashes = "#"
    while "\\" + hashes in text or '"""' + hashes in text:
        hashes += "#"
    return hashes


def swift_source(text: str) -> str:
    etag = '"sha256-%s"' % hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    hashes = raw_string_delimiter(text)
    indent = " " * 8
    body = "\n".join(indent + line for line in text.split("\n"))
    return f"""// Generated from {SOURCE} by scripts/openapi.py: do not edit. After changing the YAML, run
// `python3 scripts/openapi.py`; tests/deploy/check_consistency.py fails while this file is stale.

/// The public API's OpenAPI 3.1 document, in the binary (the images carry nothing else), served at
/// `GET /api/openapi.json` (``OpenAPIDocument/register(on:)``).
enum OpenAPIDocument {{
    /// {SOURCE} as JSON ({JSON_FILE} holds the same).
    static let json = {hashes}\"\"\"
{body}
        \"\"\"{hashes}

    /// A strong validator of ``json``: the first 128 bits of its SHA-256.
    static let etag = #"{etag}"#
}}
"""


def outputs() -> dict[str, str]:
    text = document_json()
    return {JSON_FILE: text + "\n", SWIFT_FILE: swift_source(text)}


def stale() -> list[str]:
    """The generated files that differ from what the YAML makes now."""
    result = []
    for path, content in outputs().items():
        try:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != content:
            result.append(path)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args()
    if args.check:
        paths = stale()
        for path in paths:
            print(f"{path} is stale: run python3 scripts/openapi.py", file=sys.stderr)
        return 1 if paths else 0
    for path, content in outputs().items():
        with open(os.path.join(ROOT, path), "w", encoding="utf-8") as f:
            f.write(content)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
