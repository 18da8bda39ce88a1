"""One shard's replicated state machine, and the node process that hosts many groups."""

import os

# Before anything imports grpc: gRPC's EventEngine I/O costs more per message than the epoll
# poller it replaces. Measured here (bench/README.md): a gRPC round trip 94-98 µs instead of
# 126-160 µs, sequential put p50 1.34-1.43 ms instead of 1.54-1.59 ms, and 5-10% more
# throughput. A value the user set wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

__version__ = "0.1.0"
