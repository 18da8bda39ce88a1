"""Lint, format, types and the architecture's import rules, enforced as tests."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("paxos", "shard", "router", "txn")

# DESIGN.md "imports run one way": each package may import only these project packages.
ALLOWED_IMPORTS = {
    "paxos": set(),
    "router": set(),
    "txn": {"router"},
    "shard": {"paxos", "router", "txn"},
}

# Sans-I/O cores never touch clocks, sockets, disks, threads or global randomness; nor does
# any project module they import (`_core_closure`).
SANS_IO_CORES = [
    "paxos/replica.py",
    "paxos/ready.py",
    "paxos/messages.py",
    "paxos/config.py",
    "paxos/storage.py",
    "router/__init__.py",
    "router/shard_map.py",
    "router/meta.py",
    "router/cache.py",
    "router/codec.py",
    "router/limits.py",
    "router/seeds.py",
    "router/client_errors.py",
    "router/env.py",
    "router/scan_cursor.py",
    "router/ttl.py",
    "txn/hlc.py",
    "txn/records.py",
    "txn/store.py",
    "txn/participant.py",
    "txn/coordinator.py",
    "shard/state_machine.py",
    "shard/node.py",
    "shard/apps.py",
    "shard/node_records.py",
    "shard/admission_checks.py",
    "shard/answers.py",
    "shard/txn_duties.py",
    "shard/execute.py",
]
# Modules a core imports that hold a shell part no core runs: what they may import for it.
SHELL_PARTS = {
    "txn/txn_ids.py": {"secrets"},  # new_txn_id draws a client's nonce; cores parse ids only
}
FORBIDDEN_IN_CORE = {
    "asyncio",
    "datetime",
    "grpc",
    "os",
    "rocksdict",
    "secrets",
    "socket",
    "subprocess",
    "threading",
    "time",
    "uuid",
}


def _imported_names(path: Path) -> set[str]:
    """Every module and `module.name` a file imports absolutely, inside functions too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports(path: Path) -> set[str]:
    """The top-level packages a file imports."""
    return {name.split(".")[0] for name in _imported_names(path)}


def _project_imports(path: Path) -> set[str]:
    """The project modules (as paths relative to ROOT) `path` imports, package inits aside."""
    found: set[str] = set()
    for name in _imported_names(path):
        relative = name.replace(".", "/") + ".py"
        if name.split(".")[0] in PACKAGES and (ROOT / relative).is_file():
            found.add(relative)
    return found


def _core_closure() -> list[str]:
    """The cores and every project module they import, directly or not; generated protobuf
    modules (data classes) aside."""
    seen: set[str] = set()
    todo = list(SANS_IO_CORES)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_project_imports(ROOT / module))
    return sorted(m for m in seen if not m.endswith("_pb2.py"))


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(240)
def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package: str) -> None:
    forbidden = set(PACKAGES) - ALLOWED_IMPORTS[package] - {package}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_only_the_routers_codec_reads_its_wire_format() -> None:
    """Within router/, router_pb2 stays behind codec.py: the map's wire form is read in one
    place."""
    users = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "router").glob("*.py")
        if "router.router_pb2" in _imported_names(path) and "_pb2" not in path.name
    }
    assert users == {"router/codec.py"}


def test_all_of_the_router_but_its_client_is_sans_io() -> None:
    """A new router module is checked as a core without being listed: only the client, the
    TLS files it reads, the ending of a loop that ran it and the cancelling of its tasks
    are the router's I/O shell."""
    shell = {"router/client.py", "router/tls.py", "router/loop_end.py", "router/cancelling.py"}
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "router").glob("*.py")
        if "_pb2" not in path.name
    }
    assert modules - shell <= set(_core_closure()), sorted(modules - shell - set(_core_closure()))


@pytest.mark.parametrize("package", ["paxos", "router", "txn"])
def test_public_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names {missing}, which {package} does not define"


@pytest.mark.parametrize("module", _core_closure())
def test_cores_are_sans_io(module: str) -> None:
    path = ROOT / module
    bad = _imports(path) & FORBIDDEN_IN_CORE - SHELL_PARTS.get(module, set())
    assert not bad, f"{module} imports {sorted(bad)} and is a core or imported by one"
    global_random = _global_randomness(path)
    assert not global_random, (
        f"{module} uses the global random generator ({', '.join(global_random)}); "
        "take an injected, seeded random.Random"
    )


def _global_randomness(path: Path) -> list[str]:
    """Uses of the `random` module's hidden generator, or of one seeded by the OS."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(
            a.name == "random" and a.asname for a in node.names
        ):
            found.append(f"line {node.lineno}: random imported under another name")
        elif isinstance(node, ast.ImportFrom) and node.module == "random":
            if any(a.name != "Random" for a in node.names):
                found.append(f"line {node.lineno}: from random import a function")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "random"
        ):
            if node.func.attr != "Random":
                found.append(f"line {node.lineno}: random.{node.func.attr}()")
            elif not node.args and not node.keywords:
                found.append(f"line {node.lineno}: random.Random() seeded by the OS")
    return found


def test_test_modules_have_unique_names() -> None:
    """tests/ has no packages, so pytest imports each test file by its basename: two files
    of one name end the whole run at collection ("import file mismatch"), which only a
    run of the whole suite shows (found when a fresh clone's CI stopped at it)."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        other = seen.setdefault(path.name, path)
        assert other == path, f"{path} and {other} have one name"
