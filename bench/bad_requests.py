"""Small requests that once held every node for seconds: does any still?

    python bench/bad_requests.py --json /tmp/bad.json
    python bench/bad_requests.py --scans 32 --stale-scans 32 --atomic-keys 4   # quicker

Starts a 3-node, 3-shard cluster in a temporary directory (split points "j" and "r") and
sends, one after another, requests found by a wire-level review (session 13) to stall the
nodes' loops, while a poller asks every node for its Status every 10 ms:

- `ranges`: a Prepare listing 2,000 overlapping scanned ranges over 1,000 keys (42 KB);
- `reads`: a Prepare reading 25,000 keys;
- `big_txn`: a one-phase commit of MAX_TXN_ITEMS (4,096) writes through the client, the
  largest a transaction part may be;
- `scans`: 256 scans (`--scans`) in one Batch message over a shard holding four 1 MiB values (each
  answer up to 4 MiB);
- `stale_scans`: 128 `stale_ok` scans (`--stale-scans`) of the same shard at a follower;
- `atomic`: a Prepare of MAX_ATOMIC_OPS (64, `--atomic-keys`) atomic appends on as many keys each holding a value
  one byte short of 1 MiB: each would read its key's value and write it back longer where
  the PREPARE is applied, on every replica. Refused there (LIMIT_EXCEEDED, txn.participant
  rule A1) once 2 MiB of values are read and written; before that rule it wrote 64 MiB of
  intents, held the nodes 0.8 s and made four groups elect.

For each: the answer (code and seconds), the worst Status latency of any node while it ran,
the largest node RSS, and how many groups took a new ballot (an election); for the scans,
also each refusal's code and message with its count (JSON `refused`). Before the
bounds of session 13, `ranges` held every replica 14-19 s, `reads` its leader 1.4 s,
`scans` a leader 15 s and 800 MB, and `stale_scans` a follower 7.7 s, each with elections.
Every process it started is stopped by pid at the end, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import local_cluster
from router import kv_pb2 as kv
from router.limits import MAX_ATOMIC_OPS
from shard.cluster import LocalCluster
from txn.atomic import AtomicOp
from txn.codec import write_item_fields
from txn.records import MAX_TXN_ITEMS, WriteItem
from txn.txn_ids import new_txn_id

SPLITS = [b"j", b"r"]
MIB = 1 << 20
POLL_S = 0.01


class Probe:
    """Polls every node's Status from one thread each; remembers the slowest answer."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.worst_s = 0.0
        self._stop = threading.Event()

    def _poll(self, name: str) -> None:
        stub = self.cluster.stub(name)
        while not self._stop.is_set():
            started = time.monotonic()
            # A node that does not answer shows as the time it took.
            with contextlib.suppress(Exception):
                stub.Status(kv.StatusRequest(), timeout=60)
            self.worst_s = max(self.worst_s, time.monotonic() - started)
            time.sleep(POLL_S)

    @contextmanager
    def running(self) -> Iterator[Probe]:
        threads = [threading.Thread(target=self._poll, args=(n,)) for n in self.cluster.names]
        for thread in threads:
            thread.start()
        try:
            yield self
            time.sleep(1.0)  # a stall that outlives the answer counts too
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()


class Attacks:
    """The requests, each sent over the wire as a client would (its own Batch stream)."""

    def __init__(
        self, cluster: LocalCluster, scans: int, stale_scans: int, atomic_keys: int
    ) -> None:
        self.cluster = cluster
        self.cluster_id = cluster.cluster_id
        self.scan_count = scans
        self.stale_scan_count = stale_scans
        self.atomic_keys = [b"s-atomic-%02d" % i for i in range(atomic_keys)]

    def header(self, group: int) -> kv.Header:
        return kv.Header(cluster_id=self.cluster_id, group_id=group)

    def leader(self, group: int) -> str:
        name = self.cluster.wait_for_leader(group, deadline_s=30.0)
        assert name is not None
        return name

    def batch(self, node: str, requests: list[kv.Request], timeout_s: float = 120.0) -> list[Any]:
        for i, request in enumerate(requests):
            request.id = i + 1
        stream = self.cluster.stub(node).Batch(
            iter([kv.RequestBatch(requests=requests)]), timeout=timeout_s
        )
        answers: list[Any] = []
        for reply in stream:
            answers.extend(reply.responses)
            if len(answers) >= len(requests):
                break
        stream.cancel()
        return answers

    def now_ts(self) -> int:
        request = kv.Request(timestamp=kv.TimestampRequest())
        return int(self.batch(self.leader(1), [request])[0].timestamp.ts)

    def prepare(self, group: int, **fields: Any) -> Any:
        op = kv.PrepareRequest(
            header=self.header(group),
            txn_id=uuid.uuid4().bytes,
            coordinator_group=group,
            participants=[group],
            ts=self.now_ts(),
            **fields,
        )
        return self.batch(self.leader(group), [kv.Request(prepare=op)])[0].prepare

    def load(self, group: int, keys: list[bytes], value: bytes) -> list[int]:
        """Write `value` to every key; puts a leader refused while it handed its group to
        another node (NOT_LEADER: a CI run met a transfer back to the preferred leader) are
        sent again to the new one, a few times."""
        versions: dict[bytes, int] = {}
        for _ in range(5):
            left = [k for k in keys if k not in versions]
            puts = [
                kv.Request(put=kv.PutRequest(header=self.header(group), key=k, value=value))
                for k in left
            ]
            answers = self.batch(self.leader(group), puts)
            failed = [a for a in answers if a.put.error.code != kv.OK]
            moved = [a for a in failed if a.put.error.code == kv.NOT_LEADER]
            assert len(moved) == len(failed), failed[0]  # the first refused put
            versions.update((left[a.id - 1], a.put.version) for a in answers if a.put.version)
            if not failed:
                return [versions[k] for k in keys]
            time.sleep(0.2)  # a back-off: the transfer takes a round or two
        raise AssertionError(f"group {group}: puts refused NOT_LEADER five times")

    def ranges(self) -> Any:
        """Every range covers all 1,000 keys (the group's only keys: it runs first), and
        every key is read, so no range holds a phantom and each must be checked whole."""
        group = 2
        keys = [b"n%05d" % i for i in range(1000)]
        versions = self.load(group, keys, b"v")
        reads = [kv.ReadItem(key=k, version=v) for k, v in zip(keys, versions, strict=True)]
        ranges = [kv.KeyRange(start=b"j", end=b"q" + i.to_bytes(3, "big")) for i in range(2000)]
        return self.prepare(group, reads=reads, read_ranges=ranges)

    def reads(self) -> Any:
        reads = [kv.ReadItem(key=b"s" + i.to_bytes(3, "big")) for i in range(25_000)]
        return self.prepare(3, reads=reads)

    def big_txn(self) -> Any:
        from txn import Client

        with Client(self.cluster.env_value(), timeout_s=30.0) as client:
            with client.transaction() as tx:
                for i in range(MAX_TXN_ITEMS):
                    tx.put(b"a%05d" % i, b"v" * 20)
            return kv.Error(code=kv.OK, message=f"committed at ts {tx.commit_ts}")

    def big_values(self) -> None:
        self.load(2, [b"m-big-%d" % i for i in range(4)], os.urandom(MIB))

    def scans(self) -> Any:
        scans = [
            kv.Request(scan=kv.ScanRequest(header=self.header(2), start=b"j", end=b"r"))
            for _ in range(self.scan_count)
        ]
        answers = self.batch(self.leader(2), scans)
        return _summary(answers, "scan")

    def atomic_values(self) -> None:
        for key in self.atomic_keys:  # a message each: 1 MiB answers no budget sheds
            self.load(3, [key], os.urandom(MIB - 1))

    def atomic(self) -> Any:
        append = ((AtomicOp.APPEND_IF_FITS, b"x"),)
        writes = [
            kv.WriteItem(**write_item_fields(WriteItem(key=k, value=None, ops=append)))
            for k in self.atomic_keys
        ]
        op = kv.PrepareRequest(
            header=self.header(3),
            txn_id=new_txn_id(self.now_ts()),
            coordinator_group=3,
            participants=[3],
            ts=self.now_ts(),
            writes=writes,
        )
        return self.batch(self.leader(3), [kv.Request(prepare=op)])[0].prepare

    def stale_scans(self) -> Any:
        leader = self.leader(2)
        follower = next(n for n in self.cluster.names if n != leader)
        scans = [
            kv.Request(
                scan=kv.ScanRequest(header=self.header(2), start=b"j", end=b"r", stale_ok=True)
            )
            for _ in range(self.stale_scan_count)
        ]
        return _summary(self.batch(follower, scans), "scan")


@dataclass
class Answers:
    """The answers of one Batch of requests: how many were OK (`error`), and each refusal's
    code and message with how many answers had it (`refused`), for the report."""

    error: kv.Error
    refused: list[dict[str, Any]]


def _summary(answers: list[Any], kind: str) -> Answers:
    errors = [getattr(a, kind).error for a in answers]
    refusals = Counter((kv.ErrorCode.Name(e.code), e.message) for e in errors if e.code != kv.OK)
    codes: Counter[str] = Counter()
    for (code, _), n in refusals.items():
        codes[code] += n
    message = f"{len(answers) - codes.total()} of {len(answers)} OK"
    if codes:
        message += "; others: " + ", ".join(f"{n} {name}" for name, n in sorted(codes.items()))
    refused = [
        {"code": code, "message": text, "count": n} for (code, text), n in sorted(refusals.items())
    ]
    return Answers(kv.Error(code=kv.UNAVAILABLE if codes else kv.OK, message=message), refused)


def _error_of(result: Any) -> kv.Error:
    return result if isinstance(result, kv.Error) else result.error


def _rss_mib(cluster: LocalCluster) -> int:
    most = 0
    for name in cluster.names:
        pid = cluster.pid(name)
        if pid is None:
            continue
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS"):
                    most = max(most, int(line.split()[1]) // 1024)
    return most


def _ballots(cluster: LocalCluster) -> dict[int, str]:
    return {g: leader.ballot for g, leader in cluster.leaders(timeout_s=5.0).items()}


def measure(cluster: LocalCluster, name: str, attack: Callable[[], Any]) -> dict[str, Any]:
    cluster.wait_settled(10.0)
    before = _ballots(cluster)
    probe = Probe(cluster)
    peak_rss = _rss_mib(cluster)
    with probe.running():
        started = time.monotonic()
        result = attack()
        error = _error_of(result)
        answered_s = time.monotonic() - started
        peak_rss = max(peak_rss, _rss_mib(cluster))
    after = _ballots(cluster)
    return {
        "attack": name,
        "answer": kv.ErrorCode.Name(error.code),
        "message": error.message[:160],
        "answer_s": round(answered_s, 2),
        "worst_status_s": round(probe.worst_s, 2),
        "max_rss_mib": peak_rss,
        "new_ballots": sum(1 for g in after if after[g] != before.get(g)),
        "refused": result.refused if isinstance(result, Answers) else [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scans", type=int, default=256, help="scans in the one message")
    parser.add_argument("--stale-scans", type=int, default=128, help="stale scans at a follower")
    parser.add_argument(
        "--atomic-keys",
        type=int,
        default=MAX_ATOMIC_OPS,
        help=f"keys of 1 MiB the atomic Prepare appends to ({MAX_ATOMIC_OPS}; 3 pass rule A1's 2 MiB)",
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="paxoskv-bad-requests-"))
    results = []
    with local_cluster(root, "cluster", split_points=SPLITS) as cluster:
        attacks = Attacks(cluster, args.scans, args.stale_scans, args.atomic_keys)
        for name in ("ranges", "reads", "big_txn", "scans", "stale_scans", "atomic"):
            if name == "scans":
                attacks.big_values()  # after `ranges`, whose reads must cover group 2
            if name == "atomic":
                attacks.atomic_values()
            print(f"{name} ...", flush=True)
            results.append(measure(cluster, name, getattr(attacks, name)))
    print("| attack | answer | answer s | worst Status s | max RSS MiB | new ballots |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['attack']} | {r['answer']} | {r['answer_s']} | {r['worst_status_s']} | "
            f"{r['max_rss_mib']} | {r['new_ballots']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
