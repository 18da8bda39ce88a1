"""Lint, format, types and the architecture's import rules, enforced as tests."""

from __future__ import annotations

import ast
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

# Sans-I/O cores never touch clocks, sockets, disks, threads or global randomness.
SANS_IO_MODULES = [
    "paxos/replica.py",
    "paxos/ready.py",
    "paxos/messages.py",
    "paxos/config.py",
    "paxos/storage.py",
    "router/shard_map.py",
    "router/meta.py",
    "router/cache.py",
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
    # What the cores above import (found missing by the PITFALLS audit).
    "paxos/ballot.py",
    "paxos/errors.py",
    "router/limits.py",
    "shard/codec.py",
    "shard/errors.py",
    "shard/limits.py",
    "shard/lock_wait.py",
    "shard/mvcc.py",
    "shard/proven_commits.py",
    "shard/snapshots.py",
    "txn/codec.py",
    "txn/proofs.py",
]
FORBIDDEN_IN_CORE = {
    "asyncio",
    "datetime",
    "grpc",
    "os",
    "rocksdict",
    "secrets",
    "socket",
    "threading",
    "time",
    "uuid",
}


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


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


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_cores_are_sans_io(module: str) -> None:
    path = ROOT / module
    bad = _imports(path) & FORBIDDEN_IN_CORE
    assert not bad, f"{module} imports {sorted(bad)}"
    global_random = [
        f"line {node.lineno}: random.{node.func.attr}()"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "random"
        and node.func.attr != "Random"
    ]
    assert not global_random, (
        f"{module} uses the global random generator ({', '.join(global_random)}); "
        "take an injected random.Random"
    )
