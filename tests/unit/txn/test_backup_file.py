"""txn/backup_file.py: a backup reads back exactly as written, and every damage to the file
(a flipped byte, a cut, bytes appended, another kind of file) is refused by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.limits import MAX_KEY_BYTES
from txn.backup_file import (
    MAGIC,
    BackupCorrupt,
    BackupError,
    BackupHeader,
    BackupReader,
    BackupWriter,
    check_backup_path,
)

HEADER = BackupHeader(cluster_id="c1", read_ts=123456789, start=b"a", end=b"z", created_unix_s=1.5)
RECORDS = [(b"apple", b"1"), (b"banana", b""), (b"cherry", b"\x00\xff" * 50)]


def _written(path: Path, records: list[tuple[bytes, bytes]] = RECORDS) -> Path:
    writer = BackupWriter(path, HEADER)
    for key, value in records:
        writer.add(key, value)
    writer.finish()
    return path


def _read_all(path: Path) -> list[tuple[bytes, bytes]]:
    with BackupReader(path) as reader:
        return list(reader.records())


def test_a_backup_reads_back_as_written_with_its_summary(tmp_path: Path) -> None:
    path = tmp_path / "b.pkvb"
    writer = BackupWriter(path, HEADER)
    for key, value in RECORDS:
        writer.add(key, value)
    summary = writer.finish()
    data = path.read_bytes()
    assert summary.keys == 3
    assert summary.data_bytes == sum(len(k) + len(v) for k, v in RECORDS)
    assert summary.file_bytes == len(data)
    assert summary.sha256 == hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex()
    assert not (tmp_path / "b.pkvb.part").exists()
    with BackupReader(path) as reader:
        assert reader.header == HEADER
        assert reader.verify() == summary
    assert _read_all(path) == RECORDS


def test_the_records_read_after_verify_or_part_of_a_read_start_from_the_first(
    tmp_path: Path,
) -> None:
    """Found by review: the README's `reader.verify()`, then `reader.records()`, reported an
    intact file truncated (the reader was at its end)."""
    path = _written(tmp_path / "b.pkvb")
    with BackupReader(path) as reader:
        summary = reader.verify()
        assert list(reader.records()) == RECORDS
        first = reader.records()
        assert next(first) == RECORDS[0]
        assert list(reader.records()) == RECORDS
        assert reader.verify() == summary


def test_an_empty_backup_is_valid(tmp_path: Path) -> None:
    path = _written(tmp_path / "empty", [])
    with BackupReader(path) as reader:
        assert reader.verify().keys == 0


def test_the_writer_refuses_keys_out_of_order_or_outside_its_range(tmp_path: Path) -> None:
    writer = BackupWriter(tmp_path / "b", HEADER)
    writer.add(b"m", b"")
    for bad, why in ((b"m", "out of order"), (b"b", "out of order"), (b"zz", "outside")):
        with pytest.raises(BackupError, match=why):
            writer.add(bad, b"")
    with pytest.raises(BackupError, match="an empty key"):
        writer.add(b"", b"")
    writer.discard()


def test_two_backups_to_one_path_write_apart_and_the_last_to_finish_stands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b"
    first, second = BackupWriter(path, HEADER), BackupWriter(path, HEADER)
    first.add(b"from-first", b"1")
    second.add(b"from-second", b"2")
    first.finish()
    assert _read_all(path) == [(b"from-first", b"1")]
    second.finish()
    assert _read_all(path) == [(b"from-second", b"2")]
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("start", "end", "fault"),
    [
        (b"m", b"m", "must be above the start"),
        (b"m", b"a", "must be above the start"),
        (b"k" * (MAX_KEY_BYTES + 2), None, f"range start is {MAX_KEY_BYTES + 2} bytes"),
        (b"a", b"k" * (MAX_KEY_BYTES + 2), f"range end is {MAX_KEY_BYTES + 2} bytes"),
    ],
    ids=["empty-range", "falling-range", "oversized-start", "oversized-end"],
)
def test_a_header_with_a_bad_range_is_refused(
    tmp_path: Path, start: bytes, end: bytes | None, fault: str
) -> None:
    """By the reader, and by the writer before it writes anything (it wrote files its own
    reader refused)."""
    path = tmp_path / "b"
    header = BackupHeader(cluster_id="c1", read_ts=1, start=start, end=end, created_unix_s=0.0)
    with pytest.raises(BackupError, match=fault):
        BackupWriter(path, header)
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(_raw_backup(header, []))
    with pytest.raises(BackupCorrupt, match=fault):
        BackupReader(path)


def test_a_header_ending_a_byte_past_the_largest_key_reads_back(tmp_path: Path) -> None:
    """A range cut after key K ends at K + b"\\x00", as scans allow (found by review: such
    a backup was written and then refused by its own reader)."""
    largest = b"\xff" * MAX_KEY_BYTES
    header = BackupHeader(
        cluster_id="c1", read_ts=1, start=b"a", end=largest + b"\x00", created_unix_s=0.0
    )
    writer = BackupWriter(tmp_path / "b", header)
    writer.add(largest, b"v")
    writer.finish()
    with BackupReader(tmp_path / "b") as reader:
        assert reader.header == header
        assert list(reader.records()) == [(largest, b"v")]


def test_a_writer_whose_header_cannot_be_written_leaves_no_file(tmp_path: Path) -> None:
    bad = BackupHeader(cluster_id="c1", read_ts=1, start="a", end=None, created_unix_s=0.0)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        BackupWriter(tmp_path / "b", bad)
    assert list(tmp_path.iterdir()) == []


def test_a_reader_rewound_reads_the_same_records_and_checks_them_again(tmp_path: Path) -> None:
    with BackupReader(_written(tmp_path / "b")) as reader:
        first = reader.verify()
        reader.rewind()
        assert (reader.keys, reader.data_bytes) == (0, 0)
        assert list(reader.records()) == RECORDS
        assert (reader.keys, reader.data_bytes) == (first.keys, first.data_bytes)


def test_a_discarded_backup_leaves_the_previous_file_as_it_was(tmp_path: Path) -> None:
    path = _written(tmp_path / "b")
    before = path.read_bytes()
    writer = BackupWriter(path, HEADER)
    writer.add(b"new", b"value")
    writer.discard()
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@settings(max_examples=200)
@given(st.data())
def test_any_flipped_byte_is_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = _written(tmp_path_factory.mktemp("flip") / "b")
    raw = bytearray(path.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(raw))
    with pytest.raises(BackupCorrupt, match="not an intact backup"):
        _read_all(path)


def test_a_byte_changed_inside_a_value_is_not_placed_at_the_digest(tmp_path: Path) -> None:
    """Found by a README trial: a byte flipped near the start was reported "at byte N",
    N the end of the file, where the digest that caught it is."""
    path = _written(tmp_path / "b")
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"\x00\xff" * 50) + 7] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BackupCorrupt) as caught:
        _read_all(path)
    assert str(caught.value) == (
        f"{path}: not an intact backup: its contents do not match the SHA-256 at its end "
        f"(damaged somewhere in its first {len(raw) - 32:,} bytes, or in the digest)"
    )


def test_every_truncation_and_any_appended_byte_is_refused(tmp_path: Path) -> None:
    whole = _written(tmp_path / "b").read_bytes()
    cut = tmp_path / "cut"
    for length in range(len(whole)):
        cut.write_bytes(whole[:length])
        with pytest.raises(BackupCorrupt, match="truncated"):
            _read_all(cut)
    cut.write_bytes(whole + b"\x00")
    with pytest.raises(BackupCorrupt, match="bytes after the end"):
        _read_all(cut)


def test_another_kind_of_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not a backup at all\n")
    with pytest.raises(BackupCorrupt, match="not a paxoskv backup"):
        BackupReader(path)


def _raw_backup(header: BackupHeader, records: list[tuple[bytes, bytes]]) -> bytes:
    """A file with a valid digest, whatever its records: for the checks after the digest's."""
    encoded = header.encode()
    body = MAGIC + b"\x01" + len(encoded).to_bytes(4, "big") + encoded
    for key, value in records:
        body += b"\x01" + len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value
    body += b"\x00" + len(records).to_bytes(8, "big")
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize(
    ("records", "fault"),
    [
        ([(b"b", b""), (b"a", b"")], "strictly rising"),
        ([(b"b", b""), (b"b", b"")], "strictly rising"),
        ([(b"", b"")], "an empty key"),
        ([(b"zz", b"")], "outside the header's range"),
        ([(b"k" * (MAX_KEY_BYTES + 1), b"")], "over the limit"),
    ],
    ids=["falling", "repeated", "empty-key", "outside-range", "oversized-key"],
)
def test_a_well_sealed_file_with_bad_records_is_refused(
    tmp_path: Path, records: list[tuple[bytes, bytes]], fault: str
) -> None:
    path = tmp_path / "b"
    path.write_bytes(_raw_backup(HEADER, records))
    with pytest.raises(BackupCorrupt, match=fault):
        _read_all(path)


def test_paths_that_cannot_be_a_backup_are_refused_in_words(tmp_path: Path) -> None:
    """Found by a user's walk-through: these printed an errno, one naming the temporary file
    the user never typed."""
    missing_dir = tmp_path / "nope" / "b.pkvb"
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    cases = [
        (lambda: BackupWriter(missing_dir, HEADER), f"the directory {missing_dir.parent} does"),
        (lambda: check_backup_path(missing_dir), f"the directory {missing_dir.parent} does"),
        (lambda: check_backup_path(tmp_path), "it is a directory"),
        (lambda: check_backup_path(a_file / "b.pkvb"), f"{a_file} is not a directory"),
        (lambda: BackupWriter(tmp_path, HEADER), "it is a directory"),
        (lambda: BackupReader(tmp_path), "it is a directory"),
        (lambda: BackupReader(tmp_path / "absent"), "no such file"),
        # A directory that exists and refuses new files with ENOENT (an operator trial).
        (lambda: BackupWriter(Path("/proc/b.pkvb"), HEADER), "/proc takes no new files"),
    ]
    for attempt, words in cases:
        with pytest.raises(BackupError, match=words) as refused:
            attempt()
        assert "Errno" not in str(refused.value) and ".part" not in str(refused.value)
