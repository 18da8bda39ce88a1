"""Which node a data directory belongs to, and whether a node may start on it.

A node's data directory holds its Paxos promises and votes. A node that starts on an empty
one remembers none of them, which is safe only on the cluster's first start: a node that
voted and then lost its data (a replaced disk, a deleted directory, a config pointing it at
nothing) may promise a new leader "I accepted nothing" for a slot its forgotten vote helped
choose, and that leader may then choose a second value for the slot (Paxos Made Live §5.1;
etcd refuses such a member for the same reason). So:

- the first start of a node writes an identity record (cluster id, node id and name), synced,
  before it does anything else, and needs `paxoskv node --bootstrap` (`paxoskv cluster
  start` passes it while none of the cluster's nodes has data yet, or until the first start
  of all of them has finished);
- every later start checks the record against the config: a directory with neither the
  record nor any Paxos state is refused without `--bootstrap` (`NodeDataMissing`), one whose
  record names another node or cluster is refused always (`NodeDataMismatch`);
- a directory written before this record existed (Paxos state, no record) is given one;
- `paxoskv node --rebuild` starts a node whose data was lost on an empty directory: with the
  record it writes, in the same synced write, every group it hosts is marked rebuilding, so
  each replica votes again only once Paxos rule 14 (paxos/replica.py) says its forgotten
  promises and votes are covered. On a directory that already holds this node's record,
  `--rebuild` changes nothing (a rebuild stopped half-way goes on from its marks);
- the record comes with an incarnation: random bytes made when the node's data is created,
  and whether a rebuild made them. A node sends its incarnation in the hello of every peer
  stream, and each peer keeps (synced) the one it first accepted from it and refuses the
  streams of another one unless a rebuild made it (`admit_peer`). So a node whose data was
  lost and that came back with `--bootstrap`, which nothing on its own disk can tell from a
  first start, casts no vote at the peers that knew its earlier data: they refuse it
  (found by review: it became a leader within half a second);
- a peer that has no record of a node (a first contact) takes a non-rebuilt incarnation only
  once every other node of the cluster answered that it recorded no other one of that node
  (`asks_others`, `PeerRecords`). Every node that ever took a message of the earlier
  incarnation recorded it first, so one of them would say so; before this, a peer whose own
  first start came after the node had lost its data took the new incarnation as the node's
  first, and with the nodes that knew the earlier one down, the two could choose a second
  value for a slot (found by review). The price: two nodes' first contact needs every other
  node up, so a cluster's first start needs all its nodes once;
- every start of a node begins a run: random bytes put in front of the list of its earlier
  runs (the newest MAX_RUNS) and counted, written synced before it dials a peer, and sent
  with the count in every hello. Each peer keeps (synced) the count and bytes of the newest
  run it accepted of the node's incarnation, and refuses a hello whose count is lower or
  whose run of that count differs: the node's data is older than when the peer last saw
  it, as when its directory was put back from a copy (a VM or disk snapshot, `cp -a` of a
  stopped node), which may have forgotten votes it cast since (found by an operator trial:
  a node put back from a copy lost an acknowledged write, and the replicas then answered
  differently by which one led). Not caught (found by review): a copy taken while the node
  ran and put back before it started again; a copy put back while the only peers that saw
  its later runs are down (the others take it); a peer that slept through more than
  MAX_RUNS restarts takes the node unchecked (logged), unless it refused a fork of the
  node (a copy) since it took a run that descends from the one it took before, or the
  runs descend from that fork (found by review: a refused copy in a restart loop was taken
  after MAX_RUNS restarts). A hello
  without runs (a version before them) is refused once the peer saw runs of that
  incarnation (a copy from before an upgrade, old version and data together). Never put a
  node's directory back from a copy; rebuild it (`--rebuild`) instead. An incarnation a
  rebuild replaced is kept too, and refused if it comes back (a copy of an earlier
  rebuild's or the first data), also by a node that never saw it replaced when a node
  that answers its question did: every incarnation and every run a node has not taken yet
  is asked about at the other nodes (`asks_others`, `retired_here`; found by review: a
  node down through the rebuild took the copy back), but only a first contact waits for
  every node to answer;
- the record comes with the cluster's map as the config gave it at the node's first start
  (nodes and addresses, split points, replication), and every later start refuses a config
  that gives another (`ConfigMismatch`). The meta group's stored map is checked too
  (shard/node.py), but only on the nodes that host it: found by review, a fourth node of a
  cluster (no meta replica) restarted with a moved split point ran on its config's ranges,
  applied the writes outside them as invalid while the other replicas applied them, and
  answered "not found" for acknowledged keys once it led. A directory written before this
  record existed is given one from the config at its next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import stat
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import takewhile
from pathlib import Path
from typing import cast

from rocksdict import Rdict, WriteBatch, WriteOptions

from paxos import PersistBatch
from paxos.rocks import RocksStorage
from router.codec import decode_shard_map, encode_shard_map
from router.shard_map import ShardMap
from shard.disk import DataDirInUse, RocksNodeDisk
from shard.map_mismatch import ConfigMismatch, config_mismatch
from shard.private_dirs import open_to_others

log = logging.getLogger("paxoskv.node")

__all__ = [
    "CLUSTER_MAP_KEY",
    "IDENTITY_KEY",
    "NO_OTHERS",
    "Admission",
    "Incarnation",
    "NodeDataCorrupt",
    "NodeDataMismatch",
    "NodeDataMissing",
    "NodeDataUnusable",
    "NodeIdentity",
    "PeerRecords",
    "admit_peer",
    "asks_others",
    "begin_run",
    "node_incarnation",
    "open_node_disk",
    "recorded_incarnation",
    "retired_here",
    "split_runs",
    "token_digest",
]

# Outside every prefix the node scans (b"p" Paxos, b"d"/b"m"/b"r" data), as the WAL warm-up's.
IDENTITY_KEY = b"~node-identity"
INCARNATION_KEY = b"~node-incarnation"
#: The cluster's map as the node's config gave it at its first start (module doc).
CLUSTER_MAP_KEY = b"~cluster-map"
# + the peer's node id (decimal): the incarnation of that peer this node accepted.
PEER_INCARNATION_PREFIX = b"~peer-incarnation/"
#: How many runs this node began (8 bytes), then its runs, newest first (module doc):
#: RUN_BYTES each, at most MAX_RUNS.
RUNS_KEY = b"~node-runs"
# + the peer's node id (decimal): its incarnation token, and the count and id of the newest
# run of it accepted.
PEER_RUN_PREFIX = b"~peer-run/"
# + the peer's node id (decimal): the same of the newest run of it refused as old.
PEER_REFUSED_RUN_PREFIX = b"~peer-refused-run/"
# + the peer's node id (decimal) + "/" + a token: an incarnation of it a rebuild replaced.
PEER_RETIRED_PREFIX = b"~peer-retired/"
RUN_BYTES = 8
#: Runs a node remembers (8 KiB in each hello): a peer that slept through more restarts
#: of it than this takes it unchecked, with a warning.
MAX_RUNS = 1024


class NodeDataMissing(RuntimeError):
    """The node's data directory holds no data and this is not the cluster's first start."""


class NodeDataMismatch(RuntimeError):
    """The node's data directory belongs to another node or another cluster."""


class NodeDataCorrupt(RuntimeError):
    """RocksDB found the node's data directory corrupt."""


class NodeDataUnusable(RuntimeError):
    """The node's data directory cannot be created or written (not a directory, no
    permission)."""


@dataclass(frozen=True)
class NodeIdentity:
    cluster_id: str
    node_id: int
    name: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> NodeIdentity:
        fields = json.loads(raw)
        return cls(str(fields["cluster_id"]), int(fields["node_id"]), str(fields["name"]))

    def __str__(self) -> str:
        return f"{self.name} (id {self.node_id}) of cluster {self.cluster_id!r}"


@dataclass(frozen=True)
class Incarnation:
    """Which life of a node's data this is (module doc), and, when its hello said them,
    its runs, newest first (kept apart from the record: `begin_run`)."""

    token: bytes
    rebuilt: bool  # made by a rebuild (--rebuild), not by a first start
    runs: tuple[bytes, ...] = ()
    run_count: int = 0  # how many runs the node began, this one included (runs[0])

    def encode(self) -> bytes:
        return self.token + (b"\x01" if self.rebuilt else b"\x00")

    @classmethod
    def decode(cls, raw: bytes) -> Incarnation:
        return cls(raw[:-1], raw[-1:] == b"\x01")

    @classmethod
    def new(cls, *, rebuilt: bool) -> Incarnation:
        return cls(secrets.token_bytes(16), rebuilt)


def begin_run(db: Rdict) -> Incarnation:
    """This node's incarnation with a new run in front of its earlier ones, counted, written
    synced (before any hello says it: module doc)."""
    raw = db.get(RUNS_KEY)
    count = 0 if raw is None else int.from_bytes(raw[:8], "big")
    earlier = split_runs(b"" if raw is None else raw[8:]) or ()
    runs = (secrets.token_bytes(RUN_BYTES), *earlier[: MAX_RUNS - 1])
    db.put(RUNS_KEY, (count + 1).to_bytes(8, "big") + b"".join(runs), _synced())
    incarnation = node_incarnation(db)
    return Incarnation(incarnation.token, incarnation.rebuilt, runs, count + 1)


def split_runs(raw: bytes) -> tuple[bytes, ...] | None:
    """The runs a hello carries (`PeerBatch.runs`), or None when they are malformed."""
    if len(raw) % RUN_BYTES or len(raw) > MAX_RUNS * RUN_BYTES:
        return None
    return tuple(raw[i : i + RUN_BYTES] for i in range(0, len(raw), RUN_BYTES))


def node_incarnation(db: Rdict) -> Incarnation:
    """This node's incarnation (written when its disk was opened: `open_node_disk`)."""
    raw = db.get(INCARNATION_KEY)
    if raw is None:
        raise NodeDataMissing("the node's data has no incarnation record: open it first")
    return Incarnation.decode(raw)


@dataclass(frozen=True)
class PeerRecords:
    """What the cluster's other nodes recorded of a peer, asked at a first contact with it."""

    #: node id -> `token_digest` of the incarnation it recorded (nodes that recorded none
    #: are left out)
    recorded: Mapping[int, bytes] = field(default_factory=dict)
    #: the nodes that did not answer
    unanswered: Collection[int] = ()
    #: the nodes where a later rebuild replaced the incarnation asked about
    retired: Collection[int] = ()
    #: node id -> why it refused the question (it is among `unanswered`)
    refusals: Mapping[int, str] = field(default_factory=dict)


#: A cluster with no other node: no one to ask.
NO_OTHERS = PeerRecords()


@dataclass(frozen=True)
class Admission:
    """`admit_peer`'s verdict on a peer's stream."""

    refusal: str = ""  # "": taken
    for_now: bool = False  # refused until the nodes that did not answer do


def recorded_incarnation(db: Rdict, node_id: int) -> bytes | None:
    """`token_digest` of the incarnation of peer `node_id` this node recorded (None: none
    yet). Only the digest leaves the node: the token is what a peer's hello presents."""
    token = db.get(_peer_key(node_id))
    return None if token is None else token_digest(token)


def token_digest(token: bytes) -> bytes:
    """What nodes tell each other of an incarnation token they recorded."""
    return hashlib.sha256(token).digest()


def retired_here(db: Rdict, node_id: int, digest: bytes) -> bool:
    """Whether a rebuild replaced, at this node, the incarnation of peer `node_id` whose
    `token_digest` is `digest`."""
    prefix = _retired_key(node_id, b"")
    keys = takewhile(
        lambda key: key.startswith(prefix), cast("Iterator[bytes]", db.keys(from_key=prefix))
    )
    return any(token_digest(key[len(prefix) :]) == digest for key in keys)


def asks_others(db: Rdict, node_id: int, incarnation: Incarnation) -> bool:
    """Whether `admit_peer` needs the other nodes' `PeerRecords` for this incarnation of peer
    `node_id`: one this node has not taken (a first contact, or a rebuilt one), or a run of
    it this node has not taken. Each is asked whether a rebuild replaced it elsewhere (found
    by review: a node down through a rebuild took a copy of the replaced data back), and a
    first contact whether the node had other data."""
    if not incarnation.token:
        return False
    known = db.get(_peer_key(node_id))
    if known != incarnation.token:
        return known is None or incarnation.rebuilt  # any other is refused here
    return bool(incarnation.runs) and db.get(_run_key(node_id)) != _newest_run(incarnation)


def admit_peer(
    db: Rdict, node_id: int, incarnation: Incarnation, others: PeerRecords = NO_OTHERS
) -> Admission:
    """Whether this node takes peer `node_id`'s streams in `incarnation` (module doc); an
    incarnation taken is recorded, synced. `others`: what every other node of the cluster
    recorded, needed when `asks_others` says so (the default: the cluster has no other
    node)."""
    if not incarnation.token:
        return Admission(
            f"node {node_id} sent no incarnation (a paxoskv version before incarnations): run "
            "one version on every node"
        )
    key = _peer_key(node_id)
    known = db.get(key)
    if db.get(_retired_key(node_id, incarnation.token)) is not None:
        # Found by review: a copy of the data of an earlier rebuild, put back after a later
        # one, was taken again (it has a rebuilt incarnation, which let it in).
        return Admission(_replaced(node_id, "this node"))
    if others.retired:
        # Found by review: the nodes that never saw the later rebuild took it.
        return Admission(_replaced(node_id, f"node {sorted(others.retired)[0]}"))
    if known == incarnation.token:
        return _admit_run(db, node_id, incarnation)
    if known is not None and not incarnation.rebuilt:
        return Admission(_changed(node_id, "this node knew another one"))
    if known is None and not incarnation.rebuilt:
        mine = token_digest(incarnation.token)
        knew = sorted(n for n, digest in others.recorded.items() if digest != mine)
        if knew:
            return Admission(_changed(node_id, f"node {knew[0]} knew another one"))
        if others.unanswered:
            waiting = ", ".join(str(n) for n in sorted(others.unanswered))
            # Found by an operator trial: a node with another cluster_id was only "did not
            # answer"; its refusal names the setting.
            refused = "".join(
                f"; node {n} refused the question: {why}"
                for n, why in sorted(others.refusals.items())
            )
            return Admission(
                f"node {node_id} is new to this node: it is taken once every other node says "
                f"it knew no other data of it, and node(s) {waiting} did not answer (a first "
                f"start needs every node of the cluster up){refused}",
                for_now=True,
            )
    batch = WriteBatch(raw_mode=True)
    if known is not None:
        batch.put(_retired_key(node_id, known), b"")  # a rebuild replaced it for good
    batch.put(key, incarnation.token)
    db.write(batch, _synced())
    return _admit_run(db, node_id, incarnation)


def _admit_run(db: Rdict, node_id: int, incarnation: Incarnation) -> Admission:
    """The run check of a peer whose incarnation is taken (module doc); the newest run is
    recorded, synced, when it is new, and so is the newest refused one."""
    key = _run_key(node_id)
    # Another incarnation's records stand for nothing: this one's runs start afresh.
    record = _own_record(db.get(key), incarnation)
    if not incarnation.runs:
        if record is not None:
            # Found by review: a copy from before the upgrade (a VM snapshot, old version
            # and data together) was taken unchecked.
            return Admission(
                f"node {node_id} sent no runs, though this node saw runs of its data before: "
                "it runs a paxoskv version from before runs (run one version on every node), "
                f"or its data was put back from a copy or snapshot; {_REBUILD}"
            )
        return Admission()  # a version before runs: nothing to check
    newest = _newest_run(incarnation)
    if record == newest:
        return Admission()
    refused_key = PEER_REFUSED_RUN_PREFIX + str(node_id).encode()
    refused = _own_record(db.get(refused_key), incarnation)
    seen = _holds_run(incarnation, record)
    from_refused = _holds_run(incarnation, refused)
    older = record is not None and _run_count(record) > incarnation.run_count
    # A fork: a run this node saw is not among the hello's, at its count (an older hello
    # may be of the very runs this node saw). Found by review: a refused copy restarted
    # more often than a hello's runs reach back was taken unchecked; so the newest fork
    # refused is kept, and a hello that descends from it stays refused, as does one that
    # cannot tell while that fork is newer than the run this node took last (the copy
    # took the node's place, as a put-back copy does).
    forked = (
        (seen is False and not older)
        or from_refused is True
        or (
            seen is None
            and from_refused is None
            and refused is not None
            and record is not None
            and _run_count(refused) >= _run_count(record)
        )
    )
    if older or forked:
        if forked and refused != newest:  # a refused node redials: write only what is new
            db.put(refused_key, newest, _synced())
        return Admission(
            f"node {node_id}'s data is older than when this node last saw it (it does "
            "not know its latest run): its data directory was put back from a copy or "
            f"snapshot, and it may have forgotten votes it cast since, so it is refused; {_REBUILD}"
        )
    if seen is None and record is not None:
        # Found by review: refused as old, it would have needed a rebuild for nothing.
        log.warning(
            "peer restarted more times than it remembers since this node last saw it: "
            "its data is taken unchecked",
            extra={"peer": node_id},
        )
    batch = WriteBatch(raw_mode=True)
    batch.put(key, newest)
    if seen and refused is not None:
        # Its runs reach back to the one taken last: the real node goes on, and the fork
        # refused before no longer stands for it (found by review: a fork refused before
        # the node's last run taken refused the node for good once it restarted more
        # often than its runs reach back while this node was down).
        batch.delete(refused_key)
    db.write(batch, _synced())
    return Admission()


def _run_key(node_id: int) -> bytes:
    return PEER_RUN_PREFIX + str(node_id).encode()


def _newest_run(incarnation: Incarnation) -> bytes:
    """What a peer records of the newest run of `incarnation` (its token, count and run)."""
    return incarnation.token + incarnation.run_count.to_bytes(8, "big") + incarnation.runs[0]


def _run_count(record: bytes) -> int:
    return int.from_bytes(record[-8 - RUN_BYTES : -RUN_BYTES], "big")


def _own_record(record: bytes | None, incarnation: Incarnation) -> bytes | None:
    """`record` (a run's token, count and id) if it is of `incarnation`, else None."""
    if record is None or record[: -8 - RUN_BYTES] != incarnation.token:
        return None
    return record


def _holds_run(incarnation: Incarnation, record: bytes | None) -> bool | None:
    """Whether `incarnation`'s runs hold the run `record` names (its token, count and run
    id); None when they cannot tell: no record, another incarnation's, or one older than
    the runs reach back."""
    own = _own_record(record, incarnation)
    if own is None:
        return None
    back = incarnation.run_count - _run_count(own)
    if back < 0:
        return False
    if back >= len(incarnation.runs):
        return None
    return incarnation.runs[back] == own[-RUN_BYTES:]


def _peer_key(node_id: int) -> bytes:
    return PEER_INCARNATION_PREFIX + str(node_id).encode()


def _retired_key(node_id: int, token: bytes) -> bytes:
    return PEER_RETIRED_PREFIX + str(node_id).encode() + b"/" + token


_REBUILD = (
    "stop it and start it with --rebuild on an empty directory (`paxoskv cluster start "
    "--rebuild NAME` for a local cluster)"
)


def _replaced(node_id: int, who_saw: str) -> str:
    return (
        f"node {node_id}'s data is from before a rebuild that replaced it ({who_saw} saw the "
        "rebuild): it was put back from a copy or snapshot and may have forgotten votes, so "
        f"it is refused; {_REBUILD}"
    )


def _changed(node_id: int, who_knew: str) -> str:
    return (
        f"node {node_id} came back with new data (its incarnation changed: {who_knew}) that "
        "no rebuild made, as a node whose data was lost and that was started with --bootstrap: "
        f"it may have forgotten votes, so it is refused; {_REBUILD}"
    )


def open_node_disk(
    path: Path,
    identity: NodeIdentity,
    *,
    first_start: bool,
    rebuild_groups: Sequence[int] | None = None,
    cluster_map: ShardMap | None = None,
) -> RocksNodeDisk:
    """Open the node's RocksDB at `path` once it is known to be this node's (module doc).

    `rebuild_groups`: `paxoskv node --rebuild`, the groups this node hosts; an empty
    directory is then taken, and those groups are marked rebuilding. `cluster_map`: the
    map the node's config gives, recorded at the first start and checked at every later
    one (None: not checked, for tests of the record alone).

    Raises:
        NodeDataMissing: no data at `path`, and neither `first_start` nor a rebuild.
        NodeDataMismatch: the data at `path` is another node's or another cluster's.
        ConfigMismatch: `cluster_map` is not the map recorded at the first start.
        NodeDataCorrupt: RocksDB found the data at `path` corrupt.
        NodeDataUnusable: `path` cannot be created or written.
    """
    creates = first_start or rebuild_groups is not None
    if not creates and not (path / "CURRENT").exists():
        raise NodeDataMissing(_missing(path, identity))  # and leave no empty database behind
    _warn_if_open_to_others(path)
    try:
        return RocksNodeDisk(
            path,
            claim=lambda db: _claim(db, path, identity, first_start, rebuild_groups, cluster_map),
        )
    except (DataDirInUse, ConfigMismatch):
        raise  # its own message names the running node (it is an OSError, but no bad path)
    except OSError as exc:
        # Found by review: "[Errno 20] Not a directory: ..." named no setting.
        raise NodeDataUnusable(
            f"cannot keep node {identity}'s data in {path} ({exc.strerror or exc}): check "
            "data_dir in the config (a directory this node may create and write)"
        ) from exc
    except Exception as exc:  # rocksdict raises plain Exception("Corruption: ...")
        if not str(exc).startswith("Corruption"):
            raise
        # Found by review: RocksDB's own line alone left the operator without a next step.
        raise NodeDataCorrupt(
            f"the data of node {identity} in {path} is corrupt ({exc}). If the cluster's other "
            "nodes are up, move this directory aside and start the node with --rebuild "
            "(`paxoskv cluster start --rebuild NAME` for a local cluster): it catches up "
            "from them and votes again once that is safe (docs/ARCHITECTURE.md, 'A node's "
            "data')"
        ) from exc


def _warn_if_open_to_others(path: Path) -> None:
    """A data directory that exists with a mode letting other users in (one made before
    nodes created theirs 0700, or by hand) is left as it is, but said once per start."""
    if path.is_dir() and open_to_others(path):
        mode = stat.S_IMODE(path.stat().st_mode)
        log.warning(
            "the node's data directory is open to other users (anyone on this machine can "
            "read every key): `chmod 700` it; nodes create theirs 0700",
            extra={"data_dir": str(path), "mode": f"{mode:04o}"},
        )


def _claim(
    db: Rdict,
    path: Path,
    identity: NodeIdentity,
    first_start: bool,
    rebuild_groups: Sequence[int] | None,
    cluster_map: ShardMap | None,
) -> None:
    """Check the record, or write it (synced, before the open's WAL warm-up writes)."""
    stored = db.get(IDENTITY_KEY)
    if stored is not None:
        found = NodeIdentity.decode(stored)
        if found.node_id == identity.node_id and found.cluster_id != identity.cluster_id:
            # Found by review: the message said only "check data_dir".
            raise NodeDataMismatch(
                f"the data directory {path} belongs to node {found}, but the config's "
                f"cluster_id is {identity.cluster_id!r}: check cluster_id in the config (it "
                "cannot change after the first start) or data_dir"
            )
        if (found.cluster_id, found.node_id) != (identity.cluster_id, identity.node_id):
            raise NodeDataMismatch(
                f"the data directory {path} belongs to node {found}, not to node {identity}: "
                "check data_dir in the config (every node needs its own directory)"
            )
        if db.get(INCARNATION_KEY) is None:  # data from before incarnations
            db.put(INCARNATION_KEY, Incarnation.new(rebuilt=False).encode(), _synced())
        elif rebuild_groups is not None and not node_incarnation(db).rebuilt:
            # Found by an operations review: the flag was ignored without a word, and a
            # node its peers refused as "came back with new data" stayed refused.
            log.warning(
                "--rebuild changes nothing: this node's data directory holds data it did "
                "not rebuild; if its peers refuse it (a node that lost its data and was "
                "started with --bootstrap), move the directory aside and start it with "
                "--rebuild on an empty one",
                extra={"data_dir": str(path)},
            )
        if cluster_map is not None:
            recorded = db.get(CLUSTER_MAP_KEY)
            if recorded is None:  # data from before the record
                db.put(CLUSTER_MAP_KEY, encode_shard_map(cluster_map), _synced())
            elif (first := decode_shard_map(recorded)) != cluster_map:
                raise config_mismatch(cluster_map, first)
        return
    holds_data = _holds_data(db)
    if not first_start and rebuild_groups is None and not holds_data:
        raise NodeDataMissing(_missing(path, identity, created=True))
    rebuilding = rebuild_groups is not None and not holds_data
    batch = WriteBatch(raw_mode=True)
    batch.put(IDENTITY_KEY, identity.encode())
    batch.put(INCARNATION_KEY, Incarnation.new(rebuilt=rebuilding).encode())
    if cluster_map is not None:
        batch.put(CLUSTER_MAP_KEY, encode_shard_map(cluster_map))
    if rebuilding:
        assert rebuild_groups is not None
        for group_id in rebuild_groups:
            RocksStorage(db, group_id).stage(PersistBatch(rebuilding=True), batch)
    db.write(batch, _synced())


def _synced() -> WriteOptions:
    options = WriteOptions()
    options.sync = True
    return options


def _holds_data(db: Rdict) -> bool:
    """Whether any Paxos state or shard data is stored (keys below b"~": module doc)."""
    # The database is opened in raw mode (shard.disk): its keys are bytes.
    first = next(cast("Iterator[bytes]", iter(db.keys())), None)
    return first is not None and not first.startswith(b"~")


def _missing(path: Path, identity: NodeIdentity, *, created: bool = False) -> str:
    found = (
        "its database exists but holds nothing, as when a first start (--bootstrap) or a "
        "rebuild (--rebuild) was stopped before it finished: start it again the same way "
        "(a node that was ever part of the cluster must not come back with --bootstrap)"
        if created
        else "a node that voted and lost its data must not vote again as if it had not, so "
        "a node starts on an empty directory only with --bootstrap, on the cluster's first "
        "start"
    )
    return (
        f"no data for node {identity} in {path}: {found}. If this node's data was lost, start "
        "it with --rebuild (`paxoskv cluster start --rebuild NAME` for a local cluster): it "
        "catches up from the others and votes again once that is safe (docs/ARCHITECTURE.md, "
        "'A node's data')"
    )
