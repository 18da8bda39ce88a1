from paxos import paxos_pb2 as _paxos_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupMessage(_message.Message):
    __slots__ = ("group_id", "message", "part")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    message: _paxos_pb2.PaxosMessage
    part: SnapshotPart
    def __init__(self, group_id: _Optional[int] = ..., message: _Optional[_Union[_paxos_pb2.PaxosMessage, _Mapping]] = ..., part: _Optional[_Union[SnapshotPart, _Mapping]] = ...) -> None: ...

class SnapshotPart(_message.Message):
    __slots__ = ("offset", "total", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    total: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., total: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PeerBatch(_message.Message):
    __slots__ = ("cluster_id", "from_node", "messages", "protocol", "incarnation", "rebuilt", "map_digest", "runs", "run_count")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    REBUILT_FIELD_NUMBER: _ClassVar[int]
    MAP_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_COUNT_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    from_node: int
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    protocol: int
    incarnation: bytes
    rebuilt: bool
    map_digest: bytes
    runs: bytes
    run_count: int
    def __init__(self, cluster_id: _Optional[str] = ..., from_node: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ..., protocol: _Optional[int] = ..., incarnation: _Optional[bytes] = ..., rebuilt: _Optional[bool] = ..., map_digest: _Optional[bytes] = ..., runs: _Optional[bytes] = ..., run_count: _Optional[int] = ...) -> None: ...

class PeerReply(_message.Message):
    __slots__ = ("refusal", "protocol", "for_now")
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    FOR_NOW_FIELD_NUMBER: _ClassVar[int]
    refusal: str
    protocol: int
    for_now: bool
    def __init__(self, refusal: _Optional[str] = ..., protocol: _Optional[int] = ..., for_now: _Optional[bool] = ...) -> None: ...

class IncarnationQuery(_message.Message):
    __slots__ = ("cluster_id", "from_node", "protocol", "node_id", "candidate")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    from_node: int
    protocol: int
    node_id: int
    candidate: bytes
    def __init__(self, cluster_id: _Optional[str] = ..., from_node: _Optional[int] = ..., protocol: _Optional[int] = ..., node_id: _Optional[int] = ..., candidate: _Optional[bytes] = ...) -> None: ...

class IncarnationAnswer(_message.Message):
    __slots__ = ("refusal", "digest", "retired")
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    refusal: str
    digest: bytes
    retired: bool
    def __init__(self, refusal: _Optional[str] = ..., digest: _Optional[bytes] = ..., retired: _Optional[bool] = ...) -> None: ...
