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
(`settle_unknown=True`) instead of raising `CommitUnknown`, so one `run()` applies its
transfer at most once. Each transfer also carries an id, recorded in the same transaction
(under the source account's key, so in its shard): a caller that sends a transfer again
with the same id (after a crash, or after `run()` raised because it could not settle a
lost commit in time) finds it done and changes nothing. Meanwhile, and at the end, a
read-only snapshot (one timestamp across all shards) must always sum to the initial total
and show no negative balance.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading
import uuid

from txn import Client, PaxosKVError, Transaction

RUN = secrets.token_hex(3)
NAMES = ["alice", "bob", "carol", "judy", "mallory", "oscar", "rupert", "trent", "victor"]
INITIAL = 100


def account(name: str) -> bytes:
    return f"{name}/{RUN}/balance".encode()


def transfer_record(src: str, transfer_id: str) -> bytes:
    """Where a done transfer is recorded: beside its source account, so in its shard unless
    a split point falls between them (then one more participant: still correct). So an id
    is unique per source account: make ids unique overall (uuid4, as `new_id`), since the
    same id from another source is another record. A real system also deletes old records,
    once no caller can send their ids again."""
    return f"{src}/{RUN}/transfer/{transfer_id}".encode()


class Overdraft(Exception):
    """The source account holds less than the amount. Not a paxoskv error, so `client.run`
    does not retry it; the transaction is aborted and nothing is written."""


class InvalidTransfer(ValueError):
    """A transfer that would create or destroy money (to itself, a non-positive amount, an
    unknown account); refused before anything is written."""


class NoAccount(LookupError):
    """An account that should exist does not (an audit must not count it as 0)."""


class AccountExists(ValueError):
    """Opening an account that is open already: opening it again would reset its balance."""


def transfer(tx: Transaction, src: str, dst: str, amount: int, transfer_id: str) -> bool:
    """Move `amount` from `src` to `dst`, all or nothing, once per `transfer_id`: returns
    False, changing nothing, when that id is already done.

    Balances are hot keys that every transfer writes: reading them for update makes
    concurrent transfers of the same account queue at its leader instead of racing.
    """
    record = transfer_record(src, transfer_id)
    what = f"{dst} {amount}".encode()
    done = tx.get(record)
    if done is not None:
        if done != what:  # a caller bug: the id was made once, for one transfer
            raise InvalidTransfer(f"transfer id {transfer_id} was used for another transfer")
        return False  # sent before and committed: done
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
    tx.put(record, what)
    return True


def open_accounts(tx: Transaction, names: list[str], balance: int) -> None:
    """Open every account in one transaction: all appear at once. An account that exists
    already keeps its balance: opening it again would reset it."""
    for name in names:
        if tx.get(account(name)) is not None:
            raise AccountExists(f"account {name} exists")
        tx.put(account(name), b"%d" % balance)


def balances(client: Client) -> dict[str, int]:
    """Every balance at ONE timestamp (a read-only snapshot across all shards)."""
    with client.snapshot() as snap:
        raw = {name: snap.get(account(name)) for name in NAMES}
    missing = [name for name, value in raw.items() if value is None]
    if missing:
        raise NoAccount(f"no account {', '.join(missing)}")
    return {name: int(value) for name, value in raw.items() if value is not None}


def new_id() -> str:
    """A transfer's id: made once by whoever asks for the transfer, and sent with every
    retry of it (here a random one; an order number or request id in a real system)."""
    return uuid.uuid4().hex


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
    # good and run again) before run() returns, so one run() applies its transfer once.
    with Client(args.cluster, max_attempts=200, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries
        client.run(open_accounts, NAMES, INITIAL)
        total = INITIAL * len(NAMES)
        groups = sorted({client.group_of(account(n)) for n in NAMES})
        print(f"run {RUN}: {len(NAMES)} accounts of {INITIAL} in groups {groups}, total {total}")

        # An overdraft is refused and changes nothing.
        before = audit(client, total)
        try:
            client.run(transfer, "alice", "bob", INITIAL + 1, new_id())
            raise AssertionError("an overdraft was allowed")
        except Overdraft as exc:
            print(f"refused as expected: {exc}")
        for src, dst, amount in (("alice", "alice", 40), ("bob", "judy", -150), ("bob", "bobb", 1)):
            try:
                client.run(transfer, src, dst, amount, new_id())
                raise AssertionError(f"transfer({src}, {dst}, {amount}) was allowed")
            except InvalidTransfer as exc:
                print(f"refused as expected: {exc}")
        try:
            client.run(open_accounts, ["alice"], INITIAL)
            raise AssertionError("an open account was opened again")
        except AccountExists as exc:
            print(f"refused as expected: {exc}")
        expect(balances(client) == before, "a refused transfer changed a balance")

        # The same transfer sent twice (as after a crash) moves the money once.
        again = new_id()
        expect(client.run(transfer, "carol", "trent", 5, again), "the first send applies")
        expect(not client.run(transfer, "carol", "trent", 5, again), "a second send must not")
        try:
            client.run(transfer, "carol", "trent", 6, again)
            raise AssertionError("a transfer id was taken for another transfer")
        except InvalidTransfer as exc:
            print(f"refused as expected: {exc}")
        seen = audit(client, total)
        expect(
            seen["carol"] == before["carol"] - 5, f"carol moved {before['carol'] - seen['carol']}"
        )
        print("the same transfer id sent twice moved the money once")

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
                        client.run(transfer, src, dst, rng.randint(1, 60), new_id())
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
    except (AssertionError, NoAccount) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except PaxosKVError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
