"""The traces suite: OTLP export and sampling against real Titanium processes.

It reuses the edge suite's harness (``tests/edge/conftest.py``: processes on port 0, raw HTTP,
cleanup), loaded under the name ``edge_harness``, and adds an OTLP/HTTP receiver
(``otlp_receiver.py``) that checks every export against the protobuf schema of the
``opentelemetry-proto`` package. Run by ``scripts/traces-test.sh``.
"""

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "edge" / "conftest.py"
_spec = importlib.util.spec_from_file_location("edge_harness", _path)
edge_harness = importlib.util.module_from_spec(_spec)
sys.modules["edge_harness"] = edge_harness
_spec.loader.exec_module(edge_harness)

# The harness's fixtures, registered here.
procs = edge_harness.procs
fn_procs = edge_harness.fn_procs
_kill_leftovers = edge_harness._kill_leftovers
