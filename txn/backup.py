"""Backup and restore, over the transaction client.

`backup` writes one snapshot of a key range, across every shard at one timestamp (a
read-only snapshot transaction: nothing is locked or logged, writers go on), to a file
(`txn.backup_file`). `restore` checks a whole file, then writes its keys into a cluster in
transactions of at most RESTORE_BATCH_ITEMS keys and RESTORE_BATCH_BYTES bytes each.

What a user should know (the README's "Backup and restore" says it too):
- a backup must end within the shards' MVCC retention (10 minutes), or its reads fail
  with SnapshotTooOld and no file is written;
- a restore is not one transaction: each batch is atomic, the whole is not, so restore
  into a cluster (or a key range) nobody writes meanwhile. Restoring the same file again
  writes the same values, so a restore cut short (RestoreIncomplete, or interrupted) is
  finished by running it again with `overwrite=True`;
- restored keys get new versions: the commit timestamps of the restore, not the versions
  they had. Fencing tokens taken from versions keep growing only if the target cluster's
  clock is past the backup's `read_ts`; `restore` refuses otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from router.limits import MAX_COMMAND_BYTES
from txn.args import _as_key
from txn.backup_file import (
    BackupError,
    BackupHeader,
    BackupReader,
    BackupSummary,
    BackupWriter,
    check_backup_path,
    range_fault,
)
from txn.errors import InvalidArgument
from txn.snapshot import DEFAULT_PAGE_KEYS

if TYPE_CHECKING:
    from txn.client import AsyncClient
    from txn.transaction import AsyncTransaction

__all__ = ["RestoreIncomplete", "RestoreSummary", "backup", "backup_range", "restore"]

RESTORE_BATCH_ITEMS = 1000
"""Most keys one restore transaction writes (a transaction's part in one group may hold
MAX_TXN_ITEMS)."""

RESTORE_BATCH_BYTES = MAX_COMMAND_BYTES // 2
"""Most key and value bytes one restore transaction writes: a largest key and value fit,
and it is well under what one group's part of a transaction may carry (MAX_COMMAND_BYTES)."""

Progress = Callable[[int, int], None]
"""Called as a backup or restore goes: (keys so far, key and value bytes so far)."""


class RestoreIncomplete(BackupError):
    """A restore stopped part-way: the first `keys` keys of the backup (up to `last_key`)
    are written, in `transactions` commits; the batch that failed may or may not be.
    Running the restore again with `overwrite=True` finishes it."""

    def __init__(
        self, path: Path, keys: int, transactions: int, last_key: bytes | None, cause: BaseException
    ) -> None:
        self.keys = keys
        self.transactions = transactions
        self.last_key = last_key
        written = (
            "nothing was written"
            if last_key is None
            else f"{keys:,} key{'' if keys == 1 else 's'} up to {last_key!r} written, in "
            f"{transactions:,} transaction{'' if transactions == 1 else 's'}"
        )
        super().__init__(
            f"the restore stopped part-way ({type(cause).__name__}: {cause}); {written}, "
            f"the batch under way may be; finish it by running the restore again over them: "
            f"paxoskv restore {shlex.quote(str(path))} --overwrite (in Python: overwrite=True)"
        )


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    """What `restore` wrote: the keys of `header`'s backup, in `transactions` commits whose
    timestamps run from `first_commit_ts` to `last_commit_ts` (0 when it wrote nothing)."""

    path: Path
    header: BackupHeader
    keys: int
    data_bytes: int
    transactions: int
    first_commit_ts: int
    last_commit_ts: int


async def backup(
    client: AsyncClient,
    path: str | os.PathLike[str],
    *,
    start: bytes = b"",
    end: bytes | None = None,
    page_keys: int = DEFAULT_PAGE_KEYS,
    progress: Progress | None = None,
) -> BackupSummary:
    """Write the keys start <= key < end (end None: to the last key) as of one snapshot to
    `path`, atomically: the file appears complete or not at all.

    Raises:
        SnapshotTooOld: the backup took longer than the shards' MVCC retention.
        Unavailable, DeadlineExceeded: a shard could not serve a read in time.
        InvalidArgument: a bad range (see `backup_range`), or `page_keys` below 1.
        BackupError: `path` is a directory, or in one that does not exist; or the file
            could not be created.
        OSError: the file could not be written.
    """
    start, end = backup_range(start, end)
    check_backup_path(path)
    if page_keys < 1:
        raise InvalidArgument(f"page_keys must be >= 1, got {page_keys}")
    await client.connect()
    snap = client.snapshot()
    header = BackupHeader(
        cluster_id=client.cluster_id or "",
        read_ts=await snap.timestamp(),
        start=start,
        end=end,
        created_unix_s=time.time(),
    )
    writer = BackupWriter(path, header)
    try:
        # A page at a time (txn.snapshot.PAGE_BYTES bounds its memory), as `iterate` reads.
        async with contextlib.aclosing(snap._pages(start, end, page_keys)) as pages:
            async for page in pages:
                for key, value in page:
                    writer.add(key, value)
                if progress is not None:
                    progress(writer.keys, writer.data_bytes)
        return writer.finish()
    except BaseException:
        writer.discard()
        raise
    finally:
        snap.close()


def backup_range(start: object, end: object) -> tuple[bytes, bytes | None]:
    """`start` and `end` checked as a backup's range: bytes, `end` above `start`, each at
    most a byte longer than a key (a range cut after key K ends at K + b"\\0"), so that the
    file's header is one a reader accepts. Raises InvalidArgument otherwise."""
    start = _as_key(start, "start key")
    end = None if end is None else _as_key(end, "end key")
    fault = range_fault(start, end)
    if fault is not None:
        raise InvalidArgument(fault)
    return start, end


async def restore(
    client: AsyncClient,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RestoreSummary:
    """Write every key of the backup at `path` into the cluster, after checking the whole
    file (a damaged one writes nothing).

    Args:
        overwrite: write over keys the cluster holds in the backup's range; without it a
            cluster with any key there is refused before anything is written.

    Raises:
        BackupCorrupt: the file is not an intact backup; nothing was written.
        BackupError: the range holds keys and `overwrite` is off, or the cluster's clock is
            not past the backup's timestamp; nothing was written.
        RestoreIncomplete: a batch failed (its error is the `__cause__`, as
            `AsyncClient.run` raises it); the batches before it are written.
    """
    with BackupReader(path) as reader:
        reader.verify()  # one open file: the one checked is the one written
        header = reader.header
        await client.connect()
        await _check_target(client, Path(path), header, overwrite)
        batches = _Batches(client, progress)
        try:
            for key, value in reader.records():
                await batches.add(key, value)
            await batches.flush()
        except Exception as exc:
            raise RestoreIncomplete(
                Path(path), batches.keys, batches.transactions, batches.last_key, exc
            ) from exc
    return RestoreSummary(
        path=Path(path),
        header=header,
        keys=batches.keys,
        data_bytes=batches.data_bytes,
        transactions=batches.transactions,
        first_commit_ts=batches.first_ts,
        last_commit_ts=batches.last_ts,
    )


class _Batches:
    """A restore's writes, gathered into transactions of at most RESTORE_BATCH_ITEMS keys
    and RESTORE_BATCH_BYTES bytes; counts what was committed."""

    def __init__(self, client: AsyncClient, progress: Progress | None) -> None:
        self._client = client
        self._progress = progress
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_bytes = 0
        self.keys = self.data_bytes = self.transactions = self.first_ts = self.last_ts = 0
        self.last_key: bytes | None = None

    async def add(self, key: bytes, value: bytes) -> None:
        size = len(key) + len(value)
        full = len(self._batch) >= RESTORE_BATCH_ITEMS
        if self._batch and (full or self._batch_bytes + size > RESTORE_BATCH_BYTES):
            await self.flush()
        self._batch.append((key, value))
        self._batch_bytes += size

    async def flush(self) -> None:
        """Commit the gathered keys, if any, in one transaction."""
        if not self._batch:
            return
        batch = self._batch

        def write(tx: AsyncTransaction) -> AsyncTransaction:
            for key, value in batch:
                tx.put(key, value)
            return tx

        tx = await self._client.run(write)
        assert tx.commit_ts is not None
        self.last_ts = tx.commit_ts
        self.first_ts = self.first_ts or tx.commit_ts
        self.transactions += 1
        self.keys += len(batch)
        self.data_bytes += self._batch_bytes
        self.last_key = batch[-1][0]
        self._batch, self._batch_bytes = [], 0
        if self._progress is not None:
            self._progress(self.keys, self.data_bytes)


async def _check_target(
    client: AsyncClient, path: Path, header: BackupHeader, overwrite: bool
) -> None:
    """Refuse, before any write, a range that holds keys (unless `overwrite`) and a cluster
    whose clock is not past the backup's timestamp."""
    snap = client.snapshot()
    try:
        now_ts = await snap.timestamp()
        if now_ts <= header.read_ts:
            raise BackupError(
                f"the cluster's clock (ts {now_ts}) is not past the backup's timestamp "
                f"({header.read_ts}): restored keys would get versions below the ones they "
                "had; wait until it is, or check the nodes' clocks"
            )
        if overwrite:
            return
        found = await snap.scan(header.start, header.end, 1)
    finally:
        snap.close()
    if found:
        raise BackupError(
            f"the cluster already holds keys in the backup's range (the first: {found[0][0]!r}); "
            "restore into an empty range; to make the range exactly the backup's, delete "
            "it first (paxoskv delete --start/--end, or --prefix), since writing over "
            "the keys (paxoskv restore "
            f"{shlex.quote(str(path))} --overwrite; in Python: overwrite=True) keeps every "
            "key the backup lacks"
        )
