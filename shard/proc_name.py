"""The name a node process shows in `ps`, `top` and `pgrep` (`paxoskv-n1`), not `python3.11`.

Linux's prctl(PR_SET_NAME) sets the calling thread's name, which is the process's name when
called from the main thread, and which threads started afterwards (gRPC's, RocksDB's)
inherit; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import sys

_PR_SET_NAME = 15
MAX_NAME_BYTES = 15
"""The kernel keeps 16 bytes, the last a NUL; a longer name is cut."""


def set_process_name(name: str) -> bool:
    """Name this process `name`, cut to MAX_NAME_BYTES on a character boundary; False where
    that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    # Cut whole characters: half of one is invalid UTF-8 in /proc/PID/stat and comm.
    title = name.encode()[:MAX_NAME_BYTES].decode(errors="ignore").encode()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_NAME, title, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
