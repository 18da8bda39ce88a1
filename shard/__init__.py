"""One shard's replicated state machine, and the node process that hosts many groups."""

__version__ = "0.1.0"
