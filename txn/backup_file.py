"""The backup file: one snapshot of a key range, in key order, with a checksum over it all.

Layout (integers big-endian)::

    b"PAXOSKV-BACKUP\\n"  u8 format (1)
    u32 n, n bytes: the header, JSON {"cluster_id", "read_ts", "start", "end", "created_unix_s"}
                    (start and end in hex; end null: to the last key)
    repeated:  u8 1, u32 key length, key, u32 value length, value   (keys strictly rising)
    u8 0, u64 record count, 32 bytes: SHA-256 of every byte before them

A reader checks all of it (lengths against the store's limits, key order, count, digest, no
trailing bytes) and names the byte offset of the first fault: `restore` reads a file through
once before it writes anything, so a damaged or truncated backup restores nothing.

A writer writes a temporary file beside PATH (`PATH.<random>.part`, so two backups to one
PATH never write one file), fsyncs it, renames it over PATH and fsyncs the directory: PATH
is either absent, an older complete backup, or one of them complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from router.limits import MAX_KEY_BYTES, MAX_VALUE_BYTES, range_oversized

__all__ = [
    "BackupCorrupt",
    "BackupError",
    "BackupHeader",
    "BackupReader",
    "BackupSummary",
    "BackupWriter",
    "check_backup_path",
    "range_fault",
]

MAGIC = b"PAXOSKV-BACKUP\n"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
_RECORD = 1
_END = 0
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DIGEST_BYTES = hashlib.sha256().digest_size


class BackupError(Exception):
    """A backup or restore could not be done; the message says why and what to do."""


class BackupCorrupt(BackupError):
    """The file is not a complete, intact paxoskv backup (truncated, damaged or another
    kind of file); nothing was restored from it."""


def _path_fault(path: Path) -> str | None:
    """Why `path` cannot be a backup file's path (a directory, or under no directory), or
    None."""
    if path.is_dir():
        return "it is a directory; give a file's path"
    if path.parent.exists() and not path.parent.is_dir():
        return f"{path.parent} is not a directory"
    if not path.parent.is_dir():
        return f"the directory {path.parent} does not exist"
    return None


def _why(exc: OSError, path: Path) -> str:
    """An OSError on `path` in words (without the errno, or a temporary file's name)."""
    fault = _path_fault(path)
    if fault is not None:
        return fault
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return exc.strerror or str(exc)


def check_backup_path(path: str | os.PathLike[str]) -> None:
    """Raise BackupError now if a backup could not be written at `path` (a directory, or in
    a directory that does not exist): before a backup reads anything."""
    fault = _path_fault(Path(path))
    if fault is not None:
        raise BackupError(f"cannot write {path}: {fault}")


def range_fault(start: bytes, end: bytes | None) -> str | None:
    """What is wrong with [start, end) as a backup's range, or None: `end` must be above
    `start`, and a bound may be a byte longer than a key (a range cut after key K ends at
    K + b"\\0"). Writer, reader and `txn.backup.backup` all hold a range to it."""
    if end is not None and end <= start:
        return f"the end {end!r} must be above the start {start!r}"
    oversized = range_oversized(start, end or b"")
    return None if oversized is None else str(oversized)


@dataclass(frozen=True, slots=True)
class BackupHeader:
    """What a backup holds: the keys start <= key < end (end None: no end) of cluster
    `cluster_id` as of timestamp `read_ts` (one snapshot across every shard)."""

    cluster_id: str
    read_ts: int
    start: bytes
    end: bytes | None
    created_unix_s: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "cluster_id": self.cluster_id,
                "read_ts": self.read_ts,
                "start": self.start.hex(),
                "end": None if self.end is None else self.end.hex(),
                "created_unix_s": self.created_unix_s,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> BackupHeader:
        """The header in `data`; ValueError (or KeyError, TypeError) when malformed."""
        fields = json.loads(data)
        header = cls(
            cluster_id=fields["cluster_id"],
            read_ts=fields["read_ts"],
            start=bytes.fromhex(fields["start"]),
            end=None if fields["end"] is None else bytes.fromhex(fields["end"]),
            created_unix_s=fields["created_unix_s"],
        )
        if not isinstance(header.cluster_id, str) or not isinstance(header.read_ts, int):
            raise ValueError("cluster_id must be a string and read_ts an integer")
        if not isinstance(header.created_unix_s, int | float):
            raise ValueError("created_unix_s must be a number")
        fault = range_fault(header.start, header.end)
        if fault is not None:
            raise ValueError(fault)
        return header


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """A complete backup file: its header, how many keys and key+value bytes it holds, its
    size and its SHA-256 (the digest its last 32 bytes carry)."""

    path: Path
    header: BackupHeader
    keys: int
    data_bytes: int
    file_bytes: int
    sha256: str


class BackupWriter:
    """Writes one backup file; `add` the records in key order, then `finish` (or `discard`)."""

    def __init__(self, path: str | os.PathLike[str], header: BackupHeader) -> None:
        fault = range_fault(header.start, header.end)
        if fault is not None:
            raise BackupError(f"a backup's range: {fault}")  # its reader would refuse it
        check_backup_path(path)
        self.path = Path(path)
        self.header = header
        try:
            fd, part = tempfile.mkstemp(
                dir=self.path.parent, prefix=self.path.name + ".", suffix=".part"
            )
        except OSError as exc:  # it named the temporary file, which the user never typed
            # The directory exists (checked above): ENOENT then means it takes no new files
            # (/proc; found by an operator trial, "no such file").
            why = (
                f"{self.path.parent} takes no new files"
                if isinstance(exc, FileNotFoundError)
                else _why(exc, self.path)
            )
            raise BackupError(f"cannot write {self.path}: {why}") from None
        self._part = Path(part)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._keys = 0
        self._data_bytes = 0
        self._size = 0
        self._last: bytes | None = None
        try:
            encoded = header.encode()
            self._write(MAGIC + _U8.pack(FORMAT_VERSION) + _U32.pack(len(encoded)) + encoded)
        except BaseException:
            self.discard()
            raise

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)

    def add(self, key: bytes, value: bytes) -> None:
        if not key:
            raise BackupError("an empty key: the store holds none")
        if self._last is not None and key <= self._last:
            raise BackupError(f"keys out of order: {key!r} after {self._last!r}")
        header = self.header
        if key < header.start or (header.end is not None and key >= header.end):
            raise BackupError(f"key {key!r} is outside the backup's range")
        self._last = key
        self._write(_U8.pack(_RECORD) + _U32.pack(len(key)) + key + _U32.pack(len(value)) + value)
        self._keys += 1
        self._data_bytes += len(key) + len(value)

    @property
    def keys(self) -> int:
        return self._keys

    @property
    def data_bytes(self) -> int:
        return self._data_bytes

    def finish(self) -> BackupSummary:
        """Seal the file (count and digest), make it durable and put it at `path`."""
        self._write(_U8.pack(_END) + _U64.pack(self._keys))
        digest = self._digest.digest()
        self._file.write(digest)
        self._size += len(digest)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._part, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return BackupSummary(
            path=self.path,
            header=self.header,
            keys=self._keys,
            data_bytes=self._data_bytes,
            file_bytes=self._size,
            sha256=digest.hex(),
        )

    def discard(self) -> None:
        """Drop the unfinished file (`path` is left as it was)."""
        self._file.close()
        self._part.unlink(missing_ok=True)


class BackupReader:
    """Reads a backup file: `header` at once, then `records()` in key order, checking as it
    goes; the count and digest are checked when the records end, so read it through once
    (`verify`) before acting on any of it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115  (closed by close)
        except OSError as exc:
            raise BackupError(f"cannot read {self.path}: {_why(exc, self.path)}") from None
        try:
            self.rewind()
        except BaseException:
            self._file.close()
            raise

    def rewind(self) -> None:
        """Go back to the first record (reading the header again): so a restore writes from
        the very file it checked, even if another backup was renamed over its path since."""
        self._file.seek(0)
        self._digest = hashlib.sha256()
        self._offset = 0
        self.keys = 0
        self.data_bytes = 0
        if self._read(len(MAGIC), "the file's start") != MAGIC:
            raise self._corrupt(0, "not a paxoskv backup (its first bytes differ)")
        version = self._read(1, "the format version")[0]
        if version != FORMAT_VERSION:
            raise self._corrupt(
                len(MAGIC), f"format {version}; this paxoskv reads format {FORMAT_VERSION}"
            )
        length = int.from_bytes(self._read(4, "the header's length"), "big")
        if length > MAX_HEADER_BYTES:
            raise self._corrupt(self._offset - 4, f"a header of {length} bytes")
        at = self._offset
        try:
            self.header = BackupHeader.decode(self._read(length, "the header"))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._corrupt(at, f"the header is malformed ({exc})") from None
        self._records_at = self._offset

    def _corrupt(self, offset: int | None, what: str) -> BackupCorrupt:
        """`what` is wrong with the file, at byte `offset` (None: no one place)."""
        at = "" if offset is None else f" at byte {offset}"
        return BackupCorrupt(f"{self.path}: not an intact backup{at}: {what}")

    def _read(self, count: int, what: str) -> bytes:
        data = self._file.read(count)
        if len(data) != count:
            raise self._corrupt(self._offset, f"the file ends inside {what} (truncated)")
        self._digest.update(data)
        self._offset += count
        return data

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), in key order, from the first record whatever was read before
        (found by review: read after `verify`, an intact file was reported truncated);
        raises BackupCorrupt at the first fault."""
        if self._offset != self._records_at:
            self.rewind()
        last: bytes | None = None
        header = self.header
        while True:
            at = self._offset
            tag = self._read(1, "a record's tag")[0]
            if tag == _END:
                break
            if tag != _RECORD:
                raise self._corrupt(at, f"an unknown record tag {tag}")
            key = self._read(self._length(MAX_KEY_BYTES, "key"), "a key")
            value = self._read(self._length(MAX_VALUE_BYTES, "value"), "a value")
            if not key:
                raise self._corrupt(at, "an empty key")
            if last is not None and key <= last:
                raise self._corrupt(at, "keys are not strictly rising")
            if key < header.start or (header.end is not None and key >= header.end):
                raise self._corrupt(at, "a key outside the header's range")
            last = key
            self.keys += 1
            self.data_bytes += len(key) + len(value)
            yield key, value
        count = int.from_bytes(self._read(8, "the record count"), "big")
        if count != self.keys:
            raise self._corrupt(self._offset - 8, f"it counts {count} records, holds {self.keys}")
        expected = self._digest.hexdigest()
        digest = self._file.read(_DIGEST_BYTES)
        if len(digest) != _DIGEST_BYTES:
            raise self._corrupt(self._offset, "the file ends inside the SHA-256 (truncated)")
        if digest.hex() != expected:
            # Named by where the digest is, the damage read as if it were there (found by a
            # README trial: one flipped byte early in a file was reported at its end).
            raise self._corrupt(
                None,
                f"its contents do not match the SHA-256 at its end (damaged somewhere in its "
                f"first {self._offset:,} bytes, or in the digest)",
            )
        if self._file.read(1):
            raise self._corrupt(self._offset + _DIGEST_BYTES, "bytes after the end")

    def _length(self, limit: int, what: str) -> int:
        at = self._offset
        length = int.from_bytes(self._read(4, f"a {what}'s length"), "big")
        if length > limit:
            raise self._corrupt(at, f"a {what} of {length} bytes, over the limit of {limit}")
        return length

    def verify(self) -> BackupSummary:
        """Read every record and check the whole file; its summary."""
        for _ in self.records():
            pass
        return BackupSummary(
            path=self.path,
            header=self.header,
            keys=self.keys,
            data_bytes=self.data_bytes,
            file_bytes=self._offset + _DIGEST_BYTES,
            sha256=self._digest.hexdigest(),
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> BackupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
