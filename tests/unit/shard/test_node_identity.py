"""A node starts on its own data, or on none only at the cluster's first start
(shard/node_identity.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from paxos import Ballot, PersistBatch
from router.shard_map import NodeAddress, ShardMap, bootstrap
from shard.disk import WAL_WARMUP_BYTES, DataDirInUse, RocksNodeDisk
from shard.map_mismatch import ConfigMismatch
from shard.node_identity import (
    IDENTITY_KEY,
    INCARNATION_KEY,
    MAX_RUNS,
    NO_OTHERS,
    RUN_BYTES,
    Admission,
    Incarnation,
    NodeDataCorrupt,
    NodeDataMismatch,
    NodeDataMissing,
    NodeDataUnusable,
    NodeIdentity,
    PeerRecords,
    admit_peer,
    asks_others,
    begin_run,
    node_incarnation,
    open_node_disk,
    recorded_incarnation,
    retired_here,
    split_runs,
    token_digest,
)

N1 = NodeIdentity("c1", 1, "n1")
VOTE = PersistBatch(promised=Ballot(3, 2), accepted={7: (Ballot(3, 2), (b"v",))})


def test_an_empty_directory_is_refused_unless_this_is_the_first_start(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with pytest.raises(NodeDataMissing, match=r"no data for node n1 \(id 1\).*--bootstrap"):
        open_node_disk(path, N1, first_start=False)
    assert not path.exists(), "a refused start must leave no empty database behind"
    open_node_disk(path, N1, first_start=True).close()
    open_node_disk(path, N1, first_start=False).close()  # a restart needs no flag


def test_the_first_start_records_the_identity_before_anything_else(tmp_path: Path) -> None:
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        stored = disk.db.get(IDENTITY_KEY)
        assert stored is not None and NodeIdentity.decode(stored) == N1
    finally:
        disk.close()


def test_a_database_that_died_before_its_identity_was_written_is_still_empty(
    tmp_path: Path,
) -> None:
    RocksNodeDisk(tmp_path / "db").close()  # created, nothing voted, no identity record
    with pytest.raises(NodeDataMissing, match=r"holds nothing, as when a first start") as err:
        open_node_disk(tmp_path / "db", N1, first_start=False)
    # It may also be a rebuild that died: --bootstrap is not the advice for every node (a
    # node that voted and came back with it would vote as if it had not; found by review).
    assert "or a rebuild (--rebuild) was stopped" in str(err.value)
    assert "must not come back with --bootstrap" in str(err.value)
    open_node_disk(tmp_path / "db", N1, first_start=True).close()  # the retried first start


def test_votes_survive_and_a_lost_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    disk = open_node_disk(path, N1, first_start=True)
    disk.persist([(1, VOTE)])
    disk.close()
    reopened = open_node_disk(path, N1, first_start=False)
    try:
        assert reopened.load(1).accepted == VOTE.accepted
    finally:
        reopened.close()
    for item in path.iterdir():  # the disk is replaced: the votes are gone
        item.unlink()
    with pytest.raises(NodeDataMissing):
        open_node_disk(path, N1, first_start=False)


@pytest.mark.parametrize(
    "other",
    [NodeIdentity("c1", 2, "n2"), NodeIdentity("c2", 1, "n1")],
    ids=["another node", "another cluster"],
)
def test_another_nodes_directory_is_refused_even_at_a_first_start(
    tmp_path: Path, other: NodeIdentity
) -> None:
    open_node_disk(tmp_path / "db", other, first_start=True).close()
    for first_start in (False, True):
        with pytest.raises(NodeDataMismatch, match=rf"belongs to node {other.name} .*data_dir"):
            open_node_disk(tmp_path / "db", N1, first_start=first_start)
    if other.node_id == N1.node_id:  # the same node under another cluster id names it
        with pytest.raises(NodeDataMismatch, match="check cluster_id in the config"):
            open_node_disk(tmp_path / "db", N1, first_start=False)


def test_a_directory_from_before_the_identity_record_is_adopted(tmp_path: Path) -> None:
    old = RocksNodeDisk(tmp_path / "db")  # what earlier versions wrote: votes, no record
    old.persist([(1, VOTE)])
    old.close()
    disk = open_node_disk(tmp_path / "db", N1, first_start=False)
    try:
        assert disk.load(1).accepted == VOTE.accepted
        assert disk.db.get(IDENTITY_KEY) == N1.encode()
    finally:
        disk.close()


def test_the_record_is_written_before_the_open_writes_anything_else(tmp_path: Path) -> None:
    """The open's WAL warm-up writes 16 MiB: a first start stopped during it used to leave
    a database with no record (found by review)."""
    path = tmp_path / "db"
    logged: list[int] = []
    original = RocksNodeDisk.__init__

    def spy(self: RocksNodeDisk, at: Path, *, claim: Any = None) -> None:
        def claim_then_measure(db: Any) -> None:
            claim(db)
            logged.append(sum(log.stat().st_size for log in path.glob("*.log")))

        original(self, at, claim=claim_then_measure)

    RocksNodeDisk.__init__ = spy  # type: ignore[method-assign]
    try:
        open_node_disk(path, N1, first_start=True).close()
    finally:
        RocksNodeDisk.__init__ = original  # type: ignore[method-assign]
    assert len(logged) == 1 and logged[0] < WAL_WARMUP_BYTES // 16, logged


def test_a_rebuild_takes_an_empty_directory_and_marks_every_group_rebuilding(
    tmp_path: Path, caplog: Any
) -> None:
    path = tmp_path / "db"
    with pytest.raises(NodeDataMissing, match=r"start it with --rebuild"):
        open_node_disk(path, N1, first_start=False)
    disk = open_node_disk(path, N1, first_start=False, rebuild_groups=[0, 2])
    try:
        stored = disk.db.get(IDENTITY_KEY)
        assert stored is not None and NodeIdentity.decode(stored) == N1
        assert disk.load(0).rebuilding and disk.load(2).rebuilding
        assert not disk.load(1).rebuilding  # not hosted here
    finally:
        disk.close()
    # A restart (with or without the flag again) goes on rebuilding from the marks, and
    # the flag given again is no mistake: nothing is logged of it.
    for rebuild_groups in (None, [0, 2]):
        again = open_node_disk(path, N1, first_start=False, rebuild_groups=rebuild_groups)
        try:
            assert again.load(0).rebuilding and again.load(2).rebuilding
        finally:
            again.close()
    assert not [r for r in caplog.records if "--rebuild changes nothing" in r.getMessage()]


def test_a_rebuild_of_a_directory_holding_the_nodes_data_changes_nothing(
    tmp_path: Path, caplog: Any
) -> None:
    path = tmp_path / "db"
    disk = open_node_disk(path, N1, first_start=True)
    disk.persist([(1, VOTE)])
    disk.close()
    again = open_node_disk(path, N1, first_start=False, rebuild_groups=[1])
    try:
        state = again.load(1)
        assert not state.rebuilding and state.accepted == VOTE.accepted
    finally:
        again.close()
    # Said, not silent (found by an operations review): a node its peers refuse as "came
    # back with new data" stayed refused while the operator thought it rebuilt.
    (warning,) = [r for r in caplog.records if "--rebuild changes nothing" in r.getMessage()]
    assert "move the directory aside" in warning.getMessage()
    with pytest.raises(NodeDataMismatch):
        open_node_disk(path, NodeIdentity("c1", 2, "n2"), first_start=False, rebuild_groups=[1])


def test_a_corrupt_directory_says_how_to_bring_the_node_back(tmp_path: Path) -> None:
    """Found by review: RocksDB's "Corruption: ..." line alone gave no next step."""
    path = tmp_path / "db"
    open_node_disk(path, N1, first_start=True).close()
    (path / "CURRENT").write_text("garbage")
    with pytest.raises(NodeDataCorrupt, match=r"corrupt \(Corruption: .*--rebuild"):
        open_node_disk(path, N1, first_start=False)


def _incarnation_of(path: Path, **kw: Any) -> Incarnation:
    disk = open_node_disk(path, N1, **kw)
    try:
        return node_incarnation(disk.db)
    finally:
        disk.close()


def test_an_incarnation_is_made_with_the_data_and_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first = _incarnation_of(path, first_start=True)
    assert len(first.token) == 16 and not first.rebuilt
    assert _incarnation_of(path, first_start=False) == first
    assert _incarnation_of(path, first_start=False, rebuild_groups=[1]) == first  # has data
    shutil.rmtree(path)  # the data is lost
    again = _incarnation_of(path, first_start=True)  # and it is started with --bootstrap
    assert again.token != first.token and not again.rebuilt
    shutil.rmtree(path)
    rebuilt = _incarnation_of(path, first_start=False, rebuild_groups=[1])
    assert rebuilt.token not in (first.token, again.token) and rebuilt.rebuilt


def test_data_from_before_incarnations_is_given_one(tmp_path: Path) -> None:
    path = tmp_path / "db"
    open_node_disk(path, N1, first_start=True).close()
    disk = RocksNodeDisk(path)
    disk.db.delete(INCARNATION_KEY)
    disk.close()
    made = _incarnation_of(path, first_start=False)
    assert len(made.token) == 16 and _incarnation_of(path, first_start=False) == made


def test_a_peer_that_came_back_with_new_data_is_refused_unless_rebuilt(tmp_path: Path) -> None:
    """Found by review: a node whose data was lost, started again with --bootstrap, cannot
    tell from its own disk that it is not a first start; it became a leader within half a
    second. Its peers can: they keep the incarnation they first took from it."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        first = Incarnation.new(rebuilt=False)
        assert _taken(disk.db, 2, first)
        assert _taken(disk.db, 2, first)  # a restart of node 2: its data kept
        assert _taken(disk.db, 3, Incarnation.new(rebuilt=False))  # another node
        bootstrapped = Incarnation.new(rebuilt=False)
        refusal = admit_peer(disk.db, 2, bootstrapped).refusal
        assert "node 2 came back with new data" in refusal and "--rebuild" in refusal
        assert _taken(disk.db, 2, first)  # the refused one was not taken
        rebuilt = Incarnation.new(rebuilt=True)
        assert _taken(disk.db, 2, rebuilt)
        assert not _taken(disk.db, 2, first)  # the rebuilt one is node 2 from now on
        assert (
            "sent no incarnation" in admit_peer(disk.db, 4, Incarnation(b"", rebuilt=False)).refusal
        )
    finally:
        disk.close()
    reopened = open_node_disk(tmp_path / "db", N1, first_start=False)  # kept, synced
    try:
        assert _taken(reopened.db, 2, rebuilt)
        assert not _taken(reopened.db, 2, bootstrapped)
    finally:
        reopened.close()


def test_each_start_begins_a_run_in_front_of_the_earlier_ones(tmp_path: Path) -> None:
    path = tmp_path / "db"
    open_node_disk(path, N1, first_start=True).close()
    runs: list[Incarnation] = []
    for _ in range(3):
        disk = open_node_disk(path, N1, first_start=False)
        try:
            incarnation = begin_run(disk.db)
            assert incarnation.token == node_incarnation(disk.db).token
            runs.append(incarnation)
        finally:
            disk.close()
    assert [(len(r.runs), r.run_count) for r in runs] == [(1, 1), (2, 2), (3, 3)]
    assert runs[2].runs[1:] == runs[1].runs and runs[1].runs[1:] == runs[0].runs  # synced
    disk = open_node_disk(path, N1, first_start=False)
    try:
        for _ in range(MAX_RUNS + 5):
            newest = begin_run(disk.db)
        assert len(newest.runs) == MAX_RUNS and newest.run_count == MAX_RUNS + 8  # bounded
    finally:
        disk.close()


def test_a_peer_put_back_from_an_older_copy_is_refused(tmp_path: Path) -> None:
    """Found by an operator trial: a node's directory put back from a copy made before its
    last restart lost an acknowledged write (its vote was one of the two), and the
    replicas then answered by which one led. Its peers keep the newest run they saw."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        token = Incarnation.new(rebuilt=False).token
        r1, r2, r3, r4 = b"run-1...", b"run-2...", b"run-3...", b"run-4..."

        def hello(*runs: bytes, count: int | None = None) -> Incarnation:
            return Incarnation(token, False, runs, len(runs) if count is None else count)

        assert _taken(disk.db, 2, hello(r1))
        assert _taken(disk.db, 2, hello(r1))  # a reconnect within the run
        assert _taken(disk.db, 2, hello(r2, r1))  # restarted since
        refusal = admit_peer(disk.db, 2, hello(r3, r1)).refusal  # the copy knew r1 only
        assert "node 2's data is older than when this node last saw it" in refusal
        assert "--rebuild" in refusal
        assert not _taken(disk.db, 2, hello(r1))  # its count is lower
        assert _taken(disk.db, 2, hello(r3, r2, r1))  # a run this node never saw: fine
        assert not _taken(disk.db, 2, hello(r4, r2, r1))  # r3 is gone
        # Found by review: restarted more often than it remembers while this node slept,
        # it was refused as old; it is taken unchecked now (node 4), unless this node
        # refused a fork of it since it took it last (node 2, found by review too).
        assert _taken(disk.db, 4, hello(r1))
        assert _taken(disk.db, 4, hello(r4, count=2 + MAX_RUNS))
        assert not _taken(disk.db, 2, hello(r4, count=3 + MAX_RUNS))
        # Found by review: a hello without runs (a version before them) of data whose runs
        # this node saw is a copy from before the upgrade, or an old version: refused.
        refusal = admit_peer(disk.db, 2, hello()).refusal
        assert "sent no runs, though this node saw runs of its data before" in refusal
        stranger = Incarnation(Incarnation.new(rebuilt=False).token, False)
        assert _taken(disk.db, 3, stranger)  # of a node never seen with runs: unchecked
    finally:
        disk.close()


def test_a_refused_copy_stays_refused_however_often_it_restarts(tmp_path: Path) -> None:
    """Found by review: a copy refused as old, restarted (a restart loop) more often than
    a hello's runs reach back, was taken unchecked. The newest refused fork is kept, and a
    hello that descends from it stays refused."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        token = Incarnation.new(rebuilt=False).token
        seen = (b"seen-r3.", b"seen-r2.", b"seen-r1.")
        assert _taken(disk.db, 2, Incarnation(token, False, seen, 3))
        runs: tuple[bytes, ...] = seen[1:]  # the copy was made during run 2
        for count in range(3, 3 + MAX_RUNS + 8):
            runs = ((count % 2**64).to_bytes(RUN_BYTES, "big"), *runs[: MAX_RUNS - 1])
            assert not _taken(disk.db, 2, Incarnation(token, False, runs, count)), count
        # The real node, restarted as often while this node did not see it, is taken.
        real = tuple(i.to_bytes(RUN_BYTES, "little") for i in range(MAX_RUNS))
        assert _taken(disk.db, 2, Incarnation(token, False, real, 3 + MAX_RUNS + 9))
    finally:
        disk.close()


def test_an_incarnation_a_rebuild_replaced_is_refused_if_it_comes_back(tmp_path: Path) -> None:
    """Found by review: a copy of an earlier rebuild's data, put back after a later
    rebuild, was taken again (a rebuilt incarnation is let in)."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        first = Incarnation.new(rebuilt=False)
        rebuilt, rebuilt_again = Incarnation.new(rebuilt=True), Incarnation.new(rebuilt=True)
        assert _taken(disk.db, 2, first)
        assert _taken(disk.db, 2, rebuilt)
        assert _taken(disk.db, 2, rebuilt_again)
        refusal = admit_peer(disk.db, 2, rebuilt).refusal
        assert "from before a rebuild that replaced it (this node saw" in refusal
        assert "--rebuild" in refusal
        assert not _taken(disk.db, 2, first)
        assert _taken(disk.db, 2, rebuilt_again)
    finally:
        disk.close()


def test_a_rebuild_another_node_saw_replaced_is_refused(tmp_path: Path) -> None:
    """Found by review: a copy of an earlier rebuild's data was refused only by the nodes
    that had seen the later rebuild replace it; one that never saw the earlier rebuild took
    it (rebuilt incarnations are let in). A rebuilt incarnation new to a node is now taken
    once no node that answers says a rebuild replaced it there; the nodes that do not
    answer do not hold a rebuild up."""
    mine = open_node_disk(tmp_path / "n1", N1, first_start=True)
    other = open_node_disk(tmp_path / "n3", NodeIdentity("c1", 3, "n3"), first_start=True)
    try:
        earlier, later = Incarnation.new(rebuilt=True), Incarnation.new(rebuilt=True)
        assert _taken(other.db, 2, earlier) and _taken(other.db, 2, later)
        assert retired_here(other.db, 2, token_digest(earlier.token))
        assert not retired_here(other.db, 2, token_digest(later.token))
        assert not retired_here(other.db, 4, token_digest(earlier.token))
        assert _taken(mine.db, 2, Incarnation.new(rebuilt=False))
        assert asks_others(mine.db, 2, earlier)  # new here: ask whether it was replaced
        refusal = admit_peer(mine.db, 2, earlier, PeerRecords(retired=[3])).refusal
        assert "from before a rebuild that replaced it (node 3 saw the rebuild)" in refusal
        assert "--rebuild" in refusal
        assert _taken(mine.db, 2, later, PeerRecords(unanswered=[3]))
        assert not asks_others(mine.db, 2, later)
    finally:
        mine.close()
        other.close()


def test_malformed_runs_are_told_apart() -> None:
    assert split_runs(b"") == ()
    assert split_runs(b"a" * 16) == (b"a" * 8, b"a" * 8)
    assert split_runs(b"a" * 9) is None
    assert split_runs(b"a" * 8 * (MAX_RUNS + 1)) is None


def _taken(
    db: Any, node_id: int, incarnation: Incarnation, others: PeerRecords = NO_OTHERS
) -> bool:
    admission = admit_peer(db, node_id, incarnation, others)
    assert not (admission.refusal == "" and admission.for_now)
    return admission.refusal == ""


def test_a_first_contact_is_taken_only_once_every_other_node_knew_no_other_data(
    tmp_path: Path,
) -> None:
    """Found by review: a node that never took a stream from a peer's earlier incarnation
    took a new one as the peer's first, so a peer wiped and started with --bootstrap
    counted there. Now a first contact asks every other node: one that recorded another
    incarnation refuses it for good, one that did not answer refuses it for now, and
    nothing is recorded until every node answered."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        fresh = Incarnation.new(rebuilt=False)
        earlier = token_digest(Incarnation.new(rebuilt=False).token)
        seen = token_digest(fresh.token)  # what a node that recorded it answers
        assert asks_others(disk.db, 2, fresh)
        knew = admit_peer(disk.db, 2, fresh, PeerRecords({3: earlier}, unanswered=[4]))
        assert "node 2 came back with new data" in knew.refusal and "node 3 knew" in knew.refusal
        assert not knew.for_now
        waiting = admit_peer(disk.db, 2, fresh, PeerRecords({3: seen}, unanswered=[4]))
        assert waiting.for_now and "node(s) 4 did not answer" in waiting.refusal
        other_cluster = "cluster id 'c1' does not match this node's cluster 'c2'"
        refused = PeerRecords({3: seen}, unanswered=[4], refusals={4: other_cluster})
        waiting = admit_peer(disk.db, 2, fresh, refused)
        assert waiting.for_now and f"node 4 refused the question: {other_cluster}" in (
            waiting.refusal
        )
        assert recorded_incarnation(disk.db, 2) is None and asks_others(disk.db, 2, fresh)
        assert _taken(disk.db, 2, fresh, PeerRecords({3: seen}))
        assert recorded_incarnation(disk.db, 2) == seen  # the token itself stays here
        assert not asks_others(disk.db, 2, fresh)  # known now: no question at a restart
        # Every other node answered and none recorded anything (a cluster's first start).
        assert _taken(disk.db, 3, Incarnation.new(rebuilt=False), PeerRecords(unanswered=()))
        # A rebuild made it: it votes only once Paxos rule 14 says so, whatever others knew
        # (they are asked only whether a later rebuild replaced it: the next test).
        rebuilt = Incarnation.new(rebuilt=True)
        assert _taken(disk.db, 5, rebuilt, PeerRecords({3: earlier}, unanswered=[4]))
        assert not asks_others(disk.db, 5, rebuilt)
    finally:
        disk.close()


def test_a_data_dir_that_cannot_hold_data_names_the_setting(tmp_path: Path) -> None:
    """Found by review: "[Errno 20] Not a directory: ..." named no setting."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(NodeDataUnusable, match=r"\(Not a directory\): check data_dir"):
        open_node_disk(not_a_dir / "n1" / "db", N1, first_start=True)


def test_a_data_directory_in_use_says_so_without_blaming_the_path(tmp_path: Path) -> None:
    """The in-use refusal is an OSError, and was wrapped as an unusable path whose hint
    sent the operator to check data_dir (found by the CLI review)."""
    path = tmp_path / "n1"
    first = open_node_disk(path, N1, first_start=True)
    try:
        with pytest.raises(DataDirInUse, match="is this node already running") as refused:
            open_node_disk(path, N1, first_start=False)
        assert "check data_dir" not in str(refused.value)
    finally:
        first.close()


def four_node_map(split_points: list[bytes], address: str = "h4:1") -> ShardMap:
    nodes = [
        NodeAddress(node_id=i, name=f"n{i}", client_addr=f"h{i}:1", peer_addr=f"h{i}:1")
        for i in (1, 2, 3)
    ]
    nodes.append(NodeAddress(node_id=4, name="n4", client_addr=address, peer_addr=address))
    return bootstrap(nodes, split_points, 3)


def test_a_config_whose_map_differs_from_the_first_starts_is_refused(tmp_path: Path) -> None:
    """Found by review: a node that hosts no meta replica (the fourth of a cluster) ran on a
    moved split point, applied writes outside its ranges as invalid and lost them."""
    path = tmp_path / "db"
    first = four_node_map([b"j", b"r"])
    open_node_disk(path, N1, first_start=True, cluster_map=first).close()
    open_node_disk(path, N1, first_start=False, cluster_map=first).close()
    for changed, named in [
        (four_node_map([b"k", b"r"]), "[-inf, k)"),
        (four_node_map([b"j", b"k", b"r"]), "[k, r)"),
        (four_node_map([b"j", b"r"], address="elsewhere:1"), "n4 elsewhere:1"),
    ]:
        with pytest.raises(ConfigMismatch, match="cannot change after the first start") as err:
            open_node_disk(path, N1, first_start=False, cluster_map=changed)
        assert named in str(err.value)
    open_node_disk(path, N1, first_start=False, cluster_map=first).close()  # nothing changed


def test_data_from_before_the_map_record_gets_one_at_its_next_start(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first = four_node_map([b"j", b"r"])
    open_node_disk(path, N1, first_start=True).close()  # no map recorded
    open_node_disk(path, N1, first_start=False, cluster_map=first).close()
    with pytest.raises(ConfigMismatch):
        open_node_disk(path, N1, first_start=False, cluster_map=four_node_map([b"k"]))


def _run(i: int) -> bytes:
    return i.to_bytes(RUN_BYTES, "big")


def _as_the_runtime_asks(db: Any, other_db: Any, node_id: int, inc: Incarnation) -> Admission:
    """NodeRuntime._admit_peer with one other node (`other_db`) answering its question."""
    if not asks_others(db, node_id, inc):
        return admit_peer(db, node_id, inc)
    known = recorded_incarnation(other_db, node_id)
    retired = [3] if retired_here(other_db, node_id, token_digest(inc.token)) else []
    return admit_peer(db, node_id, inc, PeerRecords({3: known} if known else {}, retired=retired))


@pytest.mark.parametrize("put_back", ["earlier rebuild", "first data"])
def test_a_copy_of_replaced_data_is_refused_by_a_node_that_knew_it_as_current(
    tmp_path: Path, put_back: str
) -> None:
    """Found by review: node 1 was down while node 2 was rebuilt, and took a copy of node
    2's replaced data back (it knew that incarnation as current, so it asked nobody); the
    copy and node 1 were a majority. A run a node has not taken is now asked about too."""
    mine = open_node_disk(tmp_path / "n1", N1, first_start=True)
    other = open_node_disk(tmp_path / "n3", NodeIdentity("c1", 3, "n3"), first_start=True)
    try:
        seen = (_run(3), _run(2), _run(1))
        first = Incarnation.new(rebuilt=False)
        replaced = Incarnation(Incarnation.new(rebuilt=True).token, True, seen, 3)
        if put_back == "first data":
            replaced = Incarnation(first.token, False, seen, 3)
        for db in (mine.db, other.db):
            assert _taken(db, 2, first)
            assert _taken(db, 2, replaced)
        assert _taken(other.db, 2, Incarnation.new(rebuilt=True))  # node 1 is down
        copy = replace(replaced, runs=(_run(40), *seen), run_count=4)
        assert admit_peer(other.db, 2, copy).refusal
        assert asks_others(mine.db, 2, copy)
        refusal = _as_the_runtime_asks(mine.db, other.db, 2, copy).refusal
        assert "from before a rebuild that replaced it (node 3 saw the rebuild)" in refusal
        assert not asks_others(mine.db, 2, replace(replaced, runs=seen, run_count=3))
    finally:
        mine.close()
        other.close()


def test_a_refused_fork_stays_refused_after_the_peer_slept_through_max_runs_restarts(
    tmp_path: Path,
) -> None:
    """Found by review: a peer that refused a copy, then missed more than MAX_RUNS of its
    restarts, took it unchecked. While the newest fork it refused is newer than the run it
    took last, a hello that cannot tell which it descends from is refused."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        token = Incarnation.new(rebuilt=False).token
        seen = (b"seen-r3.", b"seen-r2.", b"seen-r1.")
        assert _taken(disk.db, 2, Incarnation(token, False, seen, 3))
        fork = (b"fork-r3.", *seen[1:])
        assert not _taken(disk.db, 2, Incarnation(token, False, fork, 3))
        runs = fork
        for count in range(4, 4 + MAX_RUNS + 1):  # restarts this node did not see
            runs = (_run(count), *runs[: MAX_RUNS - 1])
        assert not _taken(disk.db, 2, Incarnation(token, False, runs, 3 + MAX_RUNS + 1))
    finally:
        disk.close()


class _CountingDb:
    """A database that counts its single (synced) puts."""

    def __init__(self, db: Any) -> None:
        self._db, self.puts = db, 0

    def put(self, *args: Any) -> None:
        self.puts += 1
        self._db.put(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_refused_copy_redialling_writes_its_refusal_once(tmp_path: Path) -> None:
    """Found by review: a refused link redials about once a second, and each hello wrote
    the same refused run again, synced."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        token = Incarnation.new(rebuilt=False).token
        seen = (b"seen-r3.", b"seen-r2.", b"seen-r1.")
        assert _taken(disk.db, 2, Incarnation(token, False, seen, 3))
        fork = Incarnation(token, False, (b"fork-r4.", *seen[1:]), 4)
        db = _CountingDb(disk.db)
        for _ in range(10):
            assert admit_peer(db, 2, fork).refusal
        assert db.puts == 1
    finally:
        disk.close()


def test_a_fork_refused_before_the_run_taken_last_does_not_refuse_the_node_for_good(
    tmp_path: Path,
) -> None:
    """Found by review: a copy refused at a higher count than the real node's next runs,
    taken after it, then more than MAX_RUNS restarts unseen: the node was refused for
    good. A run taken that descends from the one taken before clears the refused fork."""
    disk = open_node_disk(tmp_path / "db", N1, first_start=True)
    try:
        token = Incarnation.new(rebuilt=False).token

        def run(tag: bytes, i: int) -> bytes:
            return tag + i.to_bytes(RUN_BYTES - 1, "big")

        def hello(runs: list[tuple[bytes, int]]) -> Incarnation:
            return Incarnation(token, False, tuple(run(t, i) for t, i in runs), runs[0][1])

        history = [(b"L", i) for i in range(100, 0, -1)]
        assert _taken(disk.db, 2, hello(history))
        copy = [(b"C", i) for i in range(105, 90, -1)] + history[10:]
        assert not _taken(disk.db, 2, hello(copy))
        for n in (101, 102, 103):
            history = [(b"L", n), *history]
            assert _taken(disk.db, 2, hello(history))
        for n in range(104, 104 + MAX_RUNS + 3):  # this node was down meanwhile
            history = [(b"L", n), *history][:MAX_RUNS]
        assert _taken(disk.db, 2, hello(history))
    finally:
        disk.close()
