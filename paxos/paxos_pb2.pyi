from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ballot(_message.Message):
    __slots__ = ("round", "node_id")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    round: int
    node_id: int
    def __init__(self, round: _Optional[int] = ..., node_id: _Optional[int] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, commands: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SlotValue(_message.Message):
    __slots__ = ("slot", "value")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    value: Value
    def __init__(self, slot: _Optional[int] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class AcceptedEntry(_message.Message):
    __slots__ = ("slot", "ballot", "value", "chosen")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    slot: int
    ballot: Ballot
    value: Value
    chosen: bool
    def __init__(self, slot: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., chosen: _Optional[bool] = ...) -> None: ...

class PreVote(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class PreVoteReply(_message.Message):
    __slots__ = ("seq", "granted", "rebuilding")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REBUILDING_FIELD_NUMBER: _ClassVar[int]
    seq: int
    granted: bool
    rebuilding: bool
    def __init__(self, seq: _Optional[int] = ..., granted: _Optional[bool] = ..., rebuilding: _Optional[bool] = ...) -> None: ...

class Prepare(_message.Message):
    __slots__ = ("from_slot",)
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    from_slot: int
    def __init__(self, from_slot: _Optional[int] = ...) -> None: ...

class Promise(_message.Message):
    __slots__ = ("accepted", "chosen_watermark", "log_start", "chosen_omitted", "from_slot", "more_from")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    LOG_START_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_OMITTED_FIELD_NUMBER: _ClassVar[int]
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    MORE_FROM_FIELD_NUMBER: _ClassVar[int]
    accepted: _containers.RepeatedCompositeFieldContainer[AcceptedEntry]
    chosen_watermark: int
    log_start: int
    chosen_omitted: bool
    from_slot: int
    more_from: int
    def __init__(self, accepted: _Optional[_Iterable[_Union[AcceptedEntry, _Mapping]]] = ..., chosen_watermark: _Optional[int] = ..., log_start: _Optional[int] = ..., chosen_omitted: _Optional[bool] = ..., from_slot: _Optional[int] = ..., more_from: _Optional[int] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("promised", "leader_hint", "lease_held")
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    LEASE_HELD_FIELD_NUMBER: _ClassVar[int]
    promised: Ballot
    leader_hint: int
    lease_held: bool
    def __init__(self, promised: _Optional[_Union[Ballot, _Mapping]] = ..., leader_hint: _Optional[int] = ..., lease_held: _Optional[bool] = ...) -> None: ...

class Accept(_message.Message):
    __slots__ = ("entries", "chosen_watermark")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[SlotValue]
    chosen_watermark: int
    def __init__(self, entries: _Optional[_Iterable[_Union[SlotValue, _Mapping]]] = ..., chosen_watermark: _Optional[int] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("slots",)
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, slots: _Optional[_Iterable[int]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("chosen_watermark", "seq", "handoff_to", "next_slot", "lease_remaining_us")
    CHOSEN_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_TO_FIELD_NUMBER: _ClassVar[int]
    NEXT_SLOT_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_US_FIELD_NUMBER: _ClassVar[int]
    chosen_watermark: int
    seq: int
    handoff_to: int
    next_slot: int
    lease_remaining_us: int
    def __init__(self, chosen_watermark: _Optional[int] = ..., seq: _Optional[int] = ..., handoff_to: _Optional[int] = ..., next_slot: _Optional[int] = ..., lease_remaining_us: _Optional[int] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("seq", "chosen_watermark", "rebuilding", "retiring", "lease_promise_us")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    REBUILDING_FIELD_NUMBER: _ClassVar[int]
    RETIRING_FIELD_NUMBER: _ClassVar[int]
    LEASE_PROMISE_US_FIELD_NUMBER: _ClassVar[int]
    seq: int
    chosen_watermark: int
    rebuilding: bool
    retiring: bool
    lease_promise_us: int
    def __init__(self, seq: _Optional[int] = ..., chosen_watermark: _Optional[int] = ..., rebuilding: _Optional[bool] = ..., retiring: _Optional[bool] = ..., lease_promise_us: _Optional[int] = ...) -> None: ...

class CatchUpRequest(_message.Message):
    __slots__ = ("from_slot", "to_slot")
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    TO_SLOT_FIELD_NUMBER: _ClassVar[int]
    from_slot: int
    to_slot: int
    def __init__(self, from_slot: _Optional[int] = ..., to_slot: _Optional[int] = ...) -> None: ...

class CatchUpReply(_message.Message):
    __slots__ = ("entries", "chosen_watermark")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[SlotValue]
    chosen_watermark: int
    def __init__(self, entries: _Optional[_Iterable[_Union[SlotValue, _Mapping]]] = ..., chosen_watermark: _Optional[int] = ...) -> None: ...

class InstallSnapshot(_message.Message):
    __slots__ = ("index", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    data: bytes
    def __init__(self, index: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PaxosMessage(_message.Message):
    __slots__ = ("src", "dst", "ballot", "prepare", "promise", "nack", "accept", "accepted", "heartbeat", "heartbeat_ack", "catch_up_request", "catch_up_reply", "install_snapshot", "pre_vote", "pre_vote_reply")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    PROMISE_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_REPLY_FIELD_NUMBER: _ClassVar[int]
    INSTALL_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_REPLY_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    prepare: Prepare
    promise: Promise
    nack: Nack
    accept: Accept
    accepted: Accepted
    heartbeat: Heartbeat
    heartbeat_ack: HeartbeatAck
    catch_up_request: CatchUpRequest
    catch_up_reply: CatchUpReply
    install_snapshot: InstallSnapshot
    pre_vote: PreVote
    pre_vote_reply: PreVoteReply
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., prepare: _Optional[_Union[Prepare, _Mapping]] = ..., promise: _Optional[_Union[Promise, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ..., accept: _Optional[_Union[Accept, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., catch_up_request: _Optional[_Union[CatchUpRequest, _Mapping]] = ..., catch_up_reply: _Optional[_Union[CatchUpReply, _Mapping]] = ..., install_snapshot: _Optional[_Union[InstallSnapshot, _Mapping]] = ..., pre_vote: _Optional[_Union[PreVote, _Mapping]] = ..., pre_vote_reply: _Optional[_Union[PreVoteReply, _Mapping]] = ...) -> None: ...
