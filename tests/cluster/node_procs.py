"""Live `paxoskv node` processes found from /proc, for tests that check nothing was left
running (whatever started it: a CLI, the demo, a failed start)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def live_node_pids(matches: Callable[[list[str]], bool]) -> list[int]:
    """Pids of live processes whose command line runs `node` and `matches` (its argv)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "node" in argv and matches(argv):
            found.append(int(entry.name))
    return found
