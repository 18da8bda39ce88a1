from router import router_pb2 as _router_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[ErrorCode]
    NOT_LEADER: _ClassVar[ErrorCode]
    WRONG_SHARD: _ClassVar[ErrorCode]
    UNKNOWN_GROUP: _ClassVar[ErrorCode]
    WRONG_CLUSTER: _ClassVar[ErrorCode]
    LIMIT_EXCEEDED: _ClassVar[ErrorCode]
    INVALID_ARGUMENT: _ClassVar[ErrorCode]
    UNAVAILABLE: _ClassVar[ErrorCode]
    OUTCOME_UNKNOWN: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    CONFLICT: _ClassVar[ErrorCode]
    SNAPSHOT_TOO_OLD: _ClassVar[ErrorCode]
OK: ErrorCode
NOT_LEADER: ErrorCode
WRONG_SHARD: ErrorCode
UNKNOWN_GROUP: ErrorCode
WRONG_CLUSTER: ErrorCode
LIMIT_EXCEEDED: ErrorCode
INVALID_ARGUMENT: ErrorCode
UNAVAILABLE: ErrorCode
OUTCOME_UNKNOWN: ErrorCode
INTERNAL: ErrorCode
CONFLICT: ErrorCode
SNAPSHOT_TOO_OLD: ErrorCode

class Conflict(_message.Message):
    __slots__ = ("key", "other_txn", "phase", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OTHER_TXN_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    other_txn: bytes
    phase: str
    reason: str
    def __init__(self, key: _Optional[bytes] = ..., other_txn: _Optional[bytes] = ..., phase: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "leader_id", "leader_addr", "map_version", "conflict")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MAP_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    leader_id: int
    leader_addr: str
    map_version: int
    conflict: Conflict
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., leader_id: _Optional[int] = ..., leader_addr: _Optional[str] = ..., map_version: _Optional[int] = ..., conflict: _Optional[_Union[Conflict, _Mapping]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("cluster_id", "group_id", "map_version", "timeout_ms")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MAP_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    group_id: int
    map_version: int
    timeout_ms: int
    def __init__(self, cluster_id: _Optional[str] = ..., group_id: _Optional[int] = ..., map_version: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("header", "key", "stale_ok", "at_version", "snapshot", "lock_txn_id", "lock_priority")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    AT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LOCK_TXN_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    header: Header
    key: bytes
    stale_ok: bool
    at_version: int
    snapshot: bool
    lock_txn_id: bytes
    lock_priority: int
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., key: _Optional[bytes] = ..., stale_ok: _Optional[bool] = ..., at_version: _Optional[int] = ..., snapshot: _Optional[bool] = ..., lock_txn_id: _Optional[bytes] = ..., lock_priority: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("error", "found", "value", "version", "expires_at")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    error: Error
    found: bool
    value: bytes
    version: int
    expires_at: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("header", "key", "value", "ttl_ms")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    key: bytes
    value: bytes
    ttl_ms: int
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("error", "version", "expires_at")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    error: Error
    version: int
    expires_at: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., version: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("header", "key")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    header: Header
    key: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., key: _Optional[bytes] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("error", "version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    error: Error
    version: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class CasRequest(_message.Message):
    __slots__ = ("header", "key", "expected_value", "expected_version", "expect_absent", "new_value", "delete", "touch", "ttl_ms")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TOUCH_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    key: bytes
    expected_value: bytes
    expected_version: int
    expect_absent: bool
    new_value: bytes
    delete: bool
    touch: bool
    ttl_ms: int
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., key: _Optional[bytes] = ..., expected_value: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., expect_absent: _Optional[bool] = ..., new_value: _Optional[bytes] = ..., delete: _Optional[bool] = ..., touch: _Optional[bool] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class CasResponse(_message.Message):
    __slots__ = ("error", "succeeded", "version", "found", "current_value", "current_version", "expires_at")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    error: Error
    succeeded: bool
    version: int
    found: bool
    current_value: bytes
    current_version: int
    expires_at: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., succeeded: _Optional[bool] = ..., version: _Optional[int] = ..., found: _Optional[bool] = ..., current_value: _Optional[bytes] = ..., current_version: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("header", "start", "end", "limit", "stale_ok", "at_version", "snapshot", "reverse", "changes_after", "await_change", "prev_values")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    AT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_AFTER_FIELD_NUMBER: _ClassVar[int]
    AWAIT_CHANGE_FIELD_NUMBER: _ClassVar[int]
    PREV_VALUES_FIELD_NUMBER: _ClassVar[int]
    header: Header
    start: bytes
    end: bytes
    limit: int
    stale_ok: bool
    at_version: int
    snapshot: bool
    reverse: bool
    changes_after: int
    await_change: bool
    prev_values: bool
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., limit: _Optional[int] = ..., stale_ok: _Optional[bool] = ..., at_version: _Optional[int] = ..., snapshot: _Optional[bool] = ..., reverse: _Optional[bool] = ..., changes_after: _Optional[int] = ..., await_change: _Optional[bool] = ..., prev_values: _Optional[bool] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "version", "deleted", "prev_value", "prev_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    PREV_VALUE_FIELD_NUMBER: _ClassVar[int]
    PREV_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    version: int
    deleted: bool
    prev_value: bytes
    prev_version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., deleted: _Optional[bool] = ..., prev_value: _Optional[bytes] = ..., prev_version: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("error", "items", "more", "reverse", "changes", "covered_end", "through", "changed", "waited", "prev_values")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    COVERED_END_FIELD_NUMBER: _ClassVar[int]
    THROUGH_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    PREV_VALUES_FIELD_NUMBER: _ClassVar[int]
    error: Error
    items: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    reverse: bool
    changes: bool
    covered_end: bytes
    through: int
    changed: bool
    waited: bool
    prev_values: bool
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., items: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ..., reverse: _Optional[bool] = ..., changes: _Optional[bool] = ..., covered_end: _Optional[bytes] = ..., through: _Optional[int] = ..., changed: _Optional[bool] = ..., waited: _Optional[bool] = ..., prev_values: _Optional[bool] = ...) -> None: ...

class ReadItem(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    version: int
    def __init__(self, key: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class AtomicOp(_message.Message):
    __slots__ = ("kind", "operand")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPERAND_FIELD_NUMBER: _ClassVar[int]
    kind: int
    operand: bytes
    def __init__(self, kind: _Optional[int] = ..., operand: _Optional[bytes] = ...) -> None: ...

class WriteItem(_message.Message):
    __slots__ = ("key", "value", "delete", "ops", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    delete: bool
    ops: _containers.RepeatedCompositeFieldContainer[AtomicOp]
    ttl_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., delete: _Optional[bool] = ..., ops: _Optional[_Iterable[_Union[AtomicOp, _Mapping]]] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class KeyRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: bytes
    end: bytes
    def __init__(self, start: _Optional[bytes] = ..., end: _Optional[bytes] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("header", "txn_id", "coordinator_group", "participants", "ts", "reads", "writes", "priority", "read_ranges")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_GROUP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    READ_RANGES_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    coordinator_group: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    ts: int
    reads: _containers.RepeatedCompositeFieldContainer[ReadItem]
    writes: _containers.RepeatedCompositeFieldContainer[WriteItem]
    priority: int
    read_ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ..., coordinator_group: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ..., ts: _Optional[int] = ..., reads: _Optional[_Iterable[_Union[ReadItem, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[WriteItem, _Mapping]]] = ..., priority: _Optional[int] = ..., read_ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("error", "prepare_ts", "vote_mac")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    VOTE_MAC_FIELD_NUMBER: _ClassVar[int]
    error: Error
    prepare_ts: int
    vote_mac: bytes
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., prepare_ts: _Optional[int] = ..., vote_mac: _Optional[bytes] = ...) -> None: ...

class VoteProof(_message.Message):
    __slots__ = ("group_id", "prepare_ts", "mac")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    prepare_ts: int
    mac: bytes
    def __init__(self, group_id: _Optional[int] = ..., prepare_ts: _Optional[int] = ..., mac: _Optional[bytes] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("header", "txn_id", "participants", "commit", "commit_ts", "recover", "asker_ts")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    RECOVER_FIELD_NUMBER: _ClassVar[int]
    ASKER_TS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    participants: _containers.RepeatedScalarFieldContainer[int]
    commit: bool
    commit_ts: int
    recover: bool
    asker_ts: int
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ..., participants: _Optional[_Iterable[int]] = ..., commit: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., recover: _Optional[bool] = ..., asker_ts: _Optional[int] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("error", "committed", "commit_ts", "pending", "checked")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    error: Error
    committed: bool
    commit_ts: int
    pending: bool
    checked: bool
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., committed: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., pending: _Optional[bool] = ..., checked: _Optional[bool] = ...) -> None: ...

class PreventRequest(_message.Message):
    __slots__ = ("header", "txn_id", "asker_ts", "participants")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    ASKER_TS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    asker_ts: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ..., asker_ts: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ...) -> None: ...

class PreventResponse(_message.Message):
    __slots__ = ("error", "prepared", "prepare_ts", "unknown", "checked")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    error: Error
    prepared: bool
    prepare_ts: int
    unknown: bool
    checked: bool
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., prepared: _Optional[bool] = ..., prepare_ts: _Optional[int] = ..., unknown: _Optional[bool] = ..., checked: _Optional[bool] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("header", "txn_id", "commit", "commit_ts", "participants", "votes", "decision_mac")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    DECISION_MAC_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    commit: bool
    commit_ts: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    votes: _containers.RepeatedCompositeFieldContainer[VoteProof]
    decision_mac: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ..., commit: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ..., votes: _Optional[_Iterable[_Union[VoteProof, _Mapping]]] = ..., decision_mac: _Optional[bytes] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: Error
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class CommitOnePhaseRequest(_message.Message):
    __slots__ = ("header", "txn_id", "ts", "reads", "writes", "read_ranges")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    READ_RANGES_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    ts: int
    reads: _containers.RepeatedCompositeFieldContainer[ReadItem]
    writes: _containers.RepeatedCompositeFieldContainer[WriteItem]
    read_ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ..., ts: _Optional[int] = ..., reads: _Optional[_Iterable[_Union[ReadItem, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[WriteItem, _Mapping]]] = ..., read_ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ...) -> None: ...

class CommitOnePhaseResponse(_message.Message):
    __slots__ = ("error", "commit_ts")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    commit_ts: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., commit_ts: _Optional[int] = ...) -> None: ...

class TxnStatusRequest(_message.Message):
    __slots__ = ("header", "txn_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_id: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_id: _Optional[bytes] = ...) -> None: ...

class TxnStatusResponse(_message.Message):
    __slots__ = ("error", "state", "commit_ts", "prepare_ts", "participants")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[TxnStatusResponse.State]
        IN_PROGRESS: _ClassVar[TxnStatusResponse.State]
        COMMITTED: _ClassVar[TxnStatusResponse.State]
        ABORTED: _ClassVar[TxnStatusResponse.State]
    UNKNOWN: TxnStatusResponse.State
    IN_PROGRESS: TxnStatusResponse.State
    COMMITTED: TxnStatusResponse.State
    ABORTED: TxnStatusResponse.State
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    state: TxnStatusResponse.State
    commit_ts: int
    prepare_ts: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., state: _Optional[_Union[TxnStatusResponse.State, str]] = ..., commit_ts: _Optional[int] = ..., prepare_ts: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ...) -> None: ...

class TimestampRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TimestampResponse(_message.Message):
    __slots__ = ("error", "ts")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    ts: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., ts: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupStatus(_message.Message):
    __slots__ = ("group_id", "start", "end", "replicas", "role", "leader_id", "ballot", "chosen_index", "applied_index", "lease_valid")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEASE_VALID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    start: bytes
    end: bytes
    replicas: _containers.RepeatedScalarFieldContainer[int]
    role: str
    leader_id: int
    ballot: str
    chosen_index: int
    applied_index: int
    lease_valid: bool
    def __init__(self, group_id: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., replicas: _Optional[_Iterable[int]] = ..., role: _Optional[str] = ..., leader_id: _Optional[int] = ..., ballot: _Optional[str] = ..., chosen_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., lease_valid: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("cluster_id", "node_id", "node_name", "map_version", "groups", "software_version", "client_bytes_held", "client_bytes_limit", "answers_shed", "refused_by")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MAP_VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_BYTES_HELD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_BYTES_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_SHED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_BY_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    node_id: int
    node_name: str
    map_version: int
    groups: _containers.RepeatedCompositeFieldContainer[GroupStatus]
    software_version: str
    client_bytes_held: int
    client_bytes_limit: int
    answers_shed: int
    refused_by: _containers.RepeatedCompositeFieldContainer[PeerRefusal]
    def __init__(self, cluster_id: _Optional[str] = ..., node_id: _Optional[int] = ..., node_name: _Optional[str] = ..., map_version: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[GroupStatus, _Mapping]]] = ..., software_version: _Optional[str] = ..., client_bytes_held: _Optional[int] = ..., client_bytes_limit: _Optional[int] = ..., answers_shed: _Optional[int] = ..., refused_by: _Optional[_Iterable[_Union[PeerRefusal, _Mapping]]] = ...) -> None: ...

class PeerRefusal(_message.Message):
    __slots__ = ("node_id", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    reason: str
    def __init__(self, node_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TxnStatusesRequest(_message.Message):
    __slots__ = ("header", "txn_ids")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXN_IDS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    txn_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., txn_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TxnStatusesResponse(_message.Message):
    __slots__ = ("error", "statuses")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    error: Error
    statuses: _containers.RepeatedCompositeFieldContainer[TxnStatusResponse]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., statuses: _Optional[_Iterable[_Union[TxnStatusResponse, _Mapping]]] = ...) -> None: ...

class ShardMapRequest(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class ShardMapResponse(_message.Message):
    __slots__ = ("error", "shard_map")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHARD_MAP_FIELD_NUMBER: _ClassVar[int]
    error: Error
    shard_map: _router_pb2.ShardMap
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., shard_map: _Optional[_Union[_router_pb2.ShardMap, _Mapping]] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("id", "get", "put", "delete", "cas", "scan", "prepare", "decide", "resolve", "commit_one_phase", "txn_status", "timestamp", "prevent", "txn_statuses")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    SCAN_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_ONE_PHASE_FIELD_NUMBER: _ClassVar[int]
    TXN_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PREVENT_FIELD_NUMBER: _ClassVar[int]
    TXN_STATUSES_FIELD_NUMBER: _ClassVar[int]
    id: int
    get: GetRequest
    put: PutRequest
    delete: DeleteRequest
    cas: CasRequest
    scan: ScanRequest
    prepare: PrepareRequest
    decide: DecideRequest
    resolve: ResolveRequest
    commit_one_phase: CommitOnePhaseRequest
    txn_status: TxnStatusRequest
    timestamp: TimestampRequest
    prevent: PreventRequest
    txn_statuses: TxnStatusesRequest
    def __init__(self, id: _Optional[int] = ..., get: _Optional[_Union[GetRequest, _Mapping]] = ..., put: _Optional[_Union[PutRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ..., cas: _Optional[_Union[CasRequest, _Mapping]] = ..., scan: _Optional[_Union[ScanRequest, _Mapping]] = ..., prepare: _Optional[_Union[PrepareRequest, _Mapping]] = ..., decide: _Optional[_Union[DecideRequest, _Mapping]] = ..., resolve: _Optional[_Union[ResolveRequest, _Mapping]] = ..., commit_one_phase: _Optional[_Union[CommitOnePhaseRequest, _Mapping]] = ..., txn_status: _Optional[_Union[TxnStatusRequest, _Mapping]] = ..., timestamp: _Optional[_Union[TimestampRequest, _Mapping]] = ..., prevent: _Optional[_Union[PreventRequest, _Mapping]] = ..., txn_statuses: _Optional[_Union[TxnStatusesRequest, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("id", "get", "put", "delete", "cas", "scan", "error", "prepare", "decide", "resolve", "commit_one_phase", "txn_status", "timestamp", "prevent", "txn_statuses")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    SCAN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_ONE_PHASE_FIELD_NUMBER: _ClassVar[int]
    TXN_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PREVENT_FIELD_NUMBER: _ClassVar[int]
    TXN_STATUSES_FIELD_NUMBER: _ClassVar[int]
    id: int
    get: GetResponse
    put: PutResponse
    delete: DeleteResponse
    cas: CasResponse
    scan: ScanResponse
    error: Error
    prepare: PrepareResponse
    decide: DecideResponse
    resolve: ResolveResponse
    commit_one_phase: CommitOnePhaseResponse
    txn_status: TxnStatusResponse
    timestamp: TimestampResponse
    prevent: PreventResponse
    txn_statuses: TxnStatusesResponse
    def __init__(self, id: _Optional[int] = ..., get: _Optional[_Union[GetResponse, _Mapping]] = ..., put: _Optional[_Union[PutResponse, _Mapping]] = ..., delete: _Optional[_Union[DeleteResponse, _Mapping]] = ..., cas: _Optional[_Union[CasResponse, _Mapping]] = ..., scan: _Optional[_Union[ScanResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., prepare: _Optional[_Union[PrepareResponse, _Mapping]] = ..., decide: _Optional[_Union[DecideResponse, _Mapping]] = ..., resolve: _Optional[_Union[ResolveResponse, _Mapping]] = ..., commit_one_phase: _Optional[_Union[CommitOnePhaseResponse, _Mapping]] = ..., txn_status: _Optional[_Union[TxnStatusResponse, _Mapping]] = ..., timestamp: _Optional[_Union[TimestampResponse, _Mapping]] = ..., prevent: _Optional[_Union[PreventResponse, _Mapping]] = ..., txn_statuses: _Optional[_Union[TxnStatusesResponse, _Mapping]] = ...) -> None: ...

class RequestBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[Request]
    def __init__(self, requests: _Optional[_Iterable[_Union[Request, _Mapping]]] = ...) -> None: ...

class ResponseBatch(_message.Message):
    __slots__ = ("responses", "drained")
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[Response]
    drained: bool
    def __init__(self, responses: _Optional[_Iterable[_Union[Response, _Mapping]]] = ..., drained: _Optional[bool] = ...) -> None: ...
