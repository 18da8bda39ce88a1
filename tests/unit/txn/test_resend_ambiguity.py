"""`txn.resend.send_idempotent` judges what a lost copy leaves ambiguous (module docstring:
"then a refusal of a later copy, and the deadline, are `_NoAnswer(ambiguous=True)`, never
'nothing was applied'"). Through the fake cluster the routing client's own copies hide most
of these paths (a copy refused while the first waits is never raised), so they are checked
here against a scripted client: each `_send` raises (or returns) the next scripted outcome,
and `_pause` never sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import kv_pb2 as kv
from router.errors import UnknownGroup, WrongShard
from txn import DeadlineExceeded, InvalidArgument, OutcomeUnknown, Unavailable
from txn.resend import _NoAnswer, send_idempotent

REQUEST = kv.Request(commit_one_phase=kv.CommitOnePhaseRequest(txn_id=b"t" * 16))
ANSWER = kv.Response(commit_one_phase=kv.CommitOnePhaseResponse(commit_ts=7))


class ScriptedClient:
    """What `send_idempotent` uses of an AsyncClient; `_send` plays `script` in order."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.sent = 0

    async def _ready(self, deadline: float | None = None) -> None:
        return None

    async def _send(self, request: kv.Request, **kwargs: Any) -> kv.Response:
        assert kwargs["idempotent"] and kwargs["write"]
        self.sent += 1
        outcome = self.script.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _pause(self, backoff: Any, attempt: int, deadline: float) -> bool:
        return bool(self.script)  # "the deadline leaves no time" once the script is played


def send(client: ScriptedClient) -> kv.Response:
    async def main() -> kv.Response:
        deadline = asyncio.get_running_loop().time() + 60.0
        return await send_idempotent(
            client,  # type: ignore[arg-type]
            REQUEST,
            group_id=1,
            write=True,
            deadline=deadline,
            passthrough=(kv.CONFLICT,),
        )

    return asyncio.run(main())


def lost() -> OutcomeUnknown:
    return OutcomeUnknown("no answer from n1 (silent); it may or may not have been applied")


def test_a_lost_copy_stays_ambiguous_when_later_copies_find_no_leader() -> None:
    """A copy that may have been applied, then only "no leader" until the deadline: the
    outcome is unknown, not "nothing was applied" (which `run` would retry, applying the
    commit twice)."""
    client = ScriptedClient(lost(), Unavailable("no leader"), Unavailable("still no leader"))
    with pytest.raises(_NoAnswer) as info:
        send(client)
    assert info.value.ambiguous
    assert client.sent == 3


@pytest.mark.parametrize(
    "refusal",
    [
        WrongShard(b"", 2, 1),
        UnknownGroup(1, 2),
        InvalidArgument("ts too far ahead of this leader's clock (node rule 9)"),
    ],
    ids=["wrong-shard", "unknown-group", "invalid-argument"],
)
def test_a_refused_copy_after_a_lost_one_is_ambiguous(refusal: Exception) -> None:
    """A later copy's refusal says nothing of the earlier copy that may have been applied."""
    client = ScriptedClient(lost(), refusal)
    with pytest.raises(_NoAnswer) as info:
        send(client)
    assert info.value.ambiguous
    assert client.sent == 2
    # The refusal itself, or (for a map change) an Unavailable that says so.
    assert info.value.last is refusal or isinstance(info.value.last, Unavailable)


@pytest.mark.parametrize(
    "refusal",
    [WrongShard(b"", 2, 1), InvalidArgument("malformed")],
    ids=["wrong-shard", "invalid-argument"],
)
def test_a_refusal_of_the_only_copy_is_raised_as_it_is(refusal: Exception) -> None:
    """No copy may have been applied: the caller may re-plan (WrongShard) or report the
    refusal as "nothing written"."""
    with pytest.raises(type(refusal)):
        send(ScriptedClient(refusal))


def test_no_leader_is_re_sent_and_an_answer_wins() -> None:
    """Unavailable and a lost answer are re-sent; the first answer is the result."""
    client = ScriptedClient(Unavailable("no leader"), lost(), ANSWER)
    assert send(client) == ANSWER
    assert client.sent == 3


def test_no_answer_without_a_lost_copy_is_not_ambiguous() -> None:
    client = ScriptedClient(Unavailable("no leader"), DeadlineExceeded("gave up"))
    with pytest.raises(_NoAnswer) as info:
        send(client)
    assert not info.value.ambiguous
    assert isinstance(info.value.last, DeadlineExceeded)
