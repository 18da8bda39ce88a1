"""Directories only their owner may enter: a node's data holds every key, and a local
cluster's logs the nodes' errors.

etcd creates its data directory 0700 and warns about a wider one; so does paxoskv. A
directory that exists already is left as it is (its owner chose its mode), and a warning
about a node's data open to other users is the node's (shard/node_identity.py).
"""

from __future__ import annotations

import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "make_private_dir", "open_to_others"]

PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create `path` and each missing parent with mode 0700 (as Go's os.MkdirAll does with
    its mode; Path.mkdir(parents=True) gives the parents the default 0755).

    Raises:
        OSError: a part of the path is not a directory, or cannot be created.
    """
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_private_dir(path.parent)
        path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)  # exist_ok: made meanwhile elsewhere
    except OSError:
        if not path.is_dir():  # a file in the way, no permission, ...: its own error
            raise


def open_to_others(path: Path) -> bool:
    """Whether users other than the owner and its group may enter or list `path`."""
    return bool(stat.S_IMODE(path.stat().st_mode) & stat.S_IRWXO)
