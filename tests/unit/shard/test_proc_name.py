"""A node process's name (shard/proc_name.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shard.cluster import _proc_state
from shard.proc_name import MAX_NAME_BYTES


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("paxoskv-n1", "paxoskv-n1"),
        ("paxoskv-" + "x" * 20, None),
        ("paxoskv-n1-café", "paxoskv-n1-caf"),  # "é" would be cut in half: left out whole
    ],
)
def test_the_process_and_the_threads_it_starts_show_the_name(name: str, shown: str | None) -> None:
    script = (
        "import sys, threading\n"
        "from shard.proc_name import set_process_name\n"
        "assert set_process_name(sys.argv[1])\n"
        "names = []\n"
        "t = threading.Thread(target=lambda: names.append(\n"
        "    open(f'/proc/self/task/{threading.get_native_id()}/comm').read().strip()))\n"
        "t.start(); t.join()\n"
        "print(open('/proc/self/comm').read().strip(), names[0])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, name], capture_output=True, text=True, check=True
    )
    expected = shown or name[:MAX_NAME_BYTES]
    assert run.stdout.split() == [expected, expected]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_state_of_a_process_whose_name_is_not_utf8_is_read() -> None:
    """Found by review: `paxoskv cluster status` decoded /proc/PID/stat as UTF-8, and a
    node named with half a character in its first 15 bytes made it raise."""
    script = (
        "import ctypes, sys\n"
        "ctypes.CDLL(None).prctl(15, b'paxoskv-caf\\xc3', 0, 0, 0)\n"
        "print('named', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "named\n"
        assert _proc_state(proc.pid) in ("R", "S")
    finally:
        proc.kill()
        proc.wait()
