"""Bank transfers across shards: no overdraft, and the total never changes.

Run against a running cluster (see examples/README.md)::

    python examples/bank_transfer.py                  # with PAXOSKV_CLUSTER set
    python examples/bank_transfer.py --cluster HOST:PORT[,HOST:PORT...]

Accounts are named after people, and a key's first byte picks its shard (with the default 3
shards: alice..ivan in the first, judy..quinn in the second, rupert..zoe in the third), so
most transfers are cross-shard transactions committed by two-phase commit over Paxos groups.

A transfer reads both balances, refuses to overdraw (raising `Overdraft`, which aborts the
transaction: nothing is written) and writes both new balances; it also refuses a transfer to
the same account, a non-positive amount and an account that does not exist (each would
create or destroy money). Threads run transfers concurrently; conflicting ones are re-run
from fresh reads by `client.run`, and the client settles a commit whose answer was lost
(`settle_unknown=True`) instead of raising `CommitUnknown`, so no transfer is applied twice.
Meanwhile, and at the end, a read-only snapshot (one timestamp across all shards) must
always sum to the initial total and show no negative balance.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading

from txn import Client, PaxosKVError, Transaction

RUN = secrets.token_hex(3)
NAMES = ["alice", "bob", "carol", "judy", "mallory", "oscar", "rupert", "trent", "victor"]
INITIAL = 100


def account(name: str) -> bytes:
    return f"{name}/{RUN}/balance".encode()


class Overdraft(Exception):
    """The source account holds less than the amount. Not a paxoskv error, so `client.run`
    does not retry it; the transaction is aborted and nothing is written."""


class InvalidTransfer(ValueError):
    """A transfer that would create or destroy money (to itself, a non-positive amount, an
    unknown account); refused before anything is written."""


def transfer(tx: Transaction, src: str, dst: str, amount: int) -> None:
    """Move `amount` from `src` to `dst`, all or nothing.

    Balances are hot keys that every transfer writes: reading them for update makes
    concurrent transfers of the same account queue at its leader instead of racing.
    """
    if src == dst:  # both writes would go to one key, the second one winning: +amount
        raise InvalidTransfer(f"a transfer from {src} to itself")
    if amount <= 0:  # a negative amount would pass the overdraft check the other way
        raise InvalidTransfer(f"amount {amount} is not positive")
    raw_a = tx.get(account(src), for_update=True)
    raw_b = tx.get(account(dst), for_update=True)
    if raw_a is None or raw_b is None:  # a mistyped name must not open an account
        raise InvalidTransfer(f"no account {src if raw_a is None else dst!r}")
    a, b = int(raw_a), int(raw_b)
    if a < amount:
        raise Overdraft(f"{src} has {a}, cannot send {amount}")
    tx.put(account(src), b"%d" % (a - amount))
    tx.put(account(dst), b"%d" % (b + amount))


def balances(client: Client) -> dict[str, int]:
    """Every balance at ONE timestamp (a read-only snapshot across all shards)."""
    with client.snapshot() as snap:
        return {name: int(snap.get(account(name)) or b"0") for name in NAMES}


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def audit(client: Client, total: int) -> dict[str, int]:
    seen = balances(client)
    expect(sum(seen.values()) == total, f"total is {sum(seen.values())}, not {total}: {seen}")
    expect(min(seen.values()) >= 0, f"a negative balance: {seen}")
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--transfers", type=int, default=25, help="transfers per thread")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    # settle_unknown: a commit whose answer was lost is settled (committed, or aborted for
    # good and run again) before run() returns, so no transfer is applied twice.
    with Client(args.cluster, max_attempts=200, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries

        # Open every account in one transaction: all appear at once. Through run(), so a
        # lost commit answer is settled too (the writes are the same at every run).
        def open_accounts(tx: Transaction) -> None:
            for name in NAMES:
                tx.put(account(name), b"%d" % INITIAL)

        client.run(open_accounts)
        total = INITIAL * len(NAMES)
        shard_map = client.async_client.routing.shard_map
        assert shard_map is not None
        groups = sorted({shard_map.locate(account(n)).group_id for n in NAMES})
        print(f"run {RUN}: {len(NAMES)} accounts of {INITIAL} in groups {groups}, total {total}")

        # An overdraft is refused and changes nothing.
        before = audit(client, total)
        try:
            client.run(transfer, "alice", "bob", INITIAL + 1)
            raise AssertionError("an overdraft was allowed")
        except Overdraft as exc:
            print(f"refused as expected: {exc}")
        for src, dst, amount in (("alice", "alice", 40), ("bob", "judy", -150), ("bob", "bobb", 1)):
            try:
                client.run(transfer, src, dst, amount)
                raise AssertionError(f"transfer({src}, {dst}, {amount}) was allowed")
            except InvalidTransfer as exc:
                print(f"refused as expected: {exc}")
        expect(balances(client) == before, "a refused transfer changed a balance")

        # Concurrent random transfers; an auditor checks snapshots meanwhile.
        done = {"committed": 0, "overdrafts": 0, "audits": 0}
        lock = threading.Lock()
        errors: list[BaseException] = []
        stop_audits = threading.Event()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(args.transfers):
                    src, dst = rng.sample(NAMES, 2)
                    try:
                        client.run(transfer, src, dst, rng.randint(1, 60))
                        key = "committed"
                    except Overdraft:
                        key = "overdrafts"
                    with lock:
                        done[key] += 1
            except BaseException as exc:
                errors.append(exc)

        def auditor() -> None:
            try:
                while not stop_audits.is_set():
                    audit(client, total)
                    with lock:
                        done["audits"] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        audit_thread = threading.Thread(target=auditor)
        audit_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop_audits.set()
        audit_thread.join()
        if errors:
            raise errors[0]

        final = audit(client, total)
        print(
            f"{done['committed']} transfers committed, {done['overdrafts']} refused as "
            f"overdrafts, {done['audits']} snapshot audits during the run"
        )
        print("final balances: " + ", ".join(f"{n} {b}" for n, b in final.items()))
        print(f"total {sum(final.values())} == {total}, no negative balance")
    print("OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except PaxosKVError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
