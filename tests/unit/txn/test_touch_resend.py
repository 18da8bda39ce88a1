"""A lease renewal (`cas(touch=True)`) is re-sent as reads are (txn.resend): found by
review, a copy lost at a silent leader followed by a later copy's refusal (an intent on
the key) was reported as a `Conflict`, "nothing was written", though the lost copy may
have renewed the lease."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import txn
from router import kv_pb2 as kv
from tests.unit.router.test_client_routing import (
    BREAK,
    DROP,
    FakeCluster,
    FakeNode,
    Later,
    error_response,
    with_cluster,
)


def _lost() -> txn.OutcomeUnknown:
    return txn.OutcomeUnknown("no answer from n1 (silent); it may or may not have been applied")


def _conflict() -> kv.Response:
    return kv.Response(error=kv.Error(code=kv.CONFLICT, message="an intent on the key"))


def _renew(script: list[Any]) -> txn.CasResult:
    """A renewal whose copies meet `script` in turn (then no leader), on a client whose
    connection and pauses are stubbed."""

    async def main() -> txn.CasResult:
        client = txn.AsyncClient(["127.0.0.1:1"], timeout_s=5.0)

        async def ready(deadline: float | None = None) -> None:
            return None

        async def send(request: kv.Request, **kwargs: Any) -> kv.Response:
            met = script.pop(0) if script else txn.Unavailable("no leader")
            if isinstance(met, BaseException):
                raise met
            return met  # type: ignore[no-any-return]

        async def pause(*args: Any) -> bool:
            return bool(script)

        client._ready, client._send, client._pause = ready, send, pause  # type: ignore[method-assign]
        try:
            return await client.cas(b"k", expected_version=7, touch=True, ttl_s=5.0)
        finally:
            await client.close()

    return asyncio.run(main())


@pytest.mark.parametrize("then", ["unavailable", "deadline"])
def test_a_renewal_whose_copy_was_lost_is_never_reported_as_not_written(then: str) -> None:
    script: list[Any] = [_lost(), _conflict()]
    if then == "unavailable":
        script.append(txn.Unavailable("no leader"))
    with pytest.raises(txn.OutcomeUnknown, match="a copy may have been applied") as info:
        _renew(script)
    assert "nothing was written" not in str(info.value)  # the refusal was a later copy's
    if then == "deadline":  # the refusal is named as the Conflict says it, without advice
        assert "refused: conflict in the write phase: an intent on the key (" in str(info.value)


def test_a_renewal_refused_with_no_copy_lost_is_a_conflict() -> None:
    with pytest.raises(txn.Conflict):
        _renew([_conflict()])


def _renewed(request: kv.Request) -> kv.Response:
    return kv.Response(
        id=request.id, cas=kv.CasResponse(succeeded=True, version=7, expires_at=10**18)
    )


@pytest.mark.parametrize(
    "second_copy", ["applied-at-once", "applied-later", "unanswered", "lost", "refused-too"]
)
def test_a_refused_copy_leaves_a_renewal_open_while_another_is_parked(second_copy: str) -> None:
    """Found by review: a renewal that waited an attempt timeout at a live leader gets a
    second copy there; the first copy's wait for an intent runs out and it is refused
    CONFLICT while the second is still parked, to be applied once the intent goes. The
    client took the refusal and said nothing was written. It now waits for the other
    copy: its answer wins, and without one the outcome is unknown. Both copies refused
    (and the re-sends meeting an intent until the deadline) is a plain Conflict, as with
    one copy."""
    touches: list[kv.Request] = []

    def hook(node: FakeNode, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "cas":
            return None
        touches.append(request)
        if len(touches) == 1:
            return DROP  # parked behind a prepared transaction's intent (lock-wait rule L4)
        if len(touches) > 2:
            return error_response(request, kv.CONFLICT)  # a later transaction's intent
        refused = error_response(touches[0], kv.CONFLICT)  # its wait ran out
        if second_copy == "applied-at-once":
            return [refused, _renewed(request)]
        if second_copy == "applied-later":
            return [refused, Later(_renewed(request), 0.2)]
        if second_copy == "refused-too":
            return [refused, error_response(request, kv.CONFLICT)]
        if second_copy == "lost":
            return [refused, BREAK]  # the stream fails with the second copy unanswered
        return [refused]  # still parked when the deadline comes

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        cluster.store[b"a"] = (b"me", 7)
        cluster.hook = hook
        async with txn.AsyncClient(cluster.seeds(), timeout_s=2.0, attempt_timeout_s=0.3) as c:
            renewal = c.cas(b"a", expected_version=7, touch=True, ttl_s=10)
            if second_copy in ("unanswered", "lost"):
                with pytest.raises(txn.OutcomeUnknown) as info:
                    await renewal
                assert info.value.maybe_committed
                assert "nothing was written" not in str(info.value)
            elif second_copy == "refused-too":
                with pytest.raises(txn.Conflict) as refused:
                    await renewal
                assert not refused.value.maybe_committed
            else:
                renewed = await renewal
                assert renewed.succeeded and renewed.version == 7
        # The second copy went to the same, live node; only refusals and lost copies are
        # sent again.
        assert (len(touches) > 2) == (second_copy in ("lost", "refused-too")), len(touches)

    scenario()


def test_a_leader_frozen_after_refusing_the_first_copy_is_left_for_the_new_one() -> None:
    """Found by review of the test above's fix: the first copy refused, the leader froze
    (SIGSTOP) with the second copy parked, and another replica took over. The wait for
    that copy watched nothing, so it ran to the deadline and ended OutcomeUnknown; the
    copies are watched for silence too now, and the renewal goes to the new leader within
    an attempt timeout or two, as before the wait (a renewal waiting its whole timeout
    at a frozen leader lost its lease: txn/resend.py)."""
    touches: list[tuple[int, kv.Request]] = []
    frozen: set[int] = set()

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        cluster.store[b"a"] = (b"me", 7)
        group = cluster.map.locate(b"a").group_id
        old = cluster.leaders[group]

        def hook(node: FakeNode, request: kv.Request) -> Any:
            if node.node_id in frozen:
                return DROP
            if request.WhichOneof("op") != "cas":
                return None
            touches.append((node.node_id, request))
            if node.node_id != old:
                return _renewed(request)  # the new leader renews at once
            if len(touches) == 1:
                return DROP  # parked behind an intent
            frozen.add(old)  # the first copy's wait ran out; the leader freezes
            cluster.silent.add(old)
            cluster.leaders[group] = next(n for n in cluster.nodes if n != old)
            return [error_response(touches[0][1], kv.CONFLICT)]

        cluster.hook = hook
        async with txn.AsyncClient(cluster.seeds(), timeout_s=4.0, attempt_timeout_s=0.3) as c:
            started = time.monotonic()
            renewed = await c.cas(b"a", expected_version=7, touch=True, ttl_s=10)
            took = time.monotonic() - started
        assert renewed.succeeded and took < 2.0, took
        assert [n for n, _ in touches][-1] != old

    scenario()


def test_a_renewal_whose_first_copy_was_lost_is_never_said_to_have_written_nothing() -> None:
    """Found by review: with the first copy lost on a broken stream and every later copy
    refused UNAVAILABLE, the last copy's 'gave up ...; nothing was written' was quoted in
    the OutcomeUnknown that says a copy may have been applied."""
    touches: list[kv.Request] = []

    def hook(node: FakeNode, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "cas":
            return None
        touches.append(request)
        return BREAK if len(touches) == 1 else error_response(request, kv.UNAVAILABLE)

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        cluster.store[b"a"] = (b"me", 7)
        cluster.hook = hook
        async with txn.AsyncClient(cluster.seeds(), timeout_s=1.0, attempt_timeout_s=0.3) as c:
            with pytest.raises(txn.OutcomeUnknown, match="a copy may have been applied") as info:
                await c.cas(b"a", expected_version=7, touch=True, ttl_s=10)
        assert "nothing was written" not in str(info.value)

    scenario()
