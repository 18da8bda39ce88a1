"""What a scan of a shard costs in key order and in reverse, over deleted records below it.

    python bench/reverse_scan.py [--keys 10] [--deleted 100000] [--rounds 50] [--json FILE]

A shard state machine on RocksDB (in a temporary directory) holds `--keys` keys; just
below its version records, `--deleted` transaction records were written and deleted (as
every transaction's unfinished-record does), and not compacted yet. Each round scans the
whole shard (`ShardStateMachine.scan(b"", None, 1000)`) forward and in reverse; prints and
writes the median and p99 per scan. A reverse read that stepped back past the range's
lowest key walked every one of the deleted records (found by review: 72 ms a scan of a
10-key shard over 100,000 of them).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from shard.codec import encode_put
from shard.rocks_engine import RocksEngine
from shard.state_machine import ShardStateMachine

GROUP = 1


def build(path: Path, keys: int, deleted: int) -> tuple[RocksEngine, ShardStateMachine]:
    """A shard of `keys` keys with `deleted` deleted transaction records below them."""
    engine = RocksEngine(str(path))
    shard = ShardStateMachine(GROUP, (b"", None), engine)
    batch = engine.new_batch()
    shard.apply(1, [encode_put(b"k%06d" % i, b"v", 1) for i in range(keys)], batch)
    engine.write(batch, sync=False)
    below = shard._unfinished_prefix  # the group's records just below its versions
    for op in ("put", "delete"):
        batch = engine.new_batch()
        for i in range(deleted):
            record = below + i.to_bytes(16, "big")
            batch.put(record, b"") if op == "put" else batch.delete(record)
        engine.write(batch, sync=False)
    return engine, shard


def timed(shard: ShardStateMachine, reverse: bool, rounds: int, keys: int) -> list[float]:
    """Milliseconds of each of `rounds` whole-shard scans."""
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        found = shard.scan(b"", None, 1000, reverse=reverse)
        out.append((time.perf_counter() - started) * 1e3)
        assert len(found) == min(keys, 1000), len(found)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--deleted", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, shard = build(Path(tmp) / "db", args.keys, args.deleted)
        report: dict[str, object] = {
            "keys": args.keys,
            "deleted": args.deleted,
            "rounds": args.rounds,
            "machine": platform.processor() or platform.machine(),
        }
        for reverse in (False, True):
            times = sorted(timed(shard, reverse, args.rounds, args.keys))
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            name = "reverse" if reverse else "forward"
            report[name] = {"p50_ms": statistics.median(times), "p99_ms": p99}
            print(f"{name}: p50 {statistics.median(times):.3f} ms, p99 {p99:.3f} ms per scan")
        engine.close()
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
