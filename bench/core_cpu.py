"""CPU of the node cores alone: a put and a 2-shard commit without gRPC or asyncio.

    python bench/core_cpu.py [--ops 2000] [--modes put,txn2w] [--json FILE]

Three `NodeCore`s with real RocksDB disks (shard.disk, synced as in a node) in one process,
their messages handed over in memory at once, time advanced by hand. One operation at a time:
`put` (one key), `txn2w` (a Prepare of one key on each of two shards, then the Resolves, as
the client sends them). Printed per mode: the process CPU per operation (every replica's
work: submit, Paxos, persist, apply, answer), the part of it spent in the synced Paxos
persists (the kernel's fdatasync work included), and
the medians of the leader's `submit` per request kind and of a slot's apply by its number
of commands. Set against `bench/cpu_per_op.py` (the same operations on a real cluster),
the difference is what gRPC, asyncio and the processes cost.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/core_cpu.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paxos import Role
from paxos.messages import Message
from router import kv_pb2 as kv
from router.shard_map import NodeAddress, bootstrap
from shard.config import PaxosSettings
from shard.disk import RocksNodeDisk
from shard.execute import execute_cycle
from shard.node import NodeCore, TxnSettings
from shard.state_machine import ShardStateMachine
from txn.txn_ids import new_txn_id

MODES = ("put", "txn2w")
CLUSTER = "core-cpu"
STEP_S = 0.0005
VALUE = b"v" * 100
KEYS = 500


class Cores:
    """Three nodes hosting two data shards split at b"m", messages delivered at once."""

    def __init__(self, root: Path) -> None:
        addrs = [
            NodeAddress(node_id=i, name=f"n{i}", client_addr="-", peer_addr="-") for i in (1, 2, 3)
        ]
        shard_map = bootstrap(addrs, [b"m"], 3)
        self.disks = {i: RocksNodeDisk(root / f"n{i}") for i in (1, 2, 3)}
        self.cores = {
            i: NodeCore(
                cluster_id=CLUSTER,
                node_id=i,
                bootstrap_map=shard_map,
                disk=self.disks[i],
                paxos_settings=PaxosSettings(),
                rng=random.Random(i),
                request_timeout_s=5.0,
                txn_settings=TxnSettings(),
            )
            for i in (1, 2, 3)
        }
        self.inflight: list[tuple[int, int, Message]] = []
        self.now = 0.0
        self.wall_ns = 1_800_000_000 * 10**9
        try:
            # Every group led by its preferred leader: until then a leadership transfer may
            # refuse a measured request.
            self.run_until(
                lambda: all(self._leader(g) == shard_map.preferred_leader(g) for g in (0, 1, 2)),
                max_steps=20_000,
            )
        except BaseException:
            self.close()
            raise

    def _send(self, group_id: int, msgs: Any) -> None:
        self.inflight.extend((msg.dst, group_id, msg) for msg in msgs)

    def _leader(self, group_id: int) -> int | None:
        for i, core in self.cores.items():
            if core.hosts[group_id].replica.role is Role.LEADER:
                return i
        return None

    def leader(self, group_id: int) -> NodeCore:
        node = self._leader(group_id)
        assert node is not None, f"group {group_id} has no leader"
        return self.cores[node]

    def run_until(self, done: Callable[[], bool], max_steps: int = 2_000) -> None:
        """Deliver and execute until `done`; advance time only when nothing moves."""
        for _ in range(max_steps):
            moved = True
            while moved:
                delivered, self.inflight = self.inflight, []
                for dst, group_id, msg in delivered:
                    self.cores[dst].step(group_id, msg)
                moved = bool(delivered)
                for i, core in self.cores.items():
                    while execute_cycle(core, self.disks[i], self._send):
                        moved = True
                if done():
                    return
            self.now += STEP_S
            self.wall_ns += int(STEP_S * 1e9)
            for core in self.cores.values():
                core.tick(self.now, self.wall_ns)
        raise RuntimeError("the cores stopped making progress")

    def close(self) -> None:
        for disk in self.disks.values():
            disk.close()


def _header(group_id: int) -> kv.Header:
    return kv.Header(cluster_id=CLUSTER, group_id=group_id)


def _put(cores: Cores, i: int) -> None:
    answers: list[kv.Response] = []
    request = kv.Request(
        put=kv.PutRequest(header=_header(1), key=b"a%05d" % (i % KEYS), value=VALUE)
    )
    cores.leader(1).submit(request, answers.append)
    cores.run_until(lambda: bool(answers))
    assert answers[0].put.error.code == kv.OK, answers[0]


def _txn2w(cores: Cores, i: int) -> None:
    txn_id = new_txn_id(cores.wall_ns)
    answers: dict[int, kv.Response] = {}
    for group_id, key in ((1, b"a%05d" % (i % KEYS)), (2, b"z%05d" % (i % KEYS))):
        prepare = kv.PrepareRequest(
            header=_header(group_id),
            txn_id=txn_id,
            coordinator_group=1,
            participants=[1, 2],
            ts=cores.wall_ns,
            writes=[kv.WriteItem(key=key, value=VALUE)],
        )
        cores.leader(group_id).submit(
            kv.Request(prepare=prepare), lambda r, g=group_id: answers.__setitem__(g, r)
        )
    cores.run_until(lambda: len(answers) == 2)
    assert all(a.prepare.error.code == kv.OK for a in answers.values()), answers
    votes = [
        kv.VoteProof(group_id=g, prepare_ts=a.prepare.prepare_ts, mac=a.prepare.vote_mac)
        for g, a in answers.items()
    ]
    commit_ts = max(v.prepare_ts for v in votes)
    for group_id in (1, 2):
        resolve = kv.ResolveRequest(
            header=_header(group_id),
            txn_id=txn_id,
            commit=True,
            commit_ts=commit_ts,
            participants=[1, 2],
            votes=votes,
        )
        cores.leader(group_id).submit(kv.Request(resolve=resolve), lambda _response: None)


OPERATIONS: dict[str, Callable[[Cores, int], None]] = {"put": _put, "txn2w": _txn2w}


def _submit_label(_core: NodeCore, request: kv.Request, _reply: object) -> str:
    return f"submit {request.WhichOneof('op')}"


def _apply_label(_sm: ShardStateMachine, _slot: int, commands: list[bytes], _batch: object) -> str:
    return f"apply slot of {len(commands)}"


# (class, method, sample label, clock): what _timed_steps times.
_TIMED: list[tuple[type, str, Callable[..., str], Callable[[], float]]] = [
    (NodeCore, "submit", _submit_label, time.perf_counter),
    (ShardStateMachine, "apply", _apply_label, time.perf_counter),
    (RocksNodeDisk, "persist", lambda *_: "persist", time.thread_time),
]


@contextmanager
def _timed_steps() -> Iterator[dict[str, list[float]]]:
    """Wrap the methods of _TIMED for the duration; yields label -> seconds."""
    samples: dict[str, list[float]] = {}
    originals = [(owner, name, getattr(owner, name)) for owner, name, _, _ in _TIMED]

    def timed(
        original: Callable[..., Any], label: Callable[..., str], clock: Callable[[], float]
    ) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            started = clock()
            try:
                return original(*args)
            finally:
                samples.setdefault(label(*args), []).append(clock() - started)

        return wrapper

    for (owner, name, original), (_, _, label, clock) in zip(originals, _TIMED, strict=True):
        setattr(owner, name, timed(original, label, clock))
    try:
        yield samples
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def measure(mode: str, ops: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="core-cpu-") as root:
        cores = Cores(Path(root))
        try:
            operation = OPERATIONS[mode]
            for i in range(min(ops, 200)):  # warm-up: leases, first versions, caches
                operation(cores, -1 - i)
            with _timed_steps() as samples:
                started = time.process_time()
                for i in range(ops):
                    operation(cores, i)
                cpu_s = time.process_time() - started
        finally:
            cores.close()
    persist_s = sum(samples.pop("persist", []))
    return {
        "mode": mode,
        "ops": ops,
        "cpu_us_per_op": round(cpu_s / ops * 1e6, 1),
        "persist_cpu_us_per_op": round(persist_s / ops * 1e6, 1),
        "median_us": {k: round(statistics.median(v) * 1e6, 1) for k, v in sorted(samples.items())},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=2000, help="operations measured per mode")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {MODES}")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    if args.ops <= 0:
        p.error("--ops must be > 0")
    results = []
    for mode in modes:
        result = measure(mode, args.ops)
        steps = ", ".join(f"{k} {v} us" for k, v in result["median_us"].items())
        print(
            f"{mode:6s} cpu per op {result['cpu_us_per_op']} us (synced persists "
            f"{result['persist_cpu_us_per_op']} us); medians: {steps}",
            flush=True,
        )
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
