"""Generated protobuf/gRPC modules for the subset of etcd's v3 API the reference benchmark uses.

`kv.proto` and `rpc.proto` copy field numbers from etcd's public api/mvccpb/kv.proto and
api/etcdserverpb/rpc.proto. The *_pb2.py files are generated and committed; see rpc.proto for
the regeneration command.
"""
