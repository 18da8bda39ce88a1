"""A lease renewal (`cas(touch=True)`) is re-sent as reads are (txn.resend): found by
review, a copy lost at a silent leader followed by a later copy's refusal (an intent on
the key) was reported as a `Conflict`, "nothing was written", though the lost copy may
have renewed the lease."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import txn
from router import kv_pb2 as kv


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
