"""Directories a node or `paxoskv cluster start` creates are owner-only (0700): the data holds
every key. One that exists is left as its owner made it; a node's data directory open to
other users gets a warning."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shard.node_identity import NodeIdentity, open_node_disk
from shard.private_dirs import make_private_dir

N1 = NodeIdentity("c1", 1, "n1")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have: with it a plain mkdir makes 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_missing_parents_are_made_owner_only_and_existing_ones_are_left(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    make_private_dir(shared / "a" / "b")
    assert _mode(shared / "a") == _mode(shared / "a" / "b") == 0o700
    assert _mode(shared) == 0o755  # the user's own directory is not changed
    make_private_dir(shared)
    assert _mode(shared) == 0o755
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        make_private_dir(tmp_path / "file" / "x")


def test_a_node_creates_its_data_directory_owner_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`paxoskv node --config` with data_dir/NAME/db missing: every level it creates is 0700."""
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="paxoskv.node"):
        open_node_disk(data_dir / "n1" / "db", N1, first_start=True).close()
    assert [_mode(p) for p in (data_dir, data_dir / "n1", data_dir / "n1" / "db")] == [0o700] * 3
    assert not [r for r in caplog.records if "open to other users" in r.getMessage()]


def test_a_data_directory_open_to_others_is_kept_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory made before nodes created theirs 0700 (or by hand): not changed behind the
    owner's back, but said."""
    db = tmp_path / "db"
    db.mkdir(mode=0o755)
    with caplog.at_level(logging.WARNING, logger="paxoskv.node"):
        open_node_disk(db, N1, first_start=True).close()
    assert _mode(db) == 0o755
    [warning] = [r for r in caplog.records if "open to other users" in r.getMessage()]
    assert (warning.data_dir, warning.mode) == (str(db), "0755")  # type: ignore[attr-defined]
