from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeAddress(_message.Message):
    __slots__ = ("node_id", "name", "client_addr", "peer_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    name: str
    client_addr: str
    peer_addr: str
    def __init__(self, node_id: _Optional[int] = ..., name: _Optional[str] = ..., client_addr: _Optional[str] = ..., peer_addr: _Optional[str] = ...) -> None: ...

class RangeDescriptor(_message.Message):
    __slots__ = ("group_id", "start", "end", "replicas", "preferred_leader")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_LEADER_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    start: bytes
    end: bytes
    replicas: _containers.RepeatedScalarFieldContainer[int]
    preferred_leader: int
    def __init__(self, group_id: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., replicas: _Optional[_Iterable[int]] = ..., preferred_leader: _Optional[int] = ...) -> None: ...

class ShardMap(_message.Message):
    __slots__ = ("version", "ranges", "nodes", "meta_replicas", "meta_preferred_leader")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    META_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    META_PREFERRED_LEADER_FIELD_NUMBER: _ClassVar[int]
    version: int
    ranges: _containers.RepeatedCompositeFieldContainer[RangeDescriptor]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeAddress]
    meta_replicas: _containers.RepeatedScalarFieldContainer[int]
    meta_preferred_leader: int
    def __init__(self, version: _Optional[int] = ..., ranges: _Optional[_Iterable[_Union[RangeDescriptor, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeAddress, _Mapping]]] = ..., meta_replicas: _Optional[_Iterable[int]] = ..., meta_preferred_leader: _Optional[int] = ...) -> None: ...

class Bootstrap(_message.Message):
    __slots__ = ("map",)
    MAP_FIELD_NUMBER: _ClassVar[int]
    map: ShardMap
    def __init__(self, map: _Optional[_Union[ShardMap, _Mapping]] = ...) -> None: ...

class SplitRange(_message.Message):
    __slots__ = ("group_id", "split_key", "new_group_id", "replicas", "preferred_leader", "expected_version")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_KEY_FIELD_NUMBER: _ClassVar[int]
    NEW_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_LEADER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    split_key: bytes
    new_group_id: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    preferred_leader: int
    expected_version: int
    def __init__(self, group_id: _Optional[int] = ..., split_key: _Optional[bytes] = ..., new_group_id: _Optional[int] = ..., replicas: _Optional[_Iterable[int]] = ..., preferred_leader: _Optional[int] = ..., expected_version: _Optional[int] = ...) -> None: ...

class MetaCommand(_message.Message):
    __slots__ = ("bootstrap", "split_range")
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    SPLIT_RANGE_FIELD_NUMBER: _ClassVar[int]
    bootstrap: Bootstrap
    split_range: SplitRange
    def __init__(self, bootstrap: _Optional[_Union[Bootstrap, _Mapping]] = ..., split_range: _Optional[_Union[SplitRange, _Mapping]] = ...) -> None: ...

class MetaResult(_message.Message):
    __slots__ = ("status", "map", "error")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[MetaResult.Status]
        APPLIED: _ClassVar[MetaResult.Status]
        ALREADY_BOOTSTRAPPED: _ClassVar[MetaResult.Status]
        REJECTED: _ClassVar[MetaResult.Status]
        MALFORMED: _ClassVar[MetaResult.Status]
    STATUS_UNSPECIFIED: MetaResult.Status
    APPLIED: MetaResult.Status
    ALREADY_BOOTSTRAPPED: MetaResult.Status
    REJECTED: MetaResult.Status
    MALFORMED: MetaResult.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: MetaResult.Status
    map: ShardMap
    error: str
    def __init__(self, status: _Optional[_Union[MetaResult.Status, str]] = ..., map: _Optional[_Union[ShardMap, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class MetaSnapshot(_message.Message):
    __slots__ = ("applied_index", "map")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    map: ShardMap
    def __init__(self, applied_index: _Optional[int] = ..., map: _Optional[_Union[ShardMap, _Mapping]] = ...) -> None: ...
