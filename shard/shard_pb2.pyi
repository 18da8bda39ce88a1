from txn import txn_pb2 as _txn_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_OK: _ClassVar[Status]
    STATUS_CAS_FAILED: _ClassVar[Status]
    STATUS_MALFORMED: _ClassVar[Status]
    STATUS_LIMIT_EXCEEDED: _ClassVar[Status]
    STATUS_INVALID_ARGUMENT: _ClassVar[Status]
    STATUS_WRONG_SHARD: _ClassVar[Status]
    STATUS_CONFLICT: _ClassVar[Status]
STATUS_OK: Status
STATUS_CAS_FAILED: Status
STATUS_MALFORMED: Status
STATUS_LIMIT_EXCEEDED: Status
STATUS_INVALID_ARGUMENT: Status
STATUS_WRONG_SHARD: Status
STATUS_CONFLICT: Status

class Put(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class CompareAndSet(_message.Message):
    __slots__ = ("key", "expected_value", "expected_version", "expect_absent", "new_value", "delete")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    expected_value: bytes
    expected_version: int
    expect_absent: bool
    new_value: bytes
    delete: bool
    def __init__(self, key: _Optional[bytes] = ..., expected_value: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., expect_absent: _Optional[bool] = ..., new_value: _Optional[bytes] = ..., delete: _Optional[bool] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("ts", "put", "delete", "cas", "txn")
    TS_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    ts: int
    put: Put
    delete: Delete
    cas: CompareAndSet
    txn: _txn_pb2.TxnCommand
    def __init__(self, ts: _Optional[int] = ..., put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., cas: _Optional[_Union[CompareAndSet, _Mapping]] = ..., txn: _Optional[_Union[_txn_pb2.TxnCommand, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("status", "version", "current_value", "current_version", "message", "txn", "conflict")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    status: Status
    version: int
    current_value: bytes
    current_version: int
    message: str
    txn: _txn_pb2.TxnResult
    conflict: _txn_pb2.Conflict
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., version: _Optional[int] = ..., current_value: _Optional[bytes] = ..., current_version: _Optional[int] = ..., message: _Optional[str] = ..., txn: _Optional[_Union[_txn_pb2.TxnResult, _Mapping]] = ..., conflict: _Optional[_Union[_txn_pb2.Conflict, _Mapping]] = ...) -> None: ...
