"""Every Paxos message survives encode/decode; garbage from a peer is a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxos import Ballot
from paxos.codec import MalformedMessage, decode, encode
from paxos.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    SlotValue,
)

ints = st.integers(min_value=0, max_value=2**63)
ids = st.integers(min_value=1, max_value=2**32)
ballots = st.builds(Ballot, ints, ids)
values = st.lists(st.binary(max_size=20), max_size=4).map(tuple)
slot_values = st.lists(st.builds(SlotValue, slot=ints, value=values), max_size=4).map(tuple)
common = dict(src=ids, dst=ids, ballot=ballots)

messages = st.one_of(
    st.builds(PreVote, seq=ints, **common),
    st.builds(PreVoteReply, seq=ints, granted=st.booleans(), rebuilding=st.booleans(), **common),
    st.builds(Prepare, from_slot=ints, **common),
    st.builds(
        Promise,
        accepted=st.lists(
            st.builds(AcceptedEntry, slot=ints, ballot=ballots, value=values, chosen=st.booleans()),
            max_size=4,
        ).map(tuple),
        chosen_watermark=ints,
        log_start=ints,
        chosen_omitted=st.booleans(),
        from_slot=ints,
        more_from=ints,
        **common,
    ),
    st.builds(
        Nack,
        promised=ballots,
        leader_hint=st.none() | ids,
        lease_held=st.booleans(),
        **common,
    ),
    st.builds(Accept, entries=slot_values, chosen_watermark=ints, **common),
    st.builds(Accepted, slots=st.lists(ints, max_size=5).map(tuple), **common),
    st.builds(
        Heartbeat,
        chosen_watermark=ints,
        seq=ints,
        handoff_to=ints,
        next_slot=ints,
        lease_remaining_s=st.integers(0, 2**32 - 1).map(lambda us: us / 1e6),
        **common,
    ),
    st.builds(
        HeartbeatAck,
        seq=ints,
        chosen_watermark=ints,
        rebuilding=st.booleans(),
        retiring=st.booleans(),
        lease_promise_s=st.integers(0, 2**32 - 1).map(lambda us: us / 1e6),
        **common,
    ),
    st.builds(CatchUpRequest, from_slot=ints, to_slot=ints, **common),
    st.builds(CatchUpReply, entries=slot_values, chosen_watermark=ints, **common),
    st.builds(InstallSnapshot, index=ints, data=st.binary(max_size=50), **common),
)


@given(messages)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x08", b""])
def test_garbage_is_a_typed_error(garbage: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(garbage)
