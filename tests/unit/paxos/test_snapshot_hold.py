"""Rule 11's snapshot hold: a leader keeps the log a follower needs after the snapshot it
sent it, so the follower gets back onto the log (found by review: compacting while the
snapshot travelled and was restored made the follower need another one, round after round,
under sustained writes), but never for a follower that does not come back, nor past the
memory cap."""

from __future__ import annotations

from test_replica_paths import Group, between

from paxos.messages import InstallSnapshot


def _writes(g: Group, count: int, start: int) -> int:
    """`count` writes chosen by nodes 1 and 2 alone; returns the next command number."""
    for n in range(start, start + count):
        g.r(1).propose(b"c%d" % n)
        g.stabilize(keep=between(1, 2))
    return start + count


def _snapshot_for_node3(g: Group, t: float) -> tuple[list[InstallSnapshot], float]:
    """Heartbeats until node 3 asks to catch up and the leader answers with a snapshot;
    returns the snapshot messages (held back, not delivered) and the time reached."""
    held: list[InstallSnapshot] = []
    for _ in range(6):
        t += 0.4  # past the leader's per-peer snapshot throttle and node 3's retry timer
        g.tick_all(t)
        g.process_all()
        for _ in range(10):
            held += [m for m in g.inflight if isinstance(m, InstallSnapshot)]
            g.inflight = [m for m in g.inflight if not isinstance(m, InstallSnapshot)]
            if not g.inflight:
                break
            g.deliver()
            g.process_all()
        if held:
            return held, t
    return held, t


def _group(**extra: object) -> Group:
    g = Group(3, fast=(1,), compact_threshold=4, compact_keep=1, max_batch_count=1, **extra)
    g.elect(1)
    return g


def test_a_follower_rejoins_the_log_after_one_snapshot_under_sustained_writes() -> None:
    g = _group()
    n = _writes(g, 12, 0)
    assert g.r(1).status().log_start > 1  # compacted: node 3 needs a snapshot
    snapshots: list[int] = []
    t = 1.0
    for _round in range(6):
        held, t = _snapshot_for_node3(g, t)
        if not held:
            break  # node 3 follows the log
        snapshots.append(held[0].index)
        # The snapshot travels and is restored (seconds for a large shard) while the writes
        # go on: more slots than the leader keeps after a compaction.
        n = _writes(g, 6, n)
        assert g.r(1).status().log_start <= held[0].index + 1  # held for node 3
        g.inflight.extend(held)
        g.stabilize(keep=lambda m: isinstance(m, InstallSnapshot) or 3 not in (m.src, m.dst))
        assert g.r(3).applied_index == held[0].index
    assert len(snapshots) == 1, f"node 3 needed snapshots at {snapshots}"
    g.stabilize()
    assert g.r(3).applied_index == g.r(1).applied_index


def test_the_hold_ends_for_a_follower_that_does_not_come_back() -> None:
    g = _group(snapshot_hold_s=2.0)
    n = _writes(g, 12, 0)
    held, t = _snapshot_for_node3(g, 1.0)
    index = held[0].index
    n = _writes(g, 6, n)
    assert g.r(1).status().log_start <= index + 1
    # Node 3 never installs it (dead); past the hold the leader compacts as usual.
    for _ in range(50):  # 2.5 s of heartbeats between nodes 1 and 2
        t += 0.05
        for i in (1, 2):
            g.tick(i, t)
        g.stabilize(keep=between(1, 2))
    _writes(g, 6, n)
    assert g.r(1).status().log_start > index + 1


def test_the_hold_gives_way_to_the_memory_cap() -> None:
    g = _group(compact_threshold_bytes=200)  # a few slots' worth: the cap is 400 bytes
    n = _writes(g, 12, 0)
    held, _t = _snapshot_for_node3(g, 1.0)
    _writes(g, 12, n)
    assert g.r(1).status().log_start > held[0].index + 1


class _BuildingGroup(Group):
    """As a node drives it: a snapshot request starts a build at the applied index, and the
    driver calls send_snapshot only when the build's paced steps are done (the harness's
    Group answers in the same Ready)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.builds: list[tuple[int, int, bytes]] = []

    def process(self, i: int) -> object:
        replica = self.r(i)
        captured: list[tuple[int, int, bytes]] = []
        replica.send_snapshot = lambda peer, index, data: captured.append((peer, index, data))  # type: ignore[method-assign]
        try:
            return super().process(i)
        finally:
            del replica.send_snapshot
            self.builds += captured


def test_the_hold_starts_with_the_request_not_when_a_paced_build_is_sent() -> None:
    """Found by review: held from send_snapshot only, the log was compacted past the
    build's index while a large shard's snapshot was built in steps."""
    g = _BuildingGroup(3, fast=(1,), compact_threshold=4, compact_keep=1, max_batch_count=1)
    g.elect(1)
    n = _writes(g, 12, 0)
    t = 1.0
    for _ in range(6):
        t += 0.4
        g.tick_all(t)
        g.stabilize(keep=lambda m: not isinstance(m, InstallSnapshot))
        if g.builds:
            break
    peer, index, data = g.builds.pop(0)
    _writes(g, 6, n)  # during the build
    g.r(1).send_snapshot(peer, index, data)
    assert g.r(1).status().log_start <= index + 1


def test_a_hold_the_log_was_compacted_past_does_not_stop_compaction() -> None:
    """Found by review: once the memory cap compacted past a follower's floor, the hold kept
    nothing useful, yet stopped every compaction until it expired (up to 30 s)."""
    g = _group(compact_threshold_bytes=1000)  # the cap: 2,000 bytes
    n = _writes(g, 12, 0)
    held, _t = _snapshot_for_node3(g, 1.0)
    for k in range(6):  # large values: past the cap, the log is compacted past the floor
        g.r(1).propose(b"x" * 600 + b"%d" % k)
        g.stabilize(keep=between(1, 2))
    assert g.r(1).status().log_start > held[0].index + 1
    _writes(g, 15, n)  # small values: compaction by slot count goes on
    status = g.r(1).status()
    assert status.applied_index - status.log_start < 8, status
    assert not g.r(1)._snapshot_holds  # the useless hold is gone, not waiting out its 30 s


def test_the_hold_ends_once_the_follower_acknowledged_it_is_back_on_the_log() -> None:
    """Rule 11's hold keeps the log from the follower's acknowledged watermark + 1 once that is
    above the snapshot's index, and ends once the follower is back on the log: a follower that
    installed its snapshot and keeps up must not pin the leader's log at the snapshot's index
    for `snapshot_hold_s`."""
    g = _group()
    _writes(g, 12, 0)
    held, _t = _snapshot_for_node3(g, 1.0)
    index = held[0].index
    g.inflight.extend(held)
    g.stabilize()  # node 3 installs it and catches up from the log
    assert g.r(3).applied_index == g.r(1).applied_index
    for k in range(6):  # writes go on with every node; each heartbeat's ack reports node 3
        g.r(1).propose(b"after%d" % k)
        g.stabilize()
        g.heartbeat(1)
    status = g.r(1).status()
    assert status.log_start > index + 1, status
    assert status.applied_index - status.log_start < 4, status  # compacting as usual


def _until_a_build(g: _BuildingGroup, t: float) -> float:
    for _ in range(6):
        t += 0.4  # past the leader's per-peer snapshot throttle and node 3's retry timer
        g.tick_all(t)
        g.stabilize(keep=lambda m: not isinstance(m, InstallSnapshot))
        if g.builds:
            return t
    raise AssertionError("no snapshot request")


def test_a_repeated_request_keeps_the_hold_at_the_first_builds_index() -> None:
    """Rule 11's hold under a repeated snapshot request: the driver may still be building the
    snapshot the first request asked for (at the applied index of that time) when the follower
    asks again; the hold keeps the lower index, so the first build still finds the log it
    needs after it, and the follower gets back onto the log after one snapshot."""
    g = _BuildingGroup(3, fast=(1,), compact_threshold=4, compact_keep=1, max_batch_count=1)
    g.elect(1)
    n = _writes(g, 12, 0)
    t = _until_a_build(g, 1.0)
    first = g.builds.pop(0)  # a long build starts at this index
    n = _writes(g, 6, n)
    t = _until_a_build(g, t)  # node 3 asks again meanwhile: a second build starts
    second = g.builds.pop(0)
    assert second[1] > first[1]
    _writes(g, 6, n)
    peer, index, data = first  # the first build is done and sent
    g.r(1).send_snapshot(peer, index, data)
    assert g.r(1).status().log_start <= index + 1
