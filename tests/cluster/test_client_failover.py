"""Real processes: the transaction client fails over from a frozen (SIGSTOPped) shard leader.

Found by review: every read and single-key write sent to a frozen leader waited out its
whole `timeout_s` (DeadlineExceeded; `run` does not retry it), although the group had a new
leader within a fraction of a second. Now a read waits one attempt timeout there, then goes
to another replica (txn.client rule 6, txn.resend); a write already sent to the frozen node
is never re-sent (OutcomeUnknown at its deadline), but the node's silence moves the leader
guess, so the requests after it go to the new leader (router.client). The in-process
version with a fake cluster is tests/unit/txn/test_client_silent_leader.py.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import pytest

import txn
from shard.cluster import LocalCluster, wait_for
from tests.cluster.raw_txn import prepare_in_one_group

pytestmark = pytest.mark.cluster

GROUP = 1
PREFIX = b"b-"  # group 1 of the default 3-shard layout (split points "j", "r")
TIMEOUT_S = 10.0
ATTEMPT_S = 1.0
WITHIN_S = 3.0  # each operation after the freeze ends this soon, well inside TIMEOUT_S


def test_reads_and_new_writes_fail_over_from_a_frozen_leader_within_the_attempt_timeout(
    cluster: LocalCluster,
) -> None:
    assert cluster.group_of(PREFIX) == GROUP
    # Leadership hands over to each group's preferred node shortly after the start: let it,
    # so that the only leader change in the test is the one the freeze causes.
    cluster.wait_settled(deadline_s=15.0)
    keys = [PREFIX + b"%d" % i for i in range(4)]
    timings: dict[str, float] = {}
    with (
        txn.Client(cluster.env_value(), timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client,
        txn.Client(
            cluster.env_value(), timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S
        ) as hurried,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        for key in keys:
            client.put(key, b"v0")
        old = cluster.wait_for_leader(GROUP)
        routing = client.async_client.routing.routing
        assert cluster.name_of(routing.leader_for(GROUP) or 0) == old  # the client's guess
        assert hurried.get(keys[1]) == b"v0"
        guess = hurried.async_client.routing.routing.leader_for(GROUP)
        assert cluster.name_of(guess or 0) == old

        def timed(what: str, op: Callable[[], object]) -> None:
            started = time.monotonic()
            op()
            timings[what] = took = time.monotonic() - started
            assert took < WITHIN_S, f"{what} took {took:.2f} s (timings so far: {timings})"

        cluster.pause(old)
        try:
            # Written to the frozen leader: never re-sent, so OutcomeUnknown at its deadline.
            stuck = pool.submit(client.put, keys[0], b"lost?", timeout_s=4.0)
            # A call's own deadline, shorter than the attempt timeout, ends it (another
            # client: its silence would move this one's leader guess before the get below).
            started = time.monotonic()
            with pytest.raises(txn.DeadlineExceeded):
                hurried.run_within(0.5, lambda tx: tx.get(keys[1]))
            timings["run_within(0.5)"] = took = time.monotonic() - started
            assert took < 0.5 + 1.0, f"run_within(0.5) took {took:.2f} s"
            timed("first get", lambda: client.get(keys[1]) == b"v0" or pytest.fail("value"))
            # The stuck put's silence (or the get's timeout) moved the client's guess.
            assert cluster.name_of(routing.leader_for(GROUP) or 0) != old
            timed("put after the timeout", lambda: client.put(keys[2], b"v1"))
            for i in range(3):
                timed(f"get {i}", lambda: client.get(keys[2]) == b"v1" or pytest.fail("value"))

            def transaction() -> None:
                with client.transaction() as tx:
                    assert tx.get(keys[1]) == b"v0"
                    assert tx.get(keys[3], for_update=True) == b"v0"
                    assert [k for k, _ in tx.scan(PREFIX, PREFIX + b"\xff")] == keys
                    tx.put(keys[3], b"v2")

            timed("transaction", transaction)
            timed("snapshot", lambda: client.snapshot().get(keys[3]) == b"v2" or pytest.fail())
            with pytest.raises(txn.OutcomeUnknown):
                stuck.result(timeout=TIMEOUT_S)
            new = cluster.wait_for_leader(GROUP, not_on=old, deadline_s=5.0)
        finally:
            cluster.resume(old)
    print(f"\nleader {old} frozen, {new} took over; timings: {timings}")
    wait_for(
        lambda: cluster.status(old, timeout_s=1.0).node_name == old,
        10.0,
        f"{old} to answer after SIGCONT",
    )


def test_a_lease_renewal_fails_over_from_a_frozen_leader(cluster: LocalCluster) -> None:
    """Found by an application trial: a renewal (`cas(touch=True)`) sent to a frozen leader
    waited its whole timeout, and a lease shorter than that ran out although the group had
    a new leader within 0.3 s. A touch applied twice changes nothing but its deadline, so
    it is re-sent as a read is; the lease and its token are kept."""
    cluster.wait_settled(deadline_s=15.0)
    key = PREFIX + b"lease"
    with txn.Client(
        cluster.env_value(), timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S
    ) as client:
        token = client.cas(key, expect_absent=True, new_value=b"me", ttl_s=5.0).version
        old = cluster.wait_for_leader(GROUP)
        cluster.pause(old)
        try:
            started = time.monotonic()
            renewed = client.cas(key, expected_version=token, touch=True, ttl_s=5.0)
            took = time.monotonic() - started
        finally:
            cluster.resume(old)
        assert renewed.succeeded and renewed.version == token, renewed
        assert took < WITHIN_S, f"the renewal took {took:.2f} s"
        assert client.get_versioned(key) == (b"me", token)


@pytest.mark.parametrize("frozen", ["coordinator", "participant"])
def test_an_in_doubt_intent_goes_soon_after_the_other_groups_leader_froze(
    cluster: LocalCluster, frozen: str
) -> None:
    """A PREPARE logged in group 2 alone, its other group's leader frozen: the node duties
    that settle it (a participant's recovery Decide to its coordinator group 3, or a
    coordinator's Prevent to its participant group 3) are idempotent, so the node gives
    them up at the silent leader after an attempt timeout of its client (1.25 s) and the
    next round reaches the new leader. Found by an application trial: they waited out the
    node's whole request timeout (5 s) at the frozen leader while the in-doubt intent held
    its key (6.2 s here; 3.1 s since)."""
    cluster.wait_settled(deadline_s=15.0)
    other = cluster.wait_for_leader(3)
    assert other is not None and cluster.wait_for_leader(2) != other
    key = b"m-in-doubt"  # group 2
    assert cluster.group_of(key) == 2
    coordinator = 3 if frozen == "coordinator" else 2
    with txn.Client(cluster.env_value(), timeout_s=TIMEOUT_S) as client:
        # The same settled once while group 3's leader is up: group 2's leader then asked
        # it itself, so its node's leader guess for group 3 is the node about to freeze
        # (a client's commit does not do that: it resolves its transaction itself).
        prepare_in_one_group(cluster, b"m-warm", coordinator=coordinator)
        client.put(b"m-warm", b"1")
        prepare_in_one_group(cluster, key, coordinator=coordinator)
        cluster.pause(other)
        try:
            started = time.monotonic()
            client.put(key, b"after")  # refused while the intent lasts: re-sent until then
            took = time.monotonic() - started
            new = cluster.wait_for_leader(3, not_on=other, deadline_s=5.0)
        finally:
            cluster.resume(other)
        assert client.get(key) == b"after"
    print(f"\ngroup 3's leader {other} frozen, {new} took over; the intent went in {took:.2f} s")
    # resolve_after (1 s) + the request timeout (5 s) before; well under it now.
    assert took < 5.0, f"the in-doubt intent held the key {took:.2f} s"
