"""The transaction client (txn.Client) against a real 3-node cluster split at "g" and "p".

Keys a.., h.. and q.. live in three different Paxos groups, so a transaction touching two of
the prefixes commits by two-phase commit. One cluster serves the module; every test uses its
own key names. Every node is stopped by pid in the fixture's finalizer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import txn
from shard.cli_txn import EXIT_ABORTED, EXIT_UNDECIDED
from shard.cluster import LocalCluster, is_node_process
from shard.limits import MAX_VALUE_BYTES
from tests.cluster.raw_txn import prepare_in_one_group
from txn.hlc import LOGICAL_BITS
from txn.txn_ids import new_txn_id

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def gp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("txn") / "cluster", nodes=3, split_points=[b"g", b"p"]
    )
    try:
        cluster.start(deadline_s=60.0, settle_s=3.0)
        yield cluster
    finally:
        try:
            cluster.stop(grace_s=3.0)
        finally:
            for name, proc in cluster._procs.items():
                if proc.poll() is None and is_node_process(proc.pid, cluster.config_path, name):
                    proc.kill()
                    proc.wait(timeout=10)
            cluster.close()


def in_threads(count: int, work: Callable[[], object]) -> None:
    """Run `work` in `count` threads at once; raise the first error any of them met."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            work()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


@pytest.fixture
def client(gp_cluster: LocalCluster) -> Iterator[txn.Client]:
    with txn.Client(gp_cluster.env_value(), timeout_s=10.0, max_attempts=100) as client:
        yield client


def test_cross_shard_transaction_commits_atomically(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    keys = [b"atomic-a", b"hatomic", b"qatomic"]
    assert len({gp_cluster.group_of(k) for k in keys}) == 3
    with client.transaction() as tx:
        for key in keys:
            assert tx.get(key) is None
            tx.put(key, b"v1")
    assert tx.ref is not None and tx.ref.group_id == gp_cluster.group_of(keys[0])
    # Every key carries the commit timestamp as its version; all visible together.
    with client.transaction() as check:
        assert [check.get(k) for k in keys] == [b"v1"] * 3
        assert check.read_set == dict.fromkeys(keys, tx.commit_ts)
    with client.snapshot(read_ts=tx.commit_ts) as snap:
        assert [snap.get(k) for k in keys] == [b"v1"] * 3
    with client.snapshot(read_ts=tx.commit_ts - 1) as before:  # type: ignore[operator]
        assert [before.get(k) for k in keys] == [None] * 3


def test_bank_transfers_conserve_the_total_in_every_snapshot(client: txn.Client) -> None:
    """Concurrent cross-shard transfers; snapshots taken meanwhile always sum to the total."""
    accounts = [b"bank-a1", b"bank-a2", b"hbank-1", b"hbank-2", b"qbank-1", b"qbank-2"]
    with client.transaction() as tx:
        for account in accounts:
            tx.put(account, b"100")
    total = 100 * len(accounts)

    @client.transactional
    def transfer(tx: txn.Transaction, src: bytes, dst: bytes, amount: int) -> None:
        a = int(tx.get(src) or b"0")
        b = int(tx.get(dst) or b"0")
        tx.put(src, b"%d" % (a - amount))
        tx.put(dst, b"%d" % (b + amount))

    errors: list[BaseException] = []
    stop = threading.Event()
    sums: list[int] = []

    def mover(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                src, dst = rng.sample(accounts, 2)
                transfer(src, dst, rng.randint(1, 20))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def auditor() -> None:
        try:
            while not stop.is_set():
                with client.snapshot() as snap:
                    rows = snap.scan(b"bank-", b"bank.") + snap.scan(b"hbank-", b"hbank.")
                    rows += snap.scan(b"qbank-", b"qbank.")
                sums.append(sum(int(v) for _, v in rows))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    movers = [threading.Thread(target=mover, args=(i,)) for i in range(4)]
    audit = threading.Thread(target=auditor)
    audit.start()
    for m in movers:
        m.start()
    for m in movers:
        m.join(120)
    stop.set()
    audit.join(60)
    assert not errors, errors
    assert sums and all(s == total for s in sums), sums
    with client.transaction() as tx:
        assert sum(int(tx.get(a) or b"0") for a in accounts) == total


def test_conflicting_concurrent_pair_one_conflict_naming_the_key(client: txn.Client) -> None:
    key = b"contended"
    client.put(key, b"0")
    t1, t2 = client.transaction(), client.transaction()
    for tx, other in ((t1, b"hcontended-1"), (t2, b"qcontended-2")):
        n = int(tx.get(key) or b"0")
        tx.put(key, b"%d" % (n + 1))
        tx.put(other, b"x")  # a second group: two-phase commit
    barrier = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def commit(i: int, tx: txn.Transaction) -> None:
        barrier.wait()
        try:
            outcomes[i] = tx.commit()
        except txn.Conflict as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=commit, args=(i, tx)) for i, tx in enumerate((t1, t2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    conflicts = [o for o in outcomes.values() if isinstance(o, txn.Conflict)]
    assert len(outcomes) == 2 and len(conflicts) == 1, outcomes
    assert conflicts[0].key == key and "contended" in str(conflicts[0])
    assert conflicts[0].retryable
    assert client.get(key) == b"1"


def test_an_insert_into_a_scanned_range_aborts_the_scanner(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """Rule P6 end to end: a key another transaction adds to a range this one scanned (here
    in the other of the two groups the range spans) makes this one's commit a retryable
    Conflict."""
    start, end = b"ozz-scan", b"p-scan~"  # across the split point "p"; no other test's keys
    assert [gp_cluster.group_of(k) for k in (start, b"p-scan-new")] == [2, 3]
    scanner = client.transaction()
    assert scanner.scan(start, end) == []
    with client.transaction() as inserter:
        inserter.put(b"p-scan-new", b"1")
    scanner.put(b"ozz-scan-mine", b"1")
    with pytest.raises(txn.Conflict) as info:
        scanner.commit()
    assert info.value.key == b"p-scan-new" and info.value.retryable
    assert "phantom" in str(info.value)
    assert client.get(b"ozz-scan-mine") is None


def test_snapshot_reads_inside_a_transaction_abort_nothing(client: txn.Client) -> None:
    """FoundationDB's snapshot reads: a key read, or a range scanned, with snapshot=True is
    not checked at commit, so what others change there meanwhile aborts nothing; the same
    read without it does (the control). Reads see the transaction's own writes either way."""
    counter, mine, listed = b"rsnap-counter", b"rsnap-mine", b"rsnap-list/"
    client.put(counter, b"1")
    checked = client.transaction()
    assert checked.get(counter) == b"1"
    client.put(counter, b"2")
    checked.put(mine, b"x")
    with pytest.raises(txn.Conflict):
        checked.commit()
    tx = client.transaction()
    assert tx.get(counter, snapshot=True) == b"2"
    assert tx.scan(listed, listed + b"~", snapshot=True) == []
    client.put(counter, b"3")
    client.put(listed + b"new", b"1")
    tx.put(mine, b"y")
    assert tx.get(mine, snapshot=True) == b"y"
    assert tx.scan(listed, listed + b"~", snapshot=True) == [(listed + b"new", b"1")]
    tx.commit()
    assert tx.read_set == {} and tx.scanned_ranges == []
    assert client.get(mine) == b"y"
    with pytest.raises(txn.InvalidArgument, match="exclude each other"):
        client.transaction().get(counter, snapshot=True, for_update=True)


def test_delete_range_is_phantom_safe_across_shards(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """A key added to the range after delete_range scanned it makes the commit a Conflict;
    run() re-runs the body, and the range ends empty."""
    start, end = b"ozz-clear", b"p-clear~"  # across the split point "p"
    for key in (b"ozz-clear-1", b"p-clear-1"):
        client.put(key, b"v")
    tx = client.transaction()
    assert tx.delete_range(start, end) == 2
    client.put(b"p-clear-2", b"added")
    with pytest.raises(txn.Conflict, match="phantom"):
        tx.commit()
    assert client.scan(start, end) == [
        (b"ozz-clear-1", b"v"),
        (b"p-clear-1", b"v"),
        (b"p-clear-2", b"added"),
    ]
    runs = []

    def clear(tx: txn.Transaction) -> int:
        runs.append(tx.delete_range(start, end))
        if len(runs) == 1:
            client.put(b"ozz-clear-2", b"added")  # a phantom for the first run only
        return runs[-1]

    assert client.run(clear) == 4
    assert runs == [3, 4]
    assert client.scan(start, end) == []


def test_a_reverse_scan_reads_down_across_shards_and_guards_what_it_saw(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """Reverse scans on real nodes: the range read from its end down across the split point
    "p" (client, snapshot, transaction); a transaction's reverse scan cut by its limit
    conflicts with an insert inside what it saw (rule P6 down to its last key) and not with
    one below it."""
    start, end = b"ozz-rev", b"p-rev~"
    keys = [b"ozz-rev-1", b"ozz-rev-2", b"p-rev-1", b"p-rev-2"]
    assert [gp_cluster.group_of(k) for k in keys] == [2, 2, 3, 3]
    for key in keys:
        client.put(key, key.upper())
    backwards = [(k, k.upper()) for k in reversed(keys)]
    assert client.scan(start, end, reverse=True) == backwards
    assert client.scan(start, end, 1, reverse=True) == backwards[:1]
    with client.snapshot() as snap:
        assert snap.scan(start, end, reverse=True) == backwards
        assert list(snap.iterate(start, end, reverse=True, page_keys=1)) == backwards
    for inserted, conflicts in ((b"ozz-rev-0", False), (b"p-rev-15", True)):
        tx = client.transaction()
        assert tx.scan(start, end, 3, reverse=True) == backwards[:3]
        client.put(inserted, b"theirs")
        tx.put(b"ozz-mine", b"1")  # below the range
        if conflicts:
            with pytest.raises(txn.Conflict, match="phantom"):
                tx.commit()
        else:
            tx.commit()
        client.delete(inserted)


def test_the_next_number_by_a_reverse_scan_is_taken_once(client: txn.Client) -> None:
    """Six threads each take the next number of a sequence kept as keys (read the last key
    by a reverse scan of limit 1, write the one after it): a number is taken once, none is
    skipped."""
    prefix = b"hseq/"
    taken: list[int] = []
    errors: list[BaseException] = []

    @client.transactional
    def take(tx: txn.Transaction) -> int:
        last = tx.scan(prefix, txn.prefix_end(prefix), 1, reverse=True)
        number = int(last[0][0][len(prefix) :]) + 1 if last else 1
        tx.put(prefix + b"%08d" % number, b"taken")
        return number

    def run() -> None:
        try:
            taken.append(take())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(taken) == [1, 2, 3, 4, 5, 6]


def test_uniqueness_by_scan_holds_under_concurrent_claims(client: txn.Client) -> None:
    """Eight threads each claim a name by scanning its prefix and inserting a key of their
    own if the prefix is empty (a constraint no single key expresses): exactly one wins."""
    prefix = b"hclaim/ada/"
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    @client.transactional
    def claim(tx: txn.Transaction, who: int) -> bool:
        if tx.scan(prefix, prefix + b"\xff"):
            return False
        tx.put(prefix + b"%d" % who, b"taken")
        return True

    def run(who: int) -> None:
        try:
            outcomes.append(claim(who))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(outcomes) == [False] * 7 + [True]
    with client.snapshot() as snap:
        assert len(snap.scan(prefix, prefix + b"\xff")) == 1


def test_increments_through_scans_for_update_across_two_shards(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """Four threads each add 1, five times, to every counter a scan for update returns, in a
    range across the split point "g": every increment lands once, with no hang, and the
    locks make most attempts wait instead of abort."""
    lo, hi = b"fsfu-", b"gsfu-~"  # no other test's keys in between
    keys = [b"fsfu-1", b"fsfu-2", b"gsfu-1"]
    assert [gp_cluster.group_of(k) for k in keys] == [1, 1, 2]
    for key in keys:
        client.put(key, b"0")
    attempts = itertools.count()

    @client.transactional
    def add_one(tx: txn.Transaction) -> None:
        next(attempts)
        for key, value in tx.scan(lo, hi, for_update=True):
            tx.put(key, b"%d" % (int(value) + 1))

    in_threads(4, lambda: [add_one() for _ in range(5)])
    assert [client.get(k) for k in keys] == [b"20"] * 3
    tries = next(attempts)
    print(f"\n20 increments took {tries} attempts")
    assert tries < 40, f"{tries} attempts for 20 increments: the locks did not queue them"


def test_atomic_adds_from_many_threads_all_land_once_without_conflicts(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """Four threads each commit ten additions to a counter on one shard (one-phase) and ten
    to two counters on two shards (two-phase): every addition lands once. On one shard no
    attempt is refused: an atomic write reads nothing, so nothing it read can change."""
    one, left, right = b"aop-solo", b"aop-left", b"haop-right"
    assert [gp_cluster.group_of(k) for k in (one, left, right)] == [1, 1, 2]
    attempts = itertools.count()

    @client.transactional
    def add_one(tx: txn.Transaction) -> None:
        next(attempts)
        tx.add(one, 1)

    @client.transactional
    def add_both(tx: txn.Transaction) -> None:
        tx.add(left, 1)
        tx.add(right, -1)

    in_threads(4, lambda: [(add_one(), add_both()) for _ in range(10)])
    assert [txn.decode_int(client.get(k)) for k in (one, left, right)] == [40, 40, -40]
    assert next(attempts) == 40, "an atomic add on one shard was refused and retried"


def test_atomic_operations_inside_a_transaction(client: txn.Client) -> None:
    """What a transaction sees of its own atomic operations, and what commits."""
    client.put(b"aopx-seen", txn.encode_int(7))
    client.put(b"aopx-clear", b"token")
    with client.transaction() as tx:
        tx.add(b"aopx-seen", 3)
        tx.atomic(b"aopx-new", txn.AtomicOp.APPEND_IF_FITS, b"a")
        tx.atomic(b"aopx-new", txn.AtomicOp.APPEND_IF_FITS, b"b")
        tx.atomic(b"aopx-clear", txn.AtomicOp.COMPARE_AND_CLEAR, b"token")
        assert tx.atomic_ops[b"aopx-new"] == [
            (txn.AtomicOp.APPEND_IF_FITS, b"a"),
            (txn.AtomicOp.APPEND_IF_FITS, b"b"),
        ]
        assert tx.read_set == {}  # nothing read yet: nothing for the commit to check
        assert txn.decode_int(tx.get(b"aopx-seen", snapshot=True)) == 10
        assert tx.read_set == {}
        assert tx.scan(b"aopx-", b"aopx-~") == [
            (b"aopx-new", b"ab"),
            (b"aopx-seen", txn.encode_int(10)),
        ]
        assert b"aopx-seen" in tx.read_set  # a scan reads what it returns, as always
        tx.put(b"aopx-put", b"x")
        tx.atomic(b"aopx-put", txn.AtomicOp.BYTE_MAX, b"y")  # applied to the buffered write
        assert tx.write_set[b"aopx-put"] == b"y" and b"aopx-put" not in tx.atomic_ops
    assert [client.get(k) for k in (b"aopx-new", b"aopx-clear", b"aopx-put")] == [b"ab", None, b"y"]
    assert txn.decode_int(client.get(b"aopx-seen")) == 10
    # A put after an atomic operation replaces it; a bad operation is refused at once.
    with client.transaction() as tx:
        tx.add(b"aopx-seen", 100)
        tx.put(b"aopx-seen", txn.encode_int(1))
        assert tx.atomic_ops == {}
        with pytest.raises(txn.InvalidArgument, match="AtomicOp"):
            tx.atomic(b"aopx-seen", 1, b"x")  # type: ignore[arg-type]
        with pytest.raises(txn.InvalidArgument, match="8-byte"):
            tx.add(b"aopx-seen", 2**64)
    assert txn.decode_int(client.get(b"aopx-seen")) == 1
    # A limited scan over a key a buffered compare-and-clear removes still fills its page;
    # a read for update and delete_range see the buffered operations too; a delete drops
    # them.
    for key in (b"aopx-r1", b"aopx-r2", b"aopx-r3"):
        client.put(key, b"x")
    with client.transaction() as tx:
        tx.atomic(b"aopx-r1", txn.AtomicOp.COMPARE_AND_CLEAR, b"x")
        tx.add(b"aopx-r0", 5)
        assert tx.scan(b"aopx-r", b"aopx-s", 2) == [
            (b"aopx-r0", txn.encode_int(5)),
            (b"aopx-r2", b"x"),
        ]
        assert tx.get(b"aopx-r0", for_update=True) == txn.encode_int(5)
        assert tx.delete_range(b"aopx-r", b"aopx-s") == 3  # r0 (only by its add), r2, r3
        assert tx.atomic_ops == {b"aopx-r1": [(txn.AtomicOp.COMPARE_AND_CLEAR, b"x")]}
        tx.delete(b"aopx-r1")
        assert tx.atomic_ops == {}
    assert client.scan(b"aopx-r", b"aopx-s") == []
    # The single-key helper: one transaction of its own, its commit timestamp the version.
    ts = client.add(b"aopx-seen", 41)
    with client.transaction() as check:
        assert check.get(b"aopx-seen") == txn.encode_int(42)
        assert check.read_set[b"aopx-seen"] == ts


def test_more_hot_reads_for_update_than_a_stream_has_get_slots_all_commit(
    gp_cluster: LocalCluster,
) -> None:
    """Found by a client trial: 200 transactions of one AsyncClient, each an increment of one
    hot key read for update, filled the stream's 128 get slots with reads queued on the
    key's lock, and the node read nothing behind them, the lock holder's commit included:
    14 of 200 committed in 67 s, the rest TooManyRetries. Now every one commits."""
    from shard.server import MAX_STREAM_GETS

    clients = MAX_STREAM_GETS + 72
    key = b"hot-for-update"

    async def main() -> tuple[list[BaseException], bytes | None]:
        async with txn.AsyncClient(gp_cluster.env_value(), timeout_s=10.0) as client:
            await client.put(key, b"0")

            @client.transactional
            async def increment(tx: txn.AsyncTransaction) -> None:
                value = await tx.get(key, for_update=True)
                tx.put(key, b"%d" % (int(value or b"0") + 1))

            results = await asyncio.gather(
                *(increment() for _ in range(clients)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            return errors, await client.get(key)

    errors, value = asyncio.run(main())
    assert not errors, errors[:3]
    assert value == b"%d" % clients


def test_snapshot_reads(client: txn.Client) -> None:
    client.put(b"snap-a", b"v1")
    client.put(b"qsnap", b"v1")
    with client.snapshot() as snap:
        assert snap.get(b"snap-a") == b"v1"
        # Once a shard served a read at read_ts, its later writes are stamped above it, and
        # a cross-shard commit takes the largest prepare timestamp: neither is visible.
        client.put(b"snap-a", b"v2")
        with client.transaction() as tx:
            tx.put(b"snap-a", b"v3")
            tx.put(b"qsnap", b"v3")
        assert tx.commit_ts is not None and tx.commit_ts > snap.read_ts
        assert snap.get(b"snap-a") == b"v1"
        assert snap.get(b"qsnap") == b"v1"
        assert snap.scan(b"snap-", b"snap.") == [(b"snap-a", b"v1")]
    with client.snapshot() as later:
        assert later.read_ts > snap.read_ts
        assert later.get(b"snap-a") == b"v3" and later.get(b"qsnap") == b"v3"
    with client.snapshot(read_ts=tx.commit_ts - 1) as before:
        assert before.get(b"qsnap") == b"v1"


def test_txn_status(gp_cluster: LocalCluster, client: txn.Client) -> None:
    with client.transaction() as tx:
        tx.put(b"status-a", b"1")
        tx.put(b"hstatus", b"1")
    assert tx.ref is not None
    status = client.txn_status(tx.ref)
    assert status.state is txn.TxnState.COMMITTED and status.commit_ts == tx.commit_ts
    assert client.txn_status(tx.txn_id, key=b"status-a") == status
    assert client.txn_status(b"never-ran", group_id=1).state is txn.TxnState.UNKNOWN
    # Settling: a committed one stays committed; one with no record is recorded aborted,
    # for good (a late commit of it would now be refused).
    assert client.txn_status(tx.ref, settle=True) == status
    never_sent = txn.TxnRef(b"never-sent", 1, time.time_ns())
    assert client.txn_status(never_sent, settle=True).state is txn.TxnState.ABORTED
    assert client.txn_status(never_sent).state is txn.TxnState.ABORTED
    # A transaction that lost at prepare is recorded as aborted at its coordinator.
    loser = client.transaction()
    loser.get(b"hstatus")
    loser.put(b"status-a", b"2")
    loser.put(b"hstatus", b"2")
    client.put(b"hstatus", b"changed")
    with pytest.raises(txn.Conflict):
        loser.commit()
    assert loser.ref is not None
    assert client.txn_status(loser.ref).state is txn.TxnState.ABORTED
    assert client.get(b"status-a") == b"1"


def test_txn_status_of_a_ref_naming_a_group_the_transaction_never_touched(
    gp_cluster: LocalCluster, client: txn.Client
) -> None:
    """Found by a user trial: `txn-status ID:2 --settle`, group 2 mistyped for 1, recorded an
    abort in a group the transaction never touched and reported "aborted" for a committed
    transaction. Another group's commit is the answer; another group's PREPARE that leaves
    the named group out makes the ref a wrong one."""
    with client.transaction() as tx:
        tx.put(b"wrongref-a", b"1")  # group 3, the coordinator
        tx.put(b"hwrongref", b"1")  # group 2
    assert tx.ref is not None and tx.ref.group_id == 3
    committed = txn.TxnStatus(txn.TxnState.COMMITTED, tx.commit_ts)
    untouched = txn.TxnRef(tx.ref.txn_id, 1, tx.ref.started_ns)
    assert client.txn_status(untouched) == committed
    assert client.txn_status(untouched, settle=True) == committed
    assert client.txn_status(tx.ref) == committed

    txn_id = prepare_in_one_group(gp_cluster, b"hwrongref-prepared")
    with pytest.raises(txn.InvalidArgument, match="prepared in groups 2, 3: check the group"):
        client.txn_status(txn.TxnRef(txn_id, 1), settle=True)
    # Its coordinator has no record: settled there, it is aborted for good, and its intent in
    # group 2 goes (the participant's recovery learns the abort).
    assert client.txn_status(txn.TxnRef(txn_id, 3), settle=True).state is txn.TxnState.ABORTED
    client.put(b"hwrongref-prepared", b"after")
    assert client.get(b"hwrongref-prepared") == b"after"


def test_get_versioned_gives_what_cas_compares(client: txn.Client) -> None:
    """A read-modify-write without a transaction (asked for by an application trial: `get`
    gave no version, so a cas on it needed one). Absent, never written or deleted, is
    (None, 0), and 0 is what cas expects of an absent key."""
    key = b"hversioned"
    assert client.get_versioned(key) == (None, 0)
    first = client.put(key, b"1")
    assert client.get_versioned(key) == (b"1", first)
    value, version = client.get_versioned(key)
    assert client.cas(key, expected_version=version, new_value=value + b"+").succeeded
    stale = client.cas(key, expected_version=version, new_value=b"lost")
    assert not stale.succeeded and client.get(key) == b"1+"
    client.delete(key)
    assert client.get_versioned(key) == (None, 0)
    assert client.cas(key, expected_version=0, new_value=b"again").succeeded
    with pytest.raises(txn.InvalidArgument, match="bytes"):
        client.get_versioned("hversioned")  # type: ignore[arg-type]


def test_a_value_over_a_limit_is_limit_exceeded_and_nothing_is_sent(client: txn.Client) -> None:
    """Found by review: a value over gRPC's 64 MiB message limit failed the client's shared
    stream at its write, so the put was reported OutcomeUnknown and a transaction
    CommitUnknown, though nothing had left the client. Now the put is refused before it is
    queued, and a transaction's by its tx.put, with the node's message, as a value over the
    node's limit alone is."""
    for size in (MAX_VALUE_BYTES + 1, 65 * 1024 * 1024):
        value = b"x" * size
        with pytest.raises(txn.LimitExceeded, match="MAX_VALUE_BYTES") as put:
            client.put(b"abig", value)
        assert not put.value.maybe_committed
        tx = client.transaction()
        tx.put(b"hbig", b"v")
        with pytest.raises(txn.LimitExceeded, match="MAX_VALUE_BYTES") as buffered:
            tx.put(b"abig", value)  # refused by the put itself, as FoundationDB's set()
        assert not buffered.value.maybe_committed
        tx.abort()
    assert client.get(b"abig") is None and client.get(b"hbig") is None
    assert client.put(b"abig", b"small") > 0  # the client's streams still serve


def _txn_cli(cluster: LocalCluster, *steps: str) -> subprocess.CompletedProcess[bytes]:
    """`paxoskv txn STEP...` against `cluster`, as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "shard.cli", "txn", "--cluster", cluster.env_value(), *steps],
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_txn_cli_adds_to_a_counter(gp_cluster: LocalCluster) -> None:
    def txn_cli(*steps: str) -> subprocess.CompletedProcess[bytes]:
        return _txn_cli(gp_cluster, *steps)

    def add(*steps: str) -> list[str]:
        run = txn_cli(*steps)
        assert run.returncode == 0, run.stderr
        return run.stdout.decode().splitlines()

    first = add("add clictr 5", "add clictr -2")
    assert first[0].startswith("committed at ts ") and "0 keys read" in first[0]
    assert "1 key written" in first[0]
    again = add("add clictr 4; get clictr")
    assert again[0] == "get clictr: 7" and "1 key read" in again[1]
    # A value that is not an 8-byte counter is refused, as by `paxoskv add`: nothing commits.
    refused = txn_cli("put clitext 12; add clitext 1")
    assert refused.returncode == 1, refused.stderr
    assert b"'add clitext 1': the value of 'clitext' is 2 bytes, not an 8-byte counter" in (
        refused.stderr
    )
    assert add("get clitext")[0] == "get clitext: (not found)"
    # --json: a counter's get is its number there too, and the commit's ts is the version
    # it wrote (a fencing token a script takes from the field).
    document = json.loads(txn_cli("--json", "add clictr 1; get clictr").stdout)
    assert document["steps"] == [{"step": "get clictr", "key": "clictr", "value": "8"}]
    version = _version_of(gp_cluster, b"clictr")
    assert document["commit_ts"] == version and document["keys_written"] == 1


def _version_of(cluster: LocalCluster, key: bytes) -> int:
    """`key`'s version, read through a client of its own."""
    with txn.Client(cluster.env_value()) as client:
        return client.get_versioned(key)[1]


def test_txn_cli_guards_a_unique_signup_across_shards(gp_cluster: LocalCluster) -> None:
    """`expect-absent` from the shell: the email (group 1) and the user (group 3) commit
    together once; a second signup for the email commits nothing and exits 3."""

    def txn_cli(*steps: str) -> subprocess.CompletedProcess[bytes]:
        return _txn_cli(gp_cluster, *steps)

    first = txn_cli("expect-absent email/cli", "put email/cli u1", "put user/u1 cli")
    assert first.returncode == 0, first.stderr
    assert b"1 key read, 0 scans, 2 keys written" in first.stdout
    second = txn_cli("expect-absent email/cli", "put email/cli u2", "put user/u2 cli")
    assert second.returncode == 3, second.stderr
    assert second.stderr == (
        b"paxoskv: txn: guard 'expect-absent email/cli' failed: email/cli is u1; nothing was "
        b"committed\n"
    )
    check = txn_cli("get user/u2", "expect email/cli u1", "expect-present user/u1")
    assert check.returncode == 0, check.stderr
    assert check.stdout.decode().splitlines()[0] == "get user/u2: (not found)"
    # After an add step, an expect compares the number a get shows.
    counted = txn_cli("add guardctr 2; expect guardctr 2; add guardctr 1; expect guardctr 3")
    assert counted.returncode == 0, counted.stderr
    over = txn_cli("add guardctr 1; expect guardctr 3")
    assert over.returncode == 3
    assert b"guard 'expect guardctr 3' failed: guardctr is 4;" in over.stderr


def test_txn_cli(gp_cluster: LocalCluster) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "shard.cli",
            "txn",
            "--cluster",
            gp_cluster.env_value(),
            "put cli-a 1; put qcli 2",
            "get cli-a",
            "scan cli- cli.",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    assert lines[0] == "get cli-a: 1"
    assert lines[1:3] == ["scan cli- cli.: 1 item", "  cli-a\t1"]
    assert lines[3].startswith("committed at ts ")

    # The commit-outcome API from the command line: the commit line's "txn ID:GROUP".
    def txn_status(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "shard.cli", "txn-status", "--cluster", env, *args],
            capture_output=True,
            timeout=60,
            check=False,
        )

    env = gp_cluster.env_value()
    ref = lines[3].split("(txn ")[1].split(",")[0]
    answer = txn_status(ref)
    assert (answer.returncode, answer.stdout.decode()) == (0, f"{lines[3].split(' (')[0]}\n")
    never_sent = str(txn.TxnRef(b"never-sent-cli", 1, time.time_ns()))
    assert txn_status(never_sent).returncode == EXIT_UNDECIDED
    settled = txn_status(never_sent, "--settle")
    assert (settled.returncode, settled.stdout) == (EXIT_ABORTED, b"aborted\n")
    # The commit line's ref settles too: the id says when the transaction began.
    settled = txn_status(ref, "--settle")
    assert (settled.returncode, settled.stdout.decode()) == (0, answer.stdout.decode())
    never_sent_tagged = f"{new_txn_id(time.time_ns() // 1000 << LOGICAL_BITS).hex()}:1"
    settled = txn_status(never_sent_tagged, "--settle")
    assert (settled.returncode, settled.stdout) == (EXIT_ABORTED, b"aborted\n")
    bare = new_txn_id(time.time_ns() // 1000 << LOGICAL_BITS).hex()
    settled = txn_status(bare, "--group", "1", "--settle")
    assert (settled.returncode, settled.stdout) == (EXIT_ABORTED, b"aborted\n")


class _SumBroken(Exception):
    """The body saw a total no committed state ever had."""


def _move_between_reads(client: txn.Client, first: bytes, second: bytes, move: int) -> None:
    """Move `move` from `first` to `second` in one committed transaction."""
    with client.transaction() as tx:
        a, z = int(tx.get(first) or b"0"), int(tx.get(second) or b"0")
        tx.put(first, b"%d" % (a - move))
        tx.put(second, b"%d" % (z + move))


@pytest.mark.parametrize("scan", [False, True])
def test_run_retries_a_body_error_from_reads_that_straddled_a_commit(
    gp_cluster: LocalCluster, client: txn.Client, scan: bool
) -> None:
    """Reads of a read-write transaction each see the latest data, so a body can read one
    key before another transaction's commit and the other after it, and raise on a state
    that never existed; `run` passed such an error on instead of running the body again
    (found by review: 184 of 200 runs raised a total of 99 while the total was always
    100). Now a body's error is checked against what it read: changed data makes it a
    retryable Conflict, and the retry sees a consistent state."""
    first, second = (b"astraddle-%d" % scan, b"qstraddle-%d" % scan)
    assert gp_cluster.group_of(first) != gp_cluster.group_of(second)
    client.put(first, b"60")
    client.put(second, b"40")
    attempts: list[int] = []

    def body(tx: txn.Transaction) -> int:
        attempts.append(1)
        a = int(tx.get(first) or b"0")
        if len(attempts) == 1:
            _move_between_reads(client, first, second, 10)  # another client, in between
        if scan:
            z = int(dict(tx.scan(b"q", b"r"))[second])
        else:
            z = int(tx.get(second) or b"0")
        if a + z != 100:
            raise _SumBroken(f"a={a} z={z}")
        return a + z

    assert client.run(body) == 100
    assert len(attempts) == 2, "the body ran again once, on a consistent state"


def test_run_raises_a_body_error_from_a_consistent_view_unchanged(client: txn.Client) -> None:
    """The check must not turn a real error into retries: reads still current mean the
    view was one state, and the body's error stands (raised once, not retried)."""
    client.put(b"aconsistent", b"1")
    client.put(b"qconsistent", b"2")
    attempts: list[int] = []

    def body(tx: txn.Transaction) -> None:
        attempts.append(1)
        tx.get(b"aconsistent")
        tx.scan(b"qconsistent", b"qconsistent\x00")
        raise _SumBroken("a real error of the body")

    with pytest.raises(_SumBroken, match="a real error"):
        client.run(body)
    assert len(attempts) == 1


async def _async_straddle(env: str, first: bytes, second: bytes) -> int:
    async with txn.AsyncClient(env, timeout_s=10.0) as aclient:
        await aclient.put(first, b"60")
        await aclient.put(second, b"40")
        attempts: list[int] = []

        async def body(tx: txn.AsyncTransaction) -> None:
            attempts.append(1)
            a = int(await tx.get(first) or b"0")
            if len(attempts) == 1:
                async with aclient.transaction() as other:
                    other.put(first, b"50")
                    other.put(second, b"50")
            z = int(await tx.get(second) or b"0")
            if a + z != 100:
                raise _SumBroken(f"a={a} z={z}")

        await aclient.run(body)
        return len(attempts)


def test_async_run_retries_a_body_error_from_reads_that_straddled_a_commit(
    gp_cluster: LocalCluster,
) -> None:
    assert asyncio.run(_async_straddle(gp_cluster.env_value(), b"aastraddle", b"qastraddle")) == 2


def test_run_retries_a_body_error_from_a_scan_that_missed_a_later_insert(
    client: txn.Client,
) -> None:
    """The same through a phantom: the body scans a range, another transaction adds a key
    to it and raises the count kept elsewhere, and the body reads that count. Every key
    the body read is unchanged; only the range holds one more key now."""
    count_key, prefix = b"aphantom-count", b"qphantom-"
    client.put(count_key, b"1")
    client.put(prefix + b"0", b"x")
    attempts: list[int] = []

    def body(tx: txn.Transaction) -> None:
        attempts.append(1)
        seen = len(tx.scan(prefix, prefix + b"\xff"))
        if len(attempts) == 1:
            with client.transaction() as other:
                other.put(prefix + b"1", b"x")
                other.put(count_key, b"2")
        if int(tx.get(count_key) or b"0") != seen:
            raise _SumBroken(f"{seen} keys, count {tx.get(count_key)!r}")

    client.run(body)
    assert len(attempts) == 2
