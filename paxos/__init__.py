"""Multi-Paxos replication as a sans-I/O library.

The replica never reads a clock, sleeps, opens a socket or touches a disk: the caller feeds it
messages, `tick(now)`, `propose(command)` and `read(read_id, now)`, and executes the `Ready`
batches it returns (see `paxos.ready` for the order). Commands are opaque bytes.
"""

from paxos.ballot import ZERO_BALLOT, Ballot
from paxos.config import ReplicaConfig
from paxos.errors import InvariantViolation, NotLeader, PaxosError, ProposalTooLarge
from paxos.messages import NOOP, Message, Value
from paxos.ready import CommittedEntry, PersistBatch, ReadState, Ready, SnapshotToInstall
from paxos.replica import Replica, ReplicaStatus, Role
from paxos.storage import DurableState, MemoryStorage, Storage

__all__ = [
    "NOOP",
    "ZERO_BALLOT",
    "Ballot",
    "CommittedEntry",
    "DurableState",
    "InvariantViolation",
    "MemoryStorage",
    "Message",
    "NotLeader",
    "PaxosError",
    "PersistBatch",
    "ProposalTooLarge",
    "ReadState",
    "Ready",
    "Replica",
    "ReplicaConfig",
    "ReplicaStatus",
    "Role",
    "SnapshotToInstall",
    "Storage",
    "Value",
]
