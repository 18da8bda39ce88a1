"""The chaos workloads: what each logical client does, how it is recorded, how it is checked.

Every workload spreads its keys over every shard (one prefix per shard range, so
cross-shard transactions really are two-phase) and records each operation in the
`History` with one invoke and one completion (shard.chaos.history conventions). One
operation is ONE attempt: no client-side retry loop (a retry would hide what happened).

- `RegisterWorkload` — single-key `get`/`put`/`cas` on a few keys; written values are
  unique per key (one counter), which is what makes the linearizability search cheap.
  Op: ``{"f": "read"|"write"|"cas", "key": k, "value": v | [expected, new] | null}``; a
  cas whose condition did not hold is ``fail`` (it had no effect).
- `BankWorkload` — accounts on every shard; a transfer reads two balances and moves an
  amount (``fail`` when the balance is short: the transaction wrote nothing); a read is a
  snapshot of every account. Ops: ``{"f": "transfer", "value": {"from","to","amount"}}``
  and ``{"f": "read", "value": {account: balance}}``.
- `ListAppendWorkload` — transactions of 1-4 micro-ops ``["append", k, v]`` /
  ``["r", k, list-or-null]`` over a rolling set of keys on several shards (a key retires
  after `max_appends_per_key` appends, so reads stay short). An append is read-modify-write
  of a comma-separated list inside the transaction. Op: ``{"f": "txn", "value": [...]}``.

`final_reads` runs after the faults healed: every key or account is read (linearizably, or
in one snapshot for the bank) and recorded like any other op, so the checkers see it.
`check` runs the workload's checker and counts acknowledged writes lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from shard.chaos import bank_checker, elle, linearizability
from shard.chaos.history import History, Worker, client_ops, completion_type, error_text
from txn.client import AsyncClient

__all__ = [
    "WORKLOADS",
    "BankWorkload",
    "ListAppendWorkload",
    "RegisterWorkload",
    "Workload",
    "shard_prefixes",
]

Op = dict[str, Any]


def shard_prefixes(starts: Sequence[bytes]) -> list[str]:
    """One key prefix per shard range, given the ranges' start keys in order: the start key
    itself ("0" for the first range, which starts at b""). Keys are `prefix/name`, which
    sorts inside the range as long as the next split point does not start with `prefix/`.
    """
    return [start.decode() if start else "0" for start in starts]


class Workload:
    """Base: per-op recording around an async body; subclasses define ops and checks."""

    name = "workload"

    def __init__(self, prefixes: Sequence[str], *, timeout_s: float = 3.0) -> None:
        self.prefixes = list(prefixes)
        self.timeout_s = timeout_s

    def key_for(self, index: int, stem: str) -> str:
        return f"{self.prefixes[index % len(self.prefixes)]}/{stem}"

    async def setup(self, client: AsyncClient) -> None:
        """Prepare initial state before any worker starts (default: nothing)."""

    async def step(
        self, client: AsyncClient, worker: Worker, rng: random.Random, history: History
    ) -> Op:
        """Invoke one operation, run it, record its completion; returns the completion."""
        raise NotImplementedError

    async def final_reads(self, client: AsyncClient, history: History, process: int) -> int:
        """Read everything at the end; returns the next free process id."""
        raise NotImplementedError

    def check(self, history: Sequence[Op]) -> dict[str, Any]:
        """{"valid", "checker", "anomalies", "lost_writes", ...} for the report."""
        raise NotImplementedError

    def describe(self, result: dict[str, Any]) -> str:
        raise NotImplementedError

    async def _run(
        self,
        history: History,
        worker: Worker,
        f: str,
        value: Any,
        body: Callable[[], Awaitable[tuple[str, Any]]],
        *,
        read_only: bool,
        **fields: Any,
    ) -> Op:
        """Record invoke, await `body` (-> (type, completion value)), record completion.

        Exceptions become ``fail`` or ``info`` (history.completion_type); after ``info`` the
        worker continues under a new process id. A hard timeout above the client's own
        deadline guards against a hung call.
        """
        invocation = history.invoke(worker.process, f, value, **fields)
        try:
            kind, result = await asyncio.wait_for(body(), self.timeout_s + 5.0)
        except asyncio.CancelledError:
            history.complete(invocation, "info", value, error="cancelled")
            worker.crashed()
            raise
        except Exception as exc:
            kind = completion_type(exc, read_only=read_only)
            done = history.complete(invocation, kind, value, error=error_text(exc))
            if kind == "info":
                worker.crashed()
            return done
        return history.complete(invocation, kind, result)


# ---------------------------------------------------------------- register


def _int_or_raw(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return data.decode(errors="replace")


class RegisterWorkload(Workload):
    """Single-key read / write / cas on `keys` keys spread over the shards."""

    name = "register"

    def __init__(self, prefixes: Sequence[str], *, keys: int = 4, timeout_s: float = 3.0) -> None:
        super().__init__(prefixes, timeout_s=timeout_s)
        self.keys = [self.key_for(i, f"reg{i}") for i in range(keys)]
        self._next_value = 0
        self._last_seen: dict[str, Any] = {}

    def _fresh(self) -> int:
        self._next_value += 1
        return self._next_value

    async def step(
        self, client: AsyncClient, worker: Worker, rng: random.Random, history: History
    ) -> Op:
        key = rng.choice(self.keys)
        raw = key.encode()
        f = rng.choices(["read", "write", "cas"], [2, 1, 1])[0]
        if f == "read":

            async def read() -> tuple[str, Any]:
                value = _int_or_raw(await client.get(raw, timeout_s=self.timeout_s))
                self._last_seen[key] = value
                return "ok", value

            return await self._run(history, worker, "read", None, read, read_only=True, key=key)
        new = self._fresh()
        if f == "write":

            async def write() -> tuple[str, Any]:
                await client.put(raw, str(new).encode(), timeout_s=self.timeout_s)
                self._last_seen[key] = new
                return "ok", new

            return await self._run(history, worker, "write", new, write, read_only=False, key=key)
        expected = self._last_seen.get(key)

        async def cas() -> tuple[str, Any]:
            if expected is None:
                result = await client.cas(
                    raw, expect_absent=True, new_value=str(new).encode(), timeout_s=self.timeout_s
                )
            else:
                result = await client.cas(
                    raw,
                    expected_value=str(expected).encode(),
                    new_value=str(new).encode(),
                    timeout_s=self.timeout_s,
                )
            if result.succeeded:
                self._last_seen[key] = new
                return "ok", [expected, new]
            current = _int_or_raw(result.current_value)
            self._last_seen[key] = current
            # What the failed compare saw is a read (linearizability checks it as one).
            return "fail", {"current": current}

        return await self._run(
            history, worker, "cas", [expected, new], cas, read_only=False, key=key
        )

    async def final_reads(self, client: AsyncClient, history: History, process: int) -> int:
        for key in self.keys:
            raw = key.encode()

            async def read(raw: bytes = raw) -> tuple[str, Any]:
                return "ok", _int_or_raw(await client.get(raw, timeout_s=self.timeout_s))

            process = await _until_ok(
                history, process, partial(self._final, history, body=read, key=key)
            )
        return process

    async def _final(
        self,
        history: History,
        process: int,
        body: Callable[[], Awaitable[tuple[str, Any]]],
        key: str,
    ) -> Op:
        worker = Worker(process, 1)
        return await self._run(
            history, worker, "read", None, body, read_only=True, key=key, final=True
        )

    def check(self, history: Sequence[Op]) -> dict[str, Any]:
        result = linearizability.check(history)
        lost = register_lost_writes(history)
        return {
            "checker": "linearizability (WGL per key)",
            "valid": result["valid"],
            "anomalies": result["anomalies"],
            "unknown_keys": result["unknown_keys"],
            "keys": {
                k: {f: r.get(f) for f in ("valid", "ops", "info_dropped", "final_values")}
                for k, r in result["keys"].items()
            },
            "lost_writes": lost,
            "summary": linearizability.describe(result),
        }

    def describe(self, result: dict[str, Any]) -> str:
        return str(result["summary"])


def register_lost_writes(history: Sequence[Op]) -> list[dict[str, Any]]:
    """Acknowledged writes (write or cas) lost at the end, per key: the ok writes not
    followed in real time by another ok write are "latest"; the final read must return the
    value of one of them, or of an op that is not strictly before them (an info write may
    land late). Latest writes that strictly follow the final value's writer were lost."""
    invokes: dict[Any, Op] = {}
    writes: dict[str, list[tuple[Op, Op | None]]] = {}
    finals: dict[str, Any] = {}
    for op in client_ops(history):
        if op["type"] == "invoke":
            invokes[op["process"]] = op
            continue
        inv = invokes.pop(op["process"], None)
        if inv is None:
            continue
        if op["f"] in ("write", "cas") and op["type"] in ("ok", "info"):
            writes.setdefault(inv["key"], []).append((inv, op))
        if op["f"] == "read" and op["type"] == "ok" and op.get("final"):
            finals[inv["key"]] = op["value"]
    for inv in invokes.values():  # never completed: like info
        if inv["f"] in ("write", "cas"):
            writes.setdefault(inv["key"], []).append((inv, None))
    lost = []
    for key, ops in writes.items():
        if key not in finals and any(c is not None and c["type"] == "ok" for _i, c in ops):
            lost.append(_unread(key))
    for key, final in finals.items():
        ops = writes.get(key, [])
        ok = [(i, c) for i, c in ops if c is not None and c["type"] == "ok"]
        # Not followed by another ok write <=> completed at or after the last ok invoke.
        last_invoke = max((i["time"] for i, _c in ok), default=0)
        latest = [(i, c) for i, c in ok if c["time"] >= last_invoke]

        def written(inv: Op) -> Any:
            return inv["value"][1] if inv["f"] == "cas" else inv["value"]

        source = [(i, c) for i, c in ops if written(i) == final]
        for i, c in latest:
            if written(i) == final:
                continue
            # Lost when the final value's writer (if any) surely finished before i began.
            if not source or all(
                sc is not None and sc["type"] == "ok" and sc["time"] < i["time"]
                for _si, sc in source
            ):
                lost.append(
                    {"key": key, "value": written(i), "acknowledged_at": c["time"], "final": final}
                )
    return lost


# ---------------------------------------------------------------- bank


class BankWorkload(Workload):
    """Transfers between `accounts` accounts spread over the shards; snapshot reads."""

    name = "bank"

    def __init__(
        self,
        prefixes: Sequence[str],
        *,
        accounts: int = 5,
        initial: int = 20,
        max_transfer: int = 5,
        timeout_s: float = 3.0,
    ) -> None:
        super().__init__(prefixes, timeout_s=timeout_s)
        self.accounts = [self.key_for(i, f"acct{i}") for i in range(accounts)]
        self.initial = initial
        self.total = initial * accounts
        self.max_transfer = max_transfer

    async def setup(self, client: AsyncClient) -> None:
        async def body() -> None:
            tx = client.transaction()
            for account in self.accounts:
                tx.put(account.encode(), str(self.initial).encode())
            await tx.commit()

        for attempt in range(20):
            try:
                await body()
                return
            except Exception:
                # Unknown outcomes are fine to retry here: setup writes the same values.
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError("could not write the initial bank balances")

    async def step(
        self, client: AsyncClient, worker: Worker, rng: random.Random, history: History
    ) -> Op:
        if rng.random() < 0.5:
            return await self._read(client, worker, history)
        src, dst = rng.sample(self.accounts, 2)
        amount = rng.randint(1, self.max_transfer)
        # Half the transfers read for update, so update locks and their waits face the nemesis.
        lock = rng.random() < 0.5

        async def transfer() -> tuple[str, Any]:
            tx = client.transaction()
            a = int(await tx.get(src.encode(), for_update=lock) or b"0")
            b = int(await tx.get(dst.encode(), for_update=lock) or b"0")
            value = {"from": src, "to": dst, "amount": amount}
            if a < amount:
                tx.abort()
                return "fail", value  # nothing written
            tx.put(src.encode(), str(a - amount).encode())
            tx.put(dst.encode(), str(b + amount).encode())
            await tx.commit()
            return "ok", value

        return await self._run(
            history,
            worker,
            "transfer",
            {"from": src, "to": dst, "amount": amount},
            transfer,
            read_only=False,
        )

    async def _read(
        self, client: AsyncClient, worker: Worker, history: History, **fields: Any
    ) -> Op:
        async def read() -> tuple[str, Any]:
            async with client.snapshot() as snap:
                values = await asyncio.gather(*(snap.get(a.encode()) for a in self.accounts))
            return "ok", {a: _int_or_raw(v) for a, v in zip(self.accounts, values, strict=True)}

        return await self._run(history, worker, "read", None, read, read_only=True, **fields)

    async def final_reads(self, client: AsyncClient, history: History, process: int) -> int:
        """One read-write transaction that reads every account and commits (the commit
        validates every read: linearizable, not only a consistent snapshot)."""

        async def read() -> tuple[str, Any]:
            tx = client.transaction()
            values = [await tx.get(a.encode()) for a in self.accounts]
            await tx.commit()
            return "ok", {a: _int_or_raw(v) for a, v in zip(self.accounts, values, strict=True)}

        return await _until_ok(
            history,
            process,
            lambda p: self._run(
                history, Worker(p, 1), "read", None, read, read_only=True, final=True
            ),
        )

    def check(self, history: Sequence[Op]) -> dict[str, Any]:
        result = bank_checker.check(history, self.accounts, self.total, initial=self.initial)
        return {
            "checker": "bank (strict serializability of snapshot reads)",
            **result,
            "anomalies": result["anomalies"],
            "lost_writes": bank_lost_writes(history),
            "summary": bank_checker.describe(result),
        }

    def describe(self, result: dict[str, Any]) -> str:
        return str(result["summary"])


def bank_lost_writes(history: Sequence[Op]) -> list[dict[str, Any]] | None:
    """Without an ok final read, every account an acknowledged transfer moved (`_unread`).
    With one, None: the checker reports a lost transfer (final-balance), not per write."""
    acked: dict[str, None] = {}
    for op in client_ops(history):
        if op["type"] != "ok":
            continue
        if op["f"] == "read" and op.get("final"):
            return None
        if op["f"] == "transfer":
            acked.update(dict.fromkeys((op["value"]["from"], op["value"]["to"])))
    return [_unread(account) for account in acked]


# ---------------------------------------------------------------- list-append


def _decode_list(data: bytes | None) -> list[Any] | None:
    if data is None:
        return None
    if not data:
        return []
    out: list[Any] = []
    for part in data.split(b","):
        try:
            out.append(int(part))
        except ValueError:
            out.append(part.decode(errors="replace"))
    return out


class ListAppendWorkload(Workload):
    """Transactions of appends and reads over a rolling set of keys on several shards."""

    name = "list-append"

    def __init__(
        self,
        prefixes: Sequence[str],
        *,
        active_keys: int = 6,
        max_appends_per_key: int = 24,
        max_ops: int = 4,
        timeout_s: float = 3.0,
    ) -> None:
        super().__init__(prefixes, timeout_s=timeout_s)
        self.max_appends = max_appends_per_key
        self.max_ops = max_ops
        self._key_counter = 0
        self._active: list[str] = []
        self._appends: dict[str, int] = {}
        self.all_keys: list[str] = []
        self._next_value = 0
        for _ in range(active_keys):
            self._active.append(self._new_key())

    def _new_key(self) -> str:
        key = self.key_for(self._key_counter, f"l{self._key_counter}")
        self._key_counter += 1
        self.all_keys.append(key)
        self._appends[key] = 0
        return key

    def _append_target(self, rng: random.Random) -> tuple[str, int]:
        i = rng.randrange(len(self._active))
        key = self._active[i]
        self._appends[key] += 1
        if self._appends[key] >= self.max_appends:
            self._active[i] = self._new_key()
        self._next_value += 1
        return key, self._next_value

    async def step(
        self, client: AsyncClient, worker: Worker, rng: random.Random, history: History
    ) -> Op:
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, self.max_ops)):
            if rng.random() < 0.5:
                key, value = self._append_target(rng)
                mops.append(["append", key, value])
            else:
                mops.append(["r", rng.choice(self._active), None])
        read_only = all(m[0] == "r" for m in mops)
        return await self._run(
            history, worker, "txn", mops, lambda: self._execute(client, mops), read_only=read_only
        )

    async def _execute(self, client: AsyncClient, mops: list[list[Any]]) -> tuple[str, Any]:
        tx = client.transaction()
        done: list[list[Any]] = []
        for kind, key, value in mops:
            current = _decode_list(await tx.get(key.encode()))
            if kind == "r":
                done.append(["r", key, current])
            else:
                items = [*(current or []), value]
                tx.put(key.encode(), ",".join(str(v) for v in items).encode())
                done.append(["append", key, value])
        await tx.commit()
        return "ok", done

    async def final_reads(self, client: AsyncClient, history: History, process: int) -> int:
        for start in range(0, len(self.all_keys), 40):
            mops = [["r", k, None] for k in self.all_keys[start : start + 40]]

            async def op(p: int, mops: list[list[Any]] = mops) -> Op:
                return await self._run(
                    history,
                    Worker(p, 1),
                    "txn",
                    mops,
                    lambda: self._execute(client, mops),
                    read_only=True,
                    final=True,
                )

            process = await _until_ok(history, process, op)
        return process

    def check(self, history: Sequence[Op]) -> dict[str, Any]:
        result = elle.check(list(client_ops(history)), realtime=True)
        torn = list_append_torn(history)
        if torn:
            result = {
                **result,
                "valid": False,
                "anomaly_types": [*result["anomaly_types"], "torn-transaction"],
                "anomalies": {**result["anomalies"], "torn-transaction": torn},
            }
        lost = list_append_lost_writes(history)
        return {
            "checker": "elle list-append (strict serializability)",
            **result,
            "lost_writes": lost,
            "summary": elle.describe(result),
        }

    def describe(self, result: dict[str, Any]) -> str:
        return str(result["summary"])


def _final_lists(history: Sequence[Op]) -> dict[str, list[Any]]:
    """Each key's list as the final reads (ok, after the heal) saw it."""
    final: dict[str, list[Any]] = {}
    for op in client_ops(history):
        if op["type"] == "ok" and op.get("final") and op.get("f") == "txn":
            for mop in op["value"]:
                if mop[0] == "r":
                    final[mop[1]] = list(mop[2] or [])
    return final


def list_append_lost_writes(history: Sequence[Op]) -> list[dict[str, Any]]:
    """Acknowledged appends missing from the final read of their key."""
    final = _final_lists(history)
    acked = [
        (mop[1], mop[2], op["time"])
        for op in client_ops(history)
        if op["type"] == "ok" and op.get("f") == "txn" and not op.get("final")
        for mop in op["value"]
        if mop[0] == "append"
    ]
    lost = [_unread(key) for key in dict.fromkeys(k for k, _v, _at in acked if k not in final)]
    for key, value, at in acked:
        if key in final and value not in final[key]:
            lost.append({"key": key, "value": value, "acknowledged_at": at})
    return lost


def _unread(key: str) -> dict[str, Any]:
    """A key with acknowledged writes that no final read covered: its writes cannot be
    shown kept, so the run does not pass (a history cut before its final reads passed,
    found by review)."""
    return {"key": key, "value": None, "final": "no final read of this key"}


def list_append_torn(history: Sequence[Op]) -> list[str]:
    """Transactions, acknowledged or indeterminate, whose appends the final reads show only
    in part: Elle needs a transaction's effects seen to reason about it, and an info
    transaction applied at one participant and not at another is seen half, so the
    final state itself must say all or nothing."""
    final = _final_lists(history)
    torn = []
    for op in client_ops(history):
        if op["type"] not in ("ok", "info") or op.get("f") != "txn" or op.get("final"):
            continue
        appends = [(m[1], m[2]) for m in op["value"] if m[0] == "append" and m[1] in final]
        seen = [value in final[key] for key, value in appends]
        if any(seen) and not all(seen):
            shown = ", ".join(
                f"{k}+{v}{'' if s else ' (missing)'}"
                for (k, v), s in zip(appends, seen, strict=True)
            )
            torn.append(f"{op['type']} transaction of process {op['process']}: {shown}")
    return torn


async def _until_ok(
    history: History,
    process: int,
    attempt: Callable[[int], Awaitable[Op]],
    deadline_s: float = 60.0,
) -> int:
    """Repeat a (recorded, read-only) final read until it completes ok; returns the next
    free process id. Raises RuntimeError when the cluster never answers."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        done = await attempt(process)
        process += 1
        if done["type"] == "ok":
            return process
        if loop.time() > end:
            raise RuntimeError(f"final reads did not succeed within {deadline_s:.0f} s: {done}")
        await asyncio.sleep(0.2)


WORKLOADS: dict[str, type[Workload]] = {
    "register": RegisterWorkload,
    "bank": BankWorkload,
    "list-append": ListAppendWorkload,
}
