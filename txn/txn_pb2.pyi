from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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

class Prepare(_message.Message):
    __slots__ = ("txn_id", "coordinator_group", "participants", "reads", "writes", "read_ranges", "began_ts")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_GROUP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    READ_RANGES_FIELD_NUMBER: _ClassVar[int]
    BEGAN_TS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    coordinator_group: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    reads: _containers.RepeatedCompositeFieldContainer[ReadItem]
    writes: _containers.RepeatedCompositeFieldContainer[WriteItem]
    read_ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    began_ts: int
    def __init__(self, txn_id: _Optional[bytes] = ..., coordinator_group: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ..., reads: _Optional[_Iterable[_Union[ReadItem, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[WriteItem, _Mapping]]] = ..., read_ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ..., began_ts: _Optional[int] = ...) -> None: ...

class Resolve(_message.Message):
    __slots__ = ("txn_id", "commit", "commit_ts", "if_prepared", "participants")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    IF_PREPARED_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    commit: bool
    commit_ts: int
    if_prepared: bool
    participants: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, txn_id: _Optional[bytes] = ..., commit: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., if_prepared: _Optional[bool] = ..., participants: _Optional[_Iterable[int]] = ...) -> None: ...

class Decide(_message.Message):
    __slots__ = ("txn_id", "participants", "commit", "commit_ts", "recover", "asker_ts", "if_prepared")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    RECOVER_FIELD_NUMBER: _ClassVar[int]
    ASKER_TS_FIELD_NUMBER: _ClassVar[int]
    IF_PREPARED_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    participants: _containers.RepeatedScalarFieldContainer[int]
    commit: bool
    commit_ts: int
    recover: bool
    asker_ts: int
    if_prepared: bool
    def __init__(self, txn_id: _Optional[bytes] = ..., participants: _Optional[_Iterable[int]] = ..., commit: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., recover: _Optional[bool] = ..., asker_ts: _Optional[int] = ..., if_prepared: _Optional[bool] = ...) -> None: ...

class Prevent(_message.Message):
    __slots__ = ("txn_id", "asker_ts", "participants")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    ASKER_TS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    asker_ts: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, txn_id: _Optional[bytes] = ..., asker_ts: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("txn_id",)
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    def __init__(self, txn_id: _Optional[bytes] = ...) -> None: ...

class PurgeDecisions(_message.Message):
    __slots__ = ("before_ts", "verified")
    BEFORE_TS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    before_ts: int
    verified: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, before_ts: _Optional[int] = ..., verified: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CommitOnePhase(_message.Message):
    __slots__ = ("txn_id", "reads", "writes", "read_ranges", "began_ts")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    READ_RANGES_FIELD_NUMBER: _ClassVar[int]
    BEGAN_TS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    reads: _containers.RepeatedCompositeFieldContainer[ReadItem]
    writes: _containers.RepeatedCompositeFieldContainer[WriteItem]
    read_ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    began_ts: int
    def __init__(self, txn_id: _Optional[bytes] = ..., reads: _Optional[_Iterable[_Union[ReadItem, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[WriteItem, _Mapping]]] = ..., read_ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ..., began_ts: _Optional[int] = ...) -> None: ...

class TxnCommand(_message.Message):
    __slots__ = ("prepare", "resolve", "decide", "finish", "purge_decisions", "commit_one_phase", "prevent")
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    PURGE_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_ONE_PHASE_FIELD_NUMBER: _ClassVar[int]
    PREVENT_FIELD_NUMBER: _ClassVar[int]
    prepare: Prepare
    resolve: Resolve
    decide: Decide
    finish: Finish
    purge_decisions: PurgeDecisions
    commit_one_phase: CommitOnePhase
    prevent: Prevent
    def __init__(self, prepare: _Optional[_Union[Prepare, _Mapping]] = ..., resolve: _Optional[_Union[Resolve, _Mapping]] = ..., decide: _Optional[_Union[Decide, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., purge_decisions: _Optional[_Union[PurgeDecisions, _Mapping]] = ..., commit_one_phase: _Optional[_Union[CommitOnePhase, _Mapping]] = ..., prevent: _Optional[_Union[Prevent, _Mapping]] = ...) -> None: ...

class IntentRecord(_message.Message):
    __slots__ = ("txn_id", "write", "value", "delete", "prepare_ts", "ttl_ms")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    write: bool
    value: bytes
    delete: bool
    prepare_ts: int
    ttl_ms: int
    def __init__(self, txn_id: _Optional[bytes] = ..., write: _Optional[bool] = ..., value: _Optional[bytes] = ..., delete: _Optional[bool] = ..., prepare_ts: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class KeyIntents(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[IntentRecord]
    def __init__(self, intents: _Optional[_Iterable[_Union[IntentRecord, _Mapping]]] = ...) -> None: ...

class PreparedRecord(_message.Message):
    __slots__ = ("txn_id", "coordinator_group", "participants", "prepare_ts", "write_keys", "read_keys", "read_ranges")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_GROUP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TS_FIELD_NUMBER: _ClassVar[int]
    WRITE_KEYS_FIELD_NUMBER: _ClassVar[int]
    READ_KEYS_FIELD_NUMBER: _ClassVar[int]
    READ_RANGES_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    coordinator_group: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    prepare_ts: int
    write_keys: _containers.RepeatedScalarFieldContainer[bytes]
    read_keys: _containers.RepeatedScalarFieldContainer[bytes]
    read_ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    def __init__(self, txn_id: _Optional[bytes] = ..., coordinator_group: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ..., prepare_ts: _Optional[int] = ..., write_keys: _Optional[_Iterable[bytes]] = ..., read_keys: _Optional[_Iterable[bytes]] = ..., read_ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ...) -> None: ...

class DecisionRecord(_message.Message):
    __slots__ = ("txn_id", "committed", "commit_ts", "participants", "decided_ts", "finished", "one_phase", "late")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_TS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ONE_PHASE_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    committed: bool
    commit_ts: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    decided_ts: int
    finished: bool
    one_phase: bool
    late: bool
    def __init__(self, txn_id: _Optional[bytes] = ..., committed: _Optional[bool] = ..., commit_ts: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ..., decided_ts: _Optional[int] = ..., finished: _Optional[bool] = ..., one_phase: _Optional[bool] = ..., late: _Optional[bool] = ...) -> None: ...
