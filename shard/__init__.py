"""One shard's replicated state machine, and the node process that hosts many groups."""

import os

# Process-wide gRPC options, set before anything imports grpc (a value the user set wins).
# The C core logs connection events (GOAWAY, reconnects) at INFO on stderr: a node's log and
# a command's output keep only errors.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# gRPC's EventEngine I/O costs more per message than the epoll poller it replaces; measured
# here (bench/README.md, "gRPC I/O"): a round trip 94-98 µs instead of 126-160 µs, sequential
# put p50 1.34-1.43 ms instead of 1.54-1.59 ms, 5-10% more throughput.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

__version__ = "0.1.0"
