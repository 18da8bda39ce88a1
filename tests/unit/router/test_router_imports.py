"""The router package's floor rules (DESIGN.md "Layout", STYLE.md §8.3), checked on its source.

- router/ imports nothing from paxos/, shard/ or txn/;
- it is pure: no clocks, sockets, disks, threads, tasks or global randomness;
- only router/codec.py touches the generated protobuf module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import router

ROUTER_DIR = Path(router.__file__).parent
# Generated protobuf/gRPC modules are not hand-written logic (kv_pb2_grpc.py imports grpc).
SOURCES = sorted(
    p for p in ROUTER_DIR.glob("*.py") if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
)

FORBIDDEN_PACKAGES = {"paxos", "shard", "txn"}
IMPURE_MODULES = {
    "asyncio",
    "grpc",
    "os",
    "random",
    "rocksdict",
    "secrets",
    "socket",
    "subprocess",
    "threading",
    "time",
    "uuid",
    "datetime",
}


def imported_modules(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_sources_found() -> None:
    assert {p.name for p in SOURCES} >= {"shard_map.py", "meta.py", "cache.py", "codec.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_imports_no_higher_floor(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_PACKAGES}
    assert not bad, f"{path.name} imports {sorted(bad)}: router/ must not depend on them"


# The client and the TLS files it reads are the router's I/O shell (grpc.aio, the disk);
# everything else in router/ decides.
SANS_IO_SOURCES = [p for p in SOURCES if p.name not in ("client.py", "tls.py")]


@pytest.mark.parametrize("path", SANS_IO_SOURCES, ids=lambda p: p.name)
def test_is_pure(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in IMPURE_MODULES}
    assert not bad, f"{path.name} imports {sorted(bad)}: router/ must stay sans-I/O"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_only_codec_imports_pb2(path: Path) -> None:
    uses_pb2 = any("router_pb2" in m for m in imported_modules(path))
    assert uses_pb2 == (path.name == "codec.py")


def test_public_surface() -> None:
    for name in router.__all__:
        assert hasattr(router, name), name


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    """router_pb2.py/.pyi are committed; they must be what protoc makes of router.proto now."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    repo = ROUTER_DIR.parent
    rc = protoc.main(
        [
            "protoc",
            f"-I{repo}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(ROUTER_DIR / "router.proto"),
        ]
    )
    assert rc == 0
    for name in ("router_pb2.py", "router_pb2.pyi"):
        fresh = (tmp_path / "router" / name).read_text()
        assert fresh == (ROUTER_DIR / name).read_text(), (
            f"router/{name} is out of date: regenerate with `python -m grpc_tools.protoc -I . "
            f"--python_out=. --pyi_out=. router/router.proto` from the repo root"
        )
