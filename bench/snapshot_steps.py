"""What one step of a snapshot build and of a restore costs, in process, on RocksDB.

    python bench/snapshot_steps.py --keys 300000

Writes `--keys` keys (20-byte values) into one shard group on a RocksDB node disk in a
temporary directory, builds its snapshot and restores it into a second disk with the
node's default step budget (`shard.node.TxnSettings`: 2,000 records or 1 MiB), and prints
the number of steps and their median and slowest time. A step holds the node's loop, so its
slowest must stay well below the election timeout (150 ms by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shard.codec import encode_put
from shard.disk import RocksNodeDisk
from shard.node import TxnSettings
from shard.state_machine import ShardStateMachine

GROUP = 1


def _summary(name: str, steps: list[float]) -> str:
    return (
        f"{name}: {len(steps)} steps, median {statistics.median(steps) * 1e3:.1f} ms, "
        f"slowest {max(steps) * 1e3:.1f} ms, last {steps[-1] * 1e3:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300_000)
    args = parser.parse_args(argv)
    settings = TxnSettings()
    records, size = settings.snapshot_step_records, settings.snapshot_step_bytes
    with tempfile.TemporaryDirectory() as tmp:
        source_disk = RocksNodeDisk(Path(tmp) / "a")
        source = ShardStateMachine(GROUP, (b"", None), source_disk.engine)
        batch = source_disk.engine.new_batch()
        for i in range(args.keys):
            command = encode_put(b"k%09d" % i, b"v" * 20, 100 + i)
            source.apply(source.applied_index + 1, [command], batch)
            if i % 2000 == 1999:
                source_disk.engine.write(batch, sync=False)
                batch = source_disk.engine.new_batch()
        source_disk.engine.write(batch, sync=False)
        build = source.snapshot_build()
        steps = []
        while True:
            started = time.perf_counter()
            done = build.step(records, size)
            steps.append(time.perf_counter() - started)
            if done is not None:
                break
        index, blob = done
        print(f"{args.keys:,} keys, snapshot of {len(blob) / 1e6:.1f} MB")
        print(_summary("build", steps))
        target_disk = RocksNodeDisk(Path(tmp) / "b")
        target = ShardStateMachine(GROUP, (b"", None), target_disk.engine)
        restore = target.begin_restore(index, blob)
        steps = []
        finished = False
        while not finished:
            started = time.perf_counter()
            batch = target_disk.engine.new_batch()
            finished = restore.step(batch, records, size)
            target_disk.engine.write(batch, sync=False)
            steps.append(time.perf_counter() - started)
        print(_summary("restore (each step with its unsynced write)", steps))
        source_disk.close()
        target_disk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
