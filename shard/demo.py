"""`paxoskv demo`: a local cluster, a live workload, a leader killed and restarted, checked.

Theory of operation
-------------------
1. Start a `LocalCluster` (3 node processes, the meta group plus 3 data shards, 3 replicas
   each) in a temporary directory (or `--data-dir`) and wait until every group has a leader.
   A `--data-dir` must be new or empty: one that holds a cluster (stopped or running) or
   other files is refused before any node starts, so the demo's keys never mix with the
   user's (`paxoskv cluster start --data-dir DIR` is how to look at a cluster there).
2. Run a workload through one `txn.AsyncClient` on one event loop:
   - bank transfers between 26 accounts spread over every shard (cross-shard transactions,
     no overdraft), starting from a known total;
   - user sign-ups whose username and email are unique across the cluster: the users table
     (`user/...`) and the two unique indexes (`name/...`, `email/...`) live in different
     shards; workers sign up, rename and delete users from small pools of names, so they
     collide all the time; once a second a RACE sends several concurrent sign-ups for one
     fresh username (or email) — at most one may win.
   Each transaction runs in the demo's own retry loop (re-run from fresh reads on a
   retryable error) so conflicts, retries and unavailability can be counted.
3. Once a second: Status of every node (each group's leader, ballot, chosen index), a
   read-only snapshot across all shards that must sum to the initial total, and a snapshot
   of users and both indexes that must be exactly consistent (no shared username or email,
   every index entry points to a user that has it, every user has both entries).
4. At 1/3 of `--duration` (10 s into a run without one) SIGKILL the leader of the data shard
   holding the username index; measure the time until that group has a new leader and until
   a transaction touching it, begun after the kill, commits. At 2/3 (10 s after the kill)
   restart the killed node.
5. At the end (duration over, Ctrl-C or SIGTERM): stop the workload, run a last check,
   stop every node process by pid, remove the temporary directory, print a summary. The
   exit status is 1 if any invariant check failed.

The command line, the live view (an ANSI frame on a terminal, one plain line per second
otherwise) and the summary are `shard.demo_view`, which the CLI imports; this module, with
asyncio, grpc and the client, is imported only when the demo runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from paxos.ballot import ballot_from_text
from router.keys import prefix_end
from shard.demo_view import (
    CheckState,
    DemoState,
    FailoverState,
    GroupRow,
    LiveView,
    ReplicaRow,
    progress_line,
    render_frame,
    summary_lines,
)

if TYPE_CHECKING:
    from router.shard_map import ShardMap
    from shard.cluster import LocalCluster
    from txn import AsyncClient, AsyncTransaction

__all__ = ["DemoError", "run_demo", "uniqueness_problems"]

T = TypeVar("T")

PLAIN_KILL_AT_S = 10.0  # without --duration: kill this long into the workload
PLAIN_RESTART_AFTER_S = 10.0  # ... and restart the node this long after the kill
CLIENT_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 30
INITIAL_BALANCE = 1000
TRANSFER_WORKERS = 4
SIGNUP_WORKERS = 3
RACERS = 4
FAILOVER_POLL_S = 0.1
STOP_GRACE_S = CLIENT_TIMEOUT_S + 2.0
FINAL_CHECK_S = 15.0
LATENCY_WINDOW_S = 5.0
RATE_WINDOW_S = 2.0

# fmt: off
ACCOUNTS = [  # a key's first byte picks its shard: these spread over every shard
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken",
    "leo", "mallory", "nick", "olivia", "peggy", "quentin", "rupert", "sybil", "trent",
    "ursula", "victor", "walter", "xavier", "yvonne", "zoe",
]
USERNAMES = [  # small pools, so concurrent sign-ups and renames collide all the time
    "ada", "alan", "barbara", "dennis", "edsger", "grace", "john", "ken", "leslie", "linus",
    "margaret", "niklaus",
]
EMAILS = [
    f"{n}@example.org"
    for n in ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jan", "kim", "lou"]
]
# fmt: on


# ---------------------------------------------------------------------------- the command


class DemoError(Exception):
    """The demo cannot run as asked; printed as one line by the CLI."""


def run_demo(args: argparse.Namespace) -> int:
    """The `paxoskv demo` handler; returns the exit status (1 when an invariant broke)."""
    from shard.cluster import LocalCluster

    out = _Printer(sys.stdout)
    if args.data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="paxoskv-demo-"))
        temporary = True
    else:
        data_dir = Path(args.data_dir)
        _refuse_used_directory(data_dir)
        temporary = False
    cluster: LocalCluster | None = None  # set once we may have started node processes
    result: _Result | None = None
    cleanup: list[str] = []
    try:
        candidate = LocalCluster(data_dir, nodes=args.nodes, shards=args.shards)
        if candidate.config.replication < 3:
            raise DemoError("the demo needs 3 replicas per group (at least 3 nodes)")
        cluster = candidate
        out.line(f"paxoskv demo: starting {len(cluster.names)} nodes in {cluster.data_dir}")
        cluster.start(deadline_s=60.0, progress=lambda msg: out.line(f"  {msg}"))
        for state in cluster.node_states():
            out.line(f"  node {state.name} pid {state.pid} at {state.address}")
        # The cluster goes when the demo ends: the line is for a second terminal meanwhile.
        out.line(
            f"  while the demo runs, from another terminal: "
            f"export PAXOSKV_CLUSTER={cluster.env_value()}"
        )
        demo = _Demo(cluster, args.duration, out)
        result = asyncio.run(demo.run())
    finally:
        with _signals_ignored():
            if cluster is not None:
                cleanup = _stop_cluster(cluster, out)
            if temporary:
                if any("still running" in line for line in cleanup):
                    cleanup.append(f"kept {data_dir}: a node could not be stopped")
                else:
                    shutil.rmtree(data_dir, ignore_errors=True)
                    cleanup.append(f"removed the temporary directory {data_dir}")
            else:
                cleanup.append(
                    f"kept the cluster's data in {data_dir} (to look at it again: paxoskv "
                    f"cluster start --data-dir {shlex.quote(str(data_dir))})"
                )
            if result is None and cluster is not None:  # the CLI prints the error next
                for line in cleanup:
                    out.line(f"paxoskv demo: {line}")
    assert result is not None and cluster is not None
    for line in summary_lines(
        result.state,
        ran_s=result.ran_s,
        nodes=len(cluster.names),
        shards=len(cluster.config.split_points) + 1,
        stopped=cleanup,
    ):
        out.line(line)
    return 0 if all(check.ok for check in result.state.checks) else 1


def _refuse_used_directory(data_dir: Path) -> None:
    """DemoError unless `data_dir` is new or empty. The demo writes its workload into its
    cluster and stops the cluster at the end: in a directory that holds a cluster, stopped
    or running, it would mix its keys with the user's (a stopped one would be restarted and
    written to); in one that holds other files, its files with those."""
    from shard.cluster import CONFIG_NAME, ClusterProcesses, holds_other_files

    fresh = "the demo needs a new or empty directory (or no --data-dir: a temporary one)"
    if (data_dir / CONFIG_NAME).exists():
        processes = ClusterProcesses(data_dir)  # the pid files: the config may not load
        running = [
            f"{name} (pid {pid})"
            for name in processes.recorded_names()
            if (pid := processes.pid(name)) is not None
        ]
        shown = shlex.quote(str(data_dir))
        if running:
            what = f"a running cluster ({', '.join(running)})"
            look = f"paxoskv cluster status --data-dir {shown}"
        else:
            what = "a cluster"
            look = f"paxoskv cluster start --data-dir {shown}"
        raise DemoError(
            f"{data_dir} already holds {what}, and the demo would run its workload among "
            f"that cluster's data: {fresh}; to inspect that cluster: {look}"
        )
    if holds_other_files(data_dir):
        raise DemoError(f"{data_dir} holds files of something else: {fresh}")


def _stop_cluster(cluster: LocalCluster, out: _Printer) -> list[str]:
    """Stop every node of the cluster by pid; lines for the summary."""
    from shard.cluster import is_node_process

    lines: list[str] = []
    pids = {s.name: s.pid for s in cluster.node_states() if s.pid is not None}
    out.line(f"paxoskv demo: stopping {len(pids)} node processes")
    cluster.close()  # our Status channels first: nodes going away need not be reported
    try:
        killed = cluster.stop(grace_s=5.0)
    finally:
        # Safety net: every process this run spawned, if it is still one of our nodes.
        for name, proc in getattr(cluster, "_procs", {}).items():
            if proc.poll() is None and is_node_process(proc.pid, cluster.config_path, name):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                    proc.wait(timeout=10)
        cluster.close()
    running = [s for s in cluster.node_states() if s.pid is not None]
    listed = ", ".join(f"{name} {pid}" for name, pid in pids.items())
    text = f"stopped {len(pids)} node processes (pids: {listed or 'none'})"
    if killed:
        text += f"; {', '.join(killed)} needed SIGKILL"
    lines.append(text)
    for state in running:
        lines.append(f"node {state.name} (pid {state.pid}) is still running")
    return lines


@contextlib.contextmanager
def _signals_ignored() -> Any:
    """Ctrl-C during cleanup must not leave node processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class _Printer:
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------- checks


def uniqueness_problems(
    users: dict[str, bytes], names: dict[str, bytes], emails: dict[str, bytes]
) -> list[str]:
    """What is wrong with users and their unique indexes read at one timestamp.

    Args:
        users: user id -> JSON record with "username" and "email".
        names: username -> user id (the username index).
        emails: email -> user id (the email index).

    Returns:
        One line per problem; empty when no two users share a username or email, every
        index entry points to a user that has that username/email, and every user has both
        index entries.
    """
    problems: list[str] = []
    records = {uid: json.loads(raw) for uid, raw in users.items()}
    for field_name, index in (("username", names), ("email", emails)):
        owners: dict[str, list[str]] = {}
        for uid, record in sorted(records.items()):
            owners.setdefault(record[field_name], []).append(uid)
            if index.get(record[field_name]) != uid.encode():
                problems.append(
                    f"user {uid} has {field_name} {record[field_name]!r} but the index "
                    f"points to {index.get(record[field_name])!r}"
                )
        for value, uids in sorted(owners.items()):
            if len(uids) > 1:
                problems.append(f"users {', '.join(uids)} share the {field_name} {value!r}")
        for value, raw_uid in sorted(index.items()):
            record = records.get(raw_uid.decode())
            if record is None or record[field_name] != value:
                problems.append(
                    f"{field_name} index entry {value!r} points to user {raw_uid.decode()!r}, "
                    f"who {'does not exist' if record is None else 'has another ' + field_name}"
                )
    return problems


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


# ---------------------------------------------------------------------------- the run


class Refused(Exception):
    """The workload's own rules refused a transaction (nothing written, not retried)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "taken" or "overdraft"


class Outcome(Enum):
    COMMITTED = "committed"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    FAILED = "failed"


@dataclass(slots=True)
class _Result:
    state: DemoState
    ran_s: float


class _Demo:
    """One run of the workload against a started cluster (module docstring, steps 2-5)."""

    def __init__(self, cluster: LocalCluster, duration: float | None, out: _Printer) -> None:
        self.cluster = cluster
        self.duration = duration
        self.out = out
        self.view = LiveView(out.stream) if out.tty else None
        self.shard_map: ShardMap = cluster.shard_map
        self.rng = random.Random()
        self.tag = f"{self.rng.getrandbits(24):06x}"  # fresh keys even in a reused --data-dir
        self.accounts = [f"{name}/acct/{self.tag}".encode() for name in ACCOUNTS]
        self.expected_total = INITIAL_BALANCE * len(self.accounts)
        self.cluster_lock = threading.Lock()  # status polls, kill and restart, one at a time
        # counters
        self.committed: Counter[str] = Counter()
        self.conflicts = self.retries = self.unavailable = self.unknown = self.gave_up = 0
        self.taken = self.overdrafts = self.races = 0
        self.last_error = ""
        self.commit_times: deque[float] = deque()
        self.recent: deque[tuple[float, float]] = deque()  # (commit time, latency s)
        self.latencies: list[float] = []
        self.bank = CheckState("bank total")
        self.unique = CheckState("uniqueness")
        self.race_check = CheckState("sign-up races")
        self.bank_total: int | None = None
        self.users: int | None = None
        self.groups: list[GroupRow] = []
        self.nodes: dict[str, str] = {}
        self.failover: FailoverState | None = None
        self.kill_at_abs = 0.0
        self.events: list[str] = []
        self.next_event = ""
        self.interrupted = False

    # ------------------------------------------------------------------ keys

    def user_key(self, uid: str) -> bytes:
        return f"user/{self.tag}/{uid}".encode()

    def name_key(self, username: str) -> bytes:
        return f"name/{self.tag}/{username}".encode()

    def email_key(self, email: str) -> bytes:
        return f"email/{self.tag}/{email}".encode()

    def groups_of(self, keys: Iterable[bytes]) -> frozenset[int]:
        return frozenset(self.shard_map.locate(k).group_id for k in keys)

    # ------------------------------------------------------------------ main

    async def run(self) -> _Result:
        from txn import AsyncClient

        loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        self.client: AsyncClient = AsyncClient(
            self.cluster.env_value(),
            timeout_s=CLIENT_TIMEOUT_S,
            max_attempts=MAX_ATTEMPTS,
            tls=self.cluster.client_tls,
        )
        try:
            await self.client.connect()
            await self.client.run(self._open_accounts)
            self.out.line(
                f"paxoskv demo: {len(self.accounts)} accounts of {INITIAL_BALANCE} over groups "
                f"{sorted(self.groups_of(self.accounts))}; users, usernames and emails in groups "
                f"{self.shard_map.locate(self.user_key('x')).group_id}, "
                f"{self.shard_map.locate(self.name_key('x')).group_id}, "
                f"{self.shard_map.locate(self.email_key('x')).group_id}"
            )
            if self.view is not None:
                self.view.start()
            self.t0 = loop.time()
            return await self._run_workload()
        finally:
            if self.view is not None:
                self.view.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.client.close()

    def _interrupt(self) -> None:
        self.interrupted = True
        self.stop.set()

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    def event(self, text: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {text}"
        self.events.append(line)
        if self.view is None:
            self.out.line(line)

    async def _run_workload(self) -> _Result:
        rngs = [random.Random(self.rng.getrandbits(32)) for _ in range(16)]
        workers = [asyncio.create_task(self._transfers(rngs[i])) for i in range(TRANSFER_WORKERS)]
        workers += [
            asyncio.create_task(self._signups(rngs[TRANSFER_WORKERS + i]))
            for i in range(SIGNUP_WORKERS)
        ]
        workers.append(asyncio.create_task(self._races()))
        helpers = [
            asyncio.create_task(self._auditor()),
            asyncio.create_task(self._poller()),
            asyncio.create_task(self._faults()),
            asyncio.create_task(self._painter()),
        ]
        waiter = asyncio.create_task(self.stop.wait())
        try:
            tasks = {waiter, *workers, *helpers}
            timeout = self.duration
            while not self.stop.is_set():
                done, _ = await asyncio.wait(
                    tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # the duration is over
                for task in done:
                    if task is not waiter and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                tasks -= done
                timeout = (
                    None if self.duration is None else max(0.0, self.duration - self.elapsed())
                )
            ran_s = self.elapsed()
            how = "interrupted" if self.interrupted else "duration over"
            self.event(f"{how}: stopping the workload")
            self.stopping.set()
            _, pending = await asyncio.wait(workers, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in workers:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stopping.set()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            waiter.cancel()
        await self._final_check()
        await self._poll_once()
        state = self.state()
        if self.view is not None:
            self.view.draw(render_frame(state))
        else:
            self.out.line(progress_line(state))
        return _Result(state, ran_s)

    async def _sleep_until(self, at_s: float) -> bool:
        """Sleep until `at_s` seconds into the workload; False if the run is stopping."""
        delay = at_s - self.elapsed()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
        return not self.stopping.is_set()

    # ------------------------------------------------------------------ transactions

    async def txn(
        self,
        kind: str,
        groups: frozenset[int],
        body: Callable[[AsyncTransaction], Awaitable[None]],
    ) -> Outcome:
        """Run `body` in a transaction and commit; re-run it from fresh reads on a
        retryable error, counting conflicts, retries and unavailability."""
        from txn import CommitUnknown, Conflict, PaxosKVError, TransactionState, Unavailable

        loop = asyncio.get_running_loop()
        first = loop.time()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = loop.time()
            tx = self.client.transaction()
            try:
                await body(tx)
                await tx.commit()
            except Refused as exc:
                if exc.kind == "taken":
                    self.taken += 1
                else:
                    self.overdrafts += 1
                return Outcome.REFUSED
            except Conflict:
                self.conflicts += 1
            except Unavailable as exc:
                self.unavailable += 1
                self.last_error = str(exc)
            except CommitUnknown as exc:
                self.unknown += 1
                self.last_error = str(exc)
                return Outcome.UNKNOWN
            except PaxosKVError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.gave_up += 1
                return Outcome.FAILED
            else:
                self._committed(kind, groups, started, first, loop.time())
                return Outcome.COMMITTED
            finally:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
            if self.stopping.is_set():
                return Outcome.FAILED
            self.retries += 1
            await asyncio.sleep(self.rng.uniform(0, min(0.5, 0.005 * 2**attempt)))
        self.gave_up += 1
        return Outcome.FAILED

    def _committed(
        self, kind: str, groups: frozenset[int], started: float, first: float, now: float
    ) -> None:
        self.committed[kind] += 1
        self.commit_times.append(now)
        self.recent.append((now, now - first))
        self.latencies.append(now - first)
        failover = self.failover
        if (
            failover is not None
            and failover.resumed_after is None
            and failover.group_id in groups
            and started >= self.kill_at_abs
        ):
            failover.resumed_after = now - self.kill_at_abs
            self.event(
                f"commits on group {failover.group_id} resumed {failover.resumed_after:.2f} s "
                "after the kill"
            )

    async def _open_accounts(self, tx: AsyncTransaction) -> None:
        for key in self.accounts:
            tx.put(key, b"%d" % INITIAL_BALANCE)

    # -- bank

    async def _transfers(self, rng: random.Random) -> None:
        while not self.stopping.is_set():
            src, dst = rng.sample(self.accounts, 2)
            body = self._transfer(src, dst, rng.randint(1, 200))
            await self.txn("transfer", self.groups_of((src, dst)), body)

    def _transfer(
        self, src: bytes, dst: bytes, amount: int
    ) -> Callable[[AsyncTransaction], Awaitable[None]]:
        """A transfer's body: move `amount` unless `src` would be overdrawn."""

        async def transfer(tx: AsyncTransaction) -> None:
            a, b = await asyncio.gather(tx.get(src), tx.get(dst))
            balance_a, balance_b = int(a or b"0"), int(b or b"0")
            if balance_a < amount:
                raise Refused("overdraft", f"{src!r} has {balance_a} < {amount}")
            tx.put(src, b"%d" % (balance_a - amount))
            tx.put(dst, b"%d" % (balance_b + amount))

        return transfer

    # -- users

    def _user_groups(self) -> frozenset[int]:
        return self.groups_of((self.user_key("x"), self.name_key("x"), self.email_key("x")))

    async def signup(self, uid: str, username: str, email: str) -> Outcome:
        async def create(tx: AsyncTransaction) -> None:
            existing, owner_name, owner_email = await asyncio.gather(
                tx.get(self.user_key(uid)),
                tx.get(self.name_key(username)),
                tx.get(self.email_key(email)),
            )
            record = {"username": username, "email": email}
            if existing is not None:
                if json.loads(existing) == record:
                    return  # an earlier attempt committed (its answer said otherwise)
                raise Refused("taken", f"user id {uid} exists")
            if owner_name is not None:
                raise Refused("taken", f"username {username!r} is taken")
            if owner_email is not None:
                raise Refused("taken", f"email {email!r} is taken")
            tx.put(self.user_key(uid), json.dumps(record).encode())
            tx.put(self.name_key(username), uid.encode())
            tx.put(self.email_key(email), uid.encode())

        return await self.txn("signup", self._user_groups(), create)

    async def _pick_user(self, tx: AsyncTransaction, rng: random.Random) -> tuple[str, Any]:
        """A random user of the workers ("w..." ids). Racers' users ("r...") are left alone:
        deleting or renaming a race's winner mid-race would free its name for a second
        winner, and the race check would report a violation that is not one.

        The candidates come from a snapshot scan: any user will do, so the pick needs no
        phantom protection, and a scan inside the transaction would hold off every write to
        the scanned users until it commits (rule P6). The chosen user is read inside the
        transaction, so it must still be there, unchanged, when the transaction commits."""
        prefix = self.user_key("w")
        async with self.client.snapshot() as snap:
            rows = await snap.scan(prefix, prefix_end(prefix), limit=100)
        if not rows:
            return "", None
        key = rng.choice(rows)[0]
        raw = await tx.get(key)
        if raw is None:
            return "", None
        return key[len(self.user_key("")) :].decode(), json.loads(raw)

    async def delete_user(self, rng: random.Random, uid: str | None = None) -> Outcome:
        async def delete(tx: AsyncTransaction) -> None:
            if uid is None:
                victim, record = await self._pick_user(tx, rng)
            else:
                victim, raw = uid, await tx.get(self.user_key(uid))
                record = None if raw is None else json.loads(raw)
            if record is None:
                return
            tx.delete(self.user_key(victim))
            tx.delete(self.name_key(record["username"]))
            tx.delete(self.email_key(record["email"]))

        return await self.txn("delete", self._user_groups(), delete)

    async def rename_user(self, rng: random.Random, new_name: str) -> Outcome:
        async def rename(tx: AsyncTransaction) -> None:
            uid, record = await self._pick_user(tx, rng)
            if record is None or record["username"] == new_name:
                return
            if await tx.get(self.name_key(new_name)) is not None:
                raise Refused("taken", f"username {new_name!r} is taken")
            tx.delete(self.name_key(record["username"]))
            tx.put(self.name_key(new_name), uid.encode())
            tx.put(self.user_key(uid), json.dumps({**record, "username": new_name}).encode())

        return await self.txn("rename", self._user_groups(), rename)

    async def _signups(self, rng: random.Random) -> None:
        while not self.stopping.is_set():
            roll = rng.random()
            if roll < 0.55:
                uid = f"w{rng.getrandbits(32):08x}"  # chosen before the retry loop
                await self.signup(uid, rng.choice(USERNAMES), rng.choice(EMAILS))
            elif roll < 0.8:
                await self.delete_user(rng)
            else:
                await self.rename_user(rng, rng.choice(USERNAMES))

    async def _races(self) -> None:
        """Once a second, RACERS concurrent sign-ups for one fresh username (odd races: one
        fresh email): at most one may commit."""
        rng = random.Random(self.rng.getrandbits(32))
        i = 0
        while await self._sleep_until(self.elapsed() + 1.0):
            i += 1
            if i % 2:
                claims = [(f"racer{i}", f"racer{i}.{k}@example.net") for k in range(RACERS)]
                what = f"username 'racer{i}'"
            else:
                claims = [(f"racer{i}.{k}", f"racer{i}@example.net") for k in range(RACERS)]
                what = f"email 'racer{i}@example.net'"
            uids = [f"r{i}x{k}" for k in range(RACERS)]
            outcomes = await asyncio.gather(
                *(
                    self.signup(uid, name, email)
                    for uid, (name, email) in zip(uids, claims, strict=True)
                )
            )
            self.races += 1
            winners = [uid for uid, o in zip(uids, outcomes, strict=True) if o is Outcome.COMMITTED]
            if len(winners) > 1:
                self.race_check.failed += 1
                self.race_check.failures.append(
                    f"race {i} for {what}: {len(winners)} sign-ups committed ({winners})"
                )
            elif winners:
                self.race_check.passed += 1
            elif all(o is Outcome.REFUSED for o in outcomes):
                self.race_check.failed += 1
                self.race_check.failures.append(
                    f"race {i} for {what}: every sign-up was refused, but nobody had it"
                )
            else:
                self.race_check.skipped += 1  # unavailable or unknown: no verdict
            for uid in winners:
                await self.delete_user(rng, uid)

    # ------------------------------------------------------------------ checks

    async def _auditor(self) -> None:
        while await self._sleep_until(self.elapsed() + 1.0):
            await self._check_once(timeout_s=3.0)

    async def _check_once(self, timeout_s: float) -> bool:
        """One snapshot of accounts, users and indexes; False when it could not complete."""
        from txn import PaxosKVError

        try:
            async with asyncio.timeout(timeout_s):
                async with self.client.snapshot() as snap:
                    values = await asyncio.gather(*(snap.get(k) for k in self.accounts))
                    scans = await asyncio.gather(
                        *(
                            snap.scan(p, prefix_end(p), limit=1_000_000)
                            for p in (self.user_key(""), self.name_key(""), self.email_key(""))
                        )
                    )
                    read_ts = snap.read_ts
        except (PaxosKVError, TimeoutError):
            self.bank.skipped += 1
            self.unique.skipped += 1
            return False
        total = sum(int(v or b"0") for v in values)
        self.bank_total = total
        if total == self.expected_total:
            self.bank.passed += 1
        else:
            self.bank.failed += 1
            self.bank.failures.append(
                f"at timestamp {read_ts} the balances sum to {total}, not {self.expected_total}"
            )
        prefixes = (self.user_key(""), self.name_key(""), self.email_key(""))
        users, names, emails = (
            {k[len(p) :].decode(): v for k, v in rows}
            for p, rows in zip(prefixes, scans, strict=True)
        )
        self.users = len(users)
        problems = uniqueness_problems(users, names, emails)
        if problems:
            self.unique.failed += 1
            self.unique.failures.append(f"at timestamp {read_ts}: {problems[0]}")
        else:
            self.unique.passed += 1
        return True

    async def _final_check(self) -> None:
        end = asyncio.get_running_loop().time() + FINAL_CHECK_S
        while not await self._check_once(timeout_s=CLIENT_TIMEOUT_S):
            if asyncio.get_running_loop().time() > end:
                return
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ cluster status

    async def _with_cluster(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self.cluster_lock:
                return fn()

        return await asyncio.to_thread(locked)

    async def _poller(self) -> None:
        while True:
            await self._poll_once()
            if not await self._sleep_until(self.elapsed() + 1.0):
                return

    async def _poll_once(self) -> None:
        try:
            self.groups, self.nodes = await self._with_cluster(self._status)
        except Exception as exc:  # a node vanishing mid-poll: show the last status
            self.last_error = f"status poll: {exc}"

    def _status(self) -> tuple[list[GroupRow], dict[str, str]]:
        cluster = self.cluster
        states = cluster.node_states()
        statuses = cluster.status_all(timeout_s=0.5)
        nodes = {}
        for s in states:
            if s.pid is None:
                nodes[s.name] = "down"
            else:
                answering = statuses.get(s.name) is not None
                nodes[s.name] = f"pid {s.pid} {s.state if answering else 'not answering'}"
        labels = {0: "meta"}
        for desc in self.shard_map.ranges:
            labels[desc.group_id] = desc.label
        rows = []
        for group_id in self.shard_map.group_ids():
            replicas = []
            claims: dict[str, str] = {}
            follows: Counter[int] = Counter()
            for node_id in self.shard_map.replicas(group_id):
                name = cluster.name_of(node_id)
                status = statuses.get(name)
                found = None
                if status is not None:
                    found = next((g for g in status.groups if g.group_id == group_id), None)
                if found is None:
                    replicas.append(ReplicaRow(name, "down", 0, 0))
                    continue
                replicas.append(
                    ReplicaRow(name, found.role or "?", found.chosen_index, found.applied_index)
                )
                if found.leader_id:
                    follows[found.leader_id] += 1
                if found.role == "leader":
                    claims[name] = found.ballot
            quorum = len(replicas) // 2 + 1
            leader, ballot = None, ""
            for name, claimed in claims.items():
                node_id = cluster.node(name).id
                if follows[node_id] >= quorum and (
                    leader is None or ballot_from_text(claimed) > ballot_from_text(ballot)
                ):
                    leader, ballot = name, claimed
            chosen = max((r.chosen for r in replicas if r.name == leader), default=0)
            rows.append(
                GroupRow(
                    group_id, labels.get(group_id, "?"), leader, ballot, chosen, tuple(replicas)
                )
            )
        return rows, nodes

    # ------------------------------------------------------------------ the failover

    def _victim_group(self) -> int:
        """The data group holding the username index: every sign-up touches it."""
        return self.shard_map.locate(self.name_key("x")).group_id

    async def _faults(self) -> None:
        kill_at = self.duration / 3 if self.duration else PLAIN_KILL_AT_S
        restart_at = 2 * self.duration / 3 if self.duration else kill_at + PLAIN_RESTART_AFTER_S
        group = self._victim_group()
        self.next_event = f"SIGKILL the leader of group {group} at {kill_at:.1f} s"
        if not await self._sleep_until(kill_at):
            return
        victim = None
        while victim is None:
            victim = await self._with_cluster(lambda: self.cluster.leader_of(group, 0.5))
            if victim is None and not await self._sleep_until(self.elapsed() + FAILOVER_POLL_S):
                return
        pid = await self._with_cluster(lambda: self.cluster.pid(victim))
        await self._with_cluster(lambda: self.cluster.kill(victim, signal.SIGKILL))
        self.kill_at_abs = asyncio.get_running_loop().time()
        self.failover = FailoverState(group, victim, pid or 0, killed_at=self.elapsed())
        self.event(f"SIGKILL {victim} (pid {pid}), the leader of group {group}")
        self.next_event = f"restart {victim} at {restart_at:.1f} s"
        while True:
            leader = await self._with_cluster(lambda: self.cluster.leader_of(group, 0.5))
            if leader is not None and leader != victim:
                self.failover.new_leader = leader
                self.failover.leader_after = asyncio.get_running_loop().time() - self.kill_at_abs
                self.event(
                    f"group {group} has a new leader: {leader}, seen by a status poll "
                    f"{self.failover.leader_after:.2f} s after the kill"
                )
                break
            if not await self._sleep_until(self.elapsed() + FAILOVER_POLL_S):
                return
        if not await self._sleep_until(restart_at):
            return
        await self._with_cluster(lambda: self.cluster.restart(victim))
        new_pid = await self._with_cluster(lambda: self.cluster.pid(victim))
        self.failover.restarted_at = self.elapsed()
        self.failover.restarted_pid = new_pid
        self.event(f"restarted {victim} (pid {new_pid}); it recovers from its data and catches up")
        self.next_event = ""

    # ------------------------------------------------------------------ the view

    async def _painter(self) -> None:
        while await self._sleep_until(self.elapsed() + 1.0):
            state = self.state()
            if self.view is not None:
                self.view.draw(render_frame(state))
            else:
                self.out.line(progress_line(state))

    def state(self) -> DemoState:
        now = asyncio.get_running_loop().time()
        while self.commit_times and self.commit_times[0] < now - RATE_WINDOW_S:
            self.commit_times.popleft()
        while self.recent and self.recent[0][0] < now - LATENCY_WINDOW_S:
            self.recent.popleft()
        if self.stopping.is_set():  # the summary: over the whole run
            window = sorted(self.latencies)
            rate = sum(self.committed.values()) / max(self.elapsed(), 1e-9)
        else:
            window = sorted(lat for _, lat in self.recent)
            rate = len(self.commit_times) / min(RATE_WINDOW_S, max(self.elapsed(), 1e-9))
        p50, p99 = _percentile(window, 0.50), _percentile(window, 0.99)
        return DemoState(
            elapsed=self.elapsed(),
            duration=self.duration,
            nodes=dict(self.nodes),
            groups=list(self.groups),
            txn_per_s=rate,
            p50_ms=None if p50 is None else p50 * 1000,
            p99_ms=None if p99 is None else p99 * 1000,
            committed=dict(self.committed),
            conflicts=self.conflicts,
            retries=self.retries,
            unavailable=self.unavailable,
            unknown=self.unknown,
            gave_up=self.gave_up,
            taken=self.taken,
            overdrafts=self.overdrafts,
            races=self.races,
            bank_total=self.bank_total,
            expected_total=self.expected_total,
            users=self.users,
            checks=[self.bank, self.unique, self.race_check],
            failover=self.failover,
            next_event=self.next_event,
            events=list(self.events),
            last_error=self.last_error,
        )
