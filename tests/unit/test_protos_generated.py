"""The committed *_pb2.py / .pyi / *_pb2_grpc.py files match their .proto sources.

Regenerates every .proto under paxos/ shard/ router/ txn/ into a temporary directory with the
same protoc invocation as `.ci/gen-protos` and compares bytes. On a mismatch: run
`.ci/gen-protos` and commit the result.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools")

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("paxos", "shard", "router", "txn")
_SERVICE = re.compile(r"^\s*service\s", re.MULTILINE)


def _protos() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.proto"))


def _generate(protos: list[Path], out: Path, grpc: bool) -> None:
    if not protos:
        return
    args = [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--python_out={out}"]
    args.append(f"--pyi_out={out}")
    if grpc:
        args.append(f"--grpc_python_out={out}")
    args += [str(p.relative_to(ROOT)) for p in protos]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True)


def test_there_are_protos() -> None:
    assert (ROOT / "shard" / "shard.proto") in _protos()


def test_generated_files_match_their_protos(tmp_path: Path) -> None:
    protos = _protos()
    with_service = [p for p in protos if _SERVICE.search(p.read_text())]
    _generate([p for p in protos if p not in with_service], tmp_path, grpc=False)
    _generate(with_service, tmp_path, grpc=True)
    generated = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc produced nothing"
    stale = []
    for fresh in generated:
        rel = fresh.relative_to(tmp_path)
        committed = ROOT / rel
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(str(rel))
    assert not stale, f"stale or missing generated files {stale}: run .ci/gen-protos"
