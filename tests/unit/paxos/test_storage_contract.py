"""One conformance suite, run on every Storage implementation (memory and RocksDB)."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from paxos import Ballot, MemoryStorage, PersistBatch
from paxos.rocks import RocksStorage
from paxos.storage import Storage

B1, B2 = Ballot(1, 1), Ballot(2, 3)


def check_storage(storage: Storage, reopen: Callable[[], Storage]) -> None:
    storage.save(
        PersistBatch(
            promised=B1,
            accepted={1: (B1, (b"a",)), 2: (B1, ()), 3: (B1, (b"b", b"c"))},
            chosen_watermark=1,
        )
    )
    storage.save(PersistBatch(promised=B2, accepted={3: (B2, (b"z",))}, chosen_watermark=2))
    storage.save(PersistBatch(log_start=2))
    state = reopen().load()
    assert state.promised == B2
    assert state.accepted == {2: (B1, ()), 3: (B2, (b"z",))}
    assert state.chosen_watermark == 2
    assert state.log_start == 2
    # The chosen watermark never moves back, whatever a batch says.
    storage.save(PersistBatch(chosen_watermark=1))
    assert reopen().load().chosen_watermark == 2
    storage.save(PersistBatch(chosen_watermark=3))  # alone, it is still a meta change
    assert reopen().load().chosen_watermark == 3
    # The rebuilding flag (replica rule 14) is kept until a batch clears it, alone or with
    # the rest.
    assert reopen().load().rebuilding is False
    storage.save(PersistBatch(rebuilding=True))
    state = reopen().load()
    assert state.rebuilding is True and state.promised == B2 and state.log_start == 2
    storage.save(PersistBatch(accepted={4: (B2, (b"y",))}))
    assert reopen().load().rebuilding is True
    storage.save(PersistBatch(promised=B2, rebuilding=False))
    assert reopen().load().rebuilding is False
    # So is the longest lease promise a restart must wait out (replica rule 6).
    assert reopen().load().lease_promise_s == 0.0
    storage.save(PersistBatch(lease_promise_s=0.4))
    storage.save(PersistBatch(promised=B2, accepted={5: (B2, (b"x",))}))
    state = reopen().load()
    assert state.lease_promise_s == 0.4 and state.rebuilding is False
    storage.save(PersistBatch(lease_promise_s=0.12))
    assert reopen().load().lease_promise_s == 0.12


def test_memory_storage_contract() -> None:
    storage = MemoryStorage()
    check_storage(storage, lambda: storage)


def test_rocks_storage_contract(tmp_path: Path) -> None:
    storage = RocksStorage.open(str(tmp_path / "db"), group_id=5)
    check_storage(storage, lambda: storage)


def test_rocks_storage_reads_the_meta_written_before_the_flags(tmp_path: Path) -> None:
    """A database from before the rebuilding flag holds a 32-byte meta record: not rebuilding."""
    storage = RocksStorage.open(str(tmp_path / "db"), group_id=5)
    meta_key = b"p" + (5).to_bytes(4, "big") + b"m"
    storage._db[meta_key] = struct.pack(">QQQQ", 2, 3, 7, 4)
    state = RocksStorage(storage._db, group_id=5).load()
    assert (state.promised, state.chosen_watermark, state.log_start) == (B2, 7, 4)
    assert state.rebuilding is False


def test_memory_storage_crash_loses_only_unsynced() -> None:
    storage = MemoryStorage()
    storage.save(PersistBatch(promised=B1, accepted={1: (B1, (b"kept",))}))
    storage.save(PersistBatch(promised=B2, accepted={2: (B2, (b"lost",))}), sync=False)
    assert storage.load().promised == B2
    storage.crash()
    state = storage.load()
    assert state.promised == B1
    assert state.accepted == {1: (B1, (b"kept",))}


def test_rocks_groups_do_not_see_each_other(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    db = Rdict(str(tmp_path / "db"), Options(raw_mode=True))
    one, two = RocksStorage(db, 1), RocksStorage(db, 2)
    one.save(PersistBatch(promised=B1, accepted={1: (B1, (b"one",))}))
    two.save(PersistBatch(promised=B2, accepted={1: (B2, (b"two",))}, log_start=1))
    assert one.load().accepted == {1: (B1, (b"one",))}
    assert two.load().accepted == {1: (B2, (b"two",))}
    db.close()


@pytest.mark.timeout(60)
def test_rocks_state_survives_process_kill(tmp_path: Path) -> None:
    """A writer process is SIGKILLed right after save(); a new process finds every vote."""
    path = tmp_path / "db"
    writer = textwrap.dedent(
        f"""
        import os, signal
        from paxos import Ballot, PersistBatch
        from paxos.rocks import RocksStorage
        s = RocksStorage.open({str(path)!r}, group_id=9)
        s.save(PersistBatch(promised=Ballot(7, 2), accepted={{4: (Ballot(7, 2), (b"v",))}},
                            chosen_watermark=3))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", writer], check=False)
    assert proc.returncode == -9
    state = RocksStorage.open(str(path), group_id=9).load()
    assert state.promised == Ballot(7, 2)
    assert state.accepted == {4: (Ballot(7, 2), (b"v",))}
    assert state.chosen_watermark == 3


def test_rocks_storage_reads_the_meta_written_before_the_lease_record(tmp_path: Path) -> None:
    """A database from before the lease record holds a 33-byte meta record: no lease
    recorded (a restart waits for its own), the flags as they were."""
    storage = RocksStorage.open(str(tmp_path / "db"), group_id=5)
    meta_key = b"p" + (5).to_bytes(4, "big") + b"m"
    storage._db[meta_key] = struct.pack(">QQQQB", 2, 3, 7, 4, 1)
    state = RocksStorage(storage._db, group_id=5).load()
    assert (state.promised, state.chosen_watermark, state.log_start) == (B2, 7, 4)
    assert state.rebuilding is True and state.lease_promise_s == 0.0
    # Stored in whole microseconds, rounded up: a restart never waits less than promised.
    storage.save(PersistBatch(lease_promise_s=0.1234567))
    assert RocksStorage(storage._db, group_id=5).load().lease_promise_s == 0.123457
