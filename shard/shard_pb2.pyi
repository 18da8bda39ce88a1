from txn import txn_pb2 as _txn_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
