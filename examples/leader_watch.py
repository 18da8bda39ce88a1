"""Following a leader pointer with a watch: every follower sees every term, in order.

Run against a running cluster (see examples/README.md)::

    python examples/leader_watch.py                  # with PAXOSKV_CLUSTER set
    python examples/leader_watch.py --cluster HOST:PORT[,HOST:PORT...]

One key says which node leads a service, and a term key in another shard counts the
terms; a handover writes both in one transaction:

    q/RUN/leader -> {"node": "c2"}     its version (the commit timestamp) is the term's
    r/RUN/term   -> 7                  fencing token; the term count, for people

Candidates (threads) race to take over whenever the pointer says vacant: each reads the
pointer for update and writes itself only if it is still vacant, so one wins each vacancy.
The winner serves a while and resigns (writes "vacant"). Followers do not poll the pointer:
each follows `client.watch` over both keys and keeps the leader it last saw. A watch
delivers every commit in the range in commit order, a transaction's writes together, so:

- every follower sees exactly the sequence of handovers the candidates committed, none
  skipped (a poller that reads now and then misses a short term) and none twice;
- the pointer and the term count arrive in one batch, under one version, though they live
  in two shards: a follower never sees a new leader with the old term count;
- a follower that starts late (`after=` a version it stored) replays the same sequence from
  there: a restart loses nothing.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time

from txn import Client, PaxosKVError, Transaction, Watch

RUN = secrets.token_hex(3).encode()
# With the 3 default shards (split at "j" and "r"), two keys in two shards; the watched
# range [LEADER, TERM + b"\x00") holds both (and whatever lies between, which it skips).
LEADER = b"q/" + RUN + b"/leader"
TERM = b"r/" + RUN + b"/term"
VACANT = b'{"node": null}'
WAIT_S = 30.0  # how long a follower waits for the next change before it gives up
RETRY_S = 0.005  # a candidate's pause after finding the post taken

Seen = tuple[int, "str | None", int]  # (version, leader or None for vacant, term)


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


def take_over(tx: Transaction, me: str, last_term: int) -> Transaction | None:
    """Lead the next term if the post is vacant and `last_term` is not reached: the
    transaction (its commit timestamp is the term's fencing token), else None."""
    term = int(tx.get(TERM, for_update=True) or b"0")
    if term >= last_term or json.loads(tx.get(LEADER, for_update=True) or VACANT)["node"]:
        return None
    tx.put(LEADER, json.dumps({"node": me}).encode())
    tx.put(TERM, b"%d" % (term + 1))
    return tx


def resign(tx: Transaction, me: str) -> Transaction:
    expect(json.loads(tx.get(LEADER) or VACANT)["node"] == me, f"{me} resigns while not leading")
    tx.put(LEADER, VACANT)
    return tx


def follow(watch: Watch, last_term: int) -> list[Seen]:
    """What the watch shows of the pointer, each with the term count the same commit
    wrote, up to the resignation that ends `last_term`."""
    seen: list[Seen] = []
    term = 0
    while not (seen and seen[-1][1] is None and seen[-1][2] >= last_term):
        batch = watch.next_batch(timeout_s=WAIT_S)
        expect(bool(batch), f"no change for {WAIT_S} s after {seen[-1:]}")
        for version in sorted({c.version for c in batch}):
            commit = {c.key: c.value for c in batch if c.version == version}
            term = int(commit.get(TERM) or b"0") if TERM in commit else term
            if LEADER in commit:
                seen.append((version, json.loads(commit[LEADER] or VACANT)["node"], term))
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--terms", type=int, default=12, help="handovers to run")
    parser.add_argument("--followers", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    with Client(args.cluster, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not at its deadline
        watched = (LEADER, TERM + b"\x00")
        # Entering a watch fixes its start: every change committed afterwards is delivered.
        watches = [client.watch(*watched) for _ in range(args.followers)]
        for watch in watches:
            watch.start()

        # 1. Candidates race for every vacancy; each winner leads briefly and resigns.
        committed: list[Seen] = []
        lock = threading.Lock()
        errors: list[BaseException] = []
        sequences: list[list[Seen]] = [[] for _ in watches]

        def candidate(me: str) -> None:
            try:
                while int(client.get(TERM) or b"0") < args.terms:
                    won = client.run(take_over, me, args.terms)
                    if won is None:
                        time.sleep(RETRY_S)
                        continue
                    term = int(won.write_set[TERM] or b"0")
                    resigned = client.run(resign, me)
                    assert won.commit_ts is not None and resigned.commit_ts is not None
                    with lock:
                        committed.extend(
                            [(won.commit_ts, me, term), (resigned.commit_ts, None, term)]
                        )
            except BaseException as exc:
                errors.append(exc)

        def follower(n: int) -> None:
            try:
                sequences[n] = follow(watches[n], args.terms)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=candidate, args=(f"c{i}",)) for i in range(args.candidates)
        ] + [threading.Thread(target=follower, args=(n,)) for n in range(args.followers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for watch in watches:
            watch.close()
        if errors:
            raise errors[0]

        committed.sort()
        for n, seen in enumerate(sequences):
            expect(
                seen == committed,
                f"follower {n} saw {seen}, the candidates committed {committed}",
            )
        terms = [term for _, leader, term in committed if leader is not None]
        expect(terms == list(range(1, args.terms + 1)), f"terms out of order: {terms}")
        print(
            f"run {RUN.decode()}: {args.terms} terms among {args.candidates} candidates; each "
            f"of {args.followers} followers saw all {len(committed)} handovers and "
            "resignations, in commit order, each new leader with its own term"
        )

        # 2. A follower that restarts resumes from the version it stored.
        middle = committed[len(committed) // 2 - 1][0]
        with client.watch(*watched, after=middle) as late:
            replay = follow(late, args.terms)
        expect(replay == committed[len(committed) // 2 :], "a resumed follower saw otherwise")
        print(f"a follower resumed after version {middle} replayed the {len(replay)} after it")
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
