from txn import txn_pb2 as _txn_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Put(_message.Message):
    __slots__ = ("key", "value", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class CompareAndSet(_message.Message):
    __slots__ = ("key", "expected_value", "expected_version", "expect_absent", "new_value", "delete", "touch", "ttl_ms", "touch_past_read_intents")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TOUCH_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    TOUCH_PAST_READ_INTENTS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    expected_value: bytes
    expected_version: int
    expect_absent: bool
    new_value: bytes
    delete: bool
    touch: bool
    ttl_ms: int
    touch_past_read_intents: bool
    def __init__(self, key: _Optional[bytes] = ..., expected_value: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., expect_absent: _Optional[bool] = ..., new_value: _Optional[bytes] = ..., delete: _Optional[bool] = ..., touch: _Optional[bool] = ..., ttl_ms: _Optional[int] = ..., touch_past_read_intents: _Optional[bool] = ...) -> None: ...

class Expire(_message.Message):
    __slots__ = ("key", "version", "deadline")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    version: int
    deadline: int
    def __init__(self, key: _Optional[bytes] = ..., version: _Optional[int] = ..., deadline: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("ts", "put", "delete", "cas", "txn", "expire")
    TS_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    ts: int
    put: Put
    delete: Delete
    cas: CompareAndSet
    txn: _txn_pb2.TxnCommand
    expire: Expire
    def __init__(self, ts: _Optional[int] = ..., put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., cas: _Optional[_Union[CompareAndSet, _Mapping]] = ..., txn: _Optional[_Union[_txn_pb2.TxnCommand, _Mapping]] = ..., expire: _Optional[_Union[Expire, _Mapping]] = ...) -> None: ...
