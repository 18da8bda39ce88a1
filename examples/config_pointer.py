"""A configuration pointer: which model version serves traffic.

Run against a running cluster (see examples/README.md)::

    python examples/config_pointer.py                  # with PAXOSKV_CLUSTER set
    python examples/config_pointer.py --cluster HOST:PORT[,HOST:PORT...]

One key says which model version the fleet serves. Deployers move it with compare-and-set
(CAS), so two deployers racing from the same version cannot both win: the loser is shown
the current value and its `decide` function chooses again from it (publish anyway, publish
something else, or give up), so nobody overwrites a value they never saw. Every pointer
value carries a sequence number that each publish increases, so readers can check what they
see, and a random id, so that no two publishes write the same bytes:

    config/RUN/serving-model -> {"id": "9f1c...", "model": "ranker-2024-06-01", "seq": 7}

A CAS whose answer was lost (OutcomeUnknown: a leader failed over) is sent again unchanged.
Its value is unique, so no copy applies twice: if the first copy landed, the second fails
and shows our own bytes as the current value. If someone else published in between,
`decide` sees their value, as after any lost race, and whether our lost copy had been
served before theirs cannot be told: so a publish may take effect twice (`decide` chose to
publish again), and a deployer that gives up is told that ours may have been served for a
while (`GaveUp.ours_maybe_served`).

Readers use linearizable reads (`client.get`, served by the shard's leader): once a publish
was acknowledged, every read that starts afterwards — from any client — sees it or something
newer, never an older pointer. A rollback is just another publish (a higher seq that names an
older model). The example checks both properties while readers and deployers run at once.

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
from collections.abc import Callable
from dataclasses import dataclass

from txn import CasResult, Client, OutcomeUnknown, PaxosKVError

RUN = secrets.token_hex(3)
POINTER = f"config/{RUN}/serving-model".encode()
RESENDS = 10  # copies of one CAS sent after lost answers before giving up

# decide(model now served, the model we want) -> the model to publish, or None to give up.
Decide = Callable[[str, str], "str | None"]


def encode(seq: int, model: str) -> bytes:
    return json.dumps(
        {"seq": seq, "model": model, "id": secrets.token_hex(8)}, sort_keys=True
    ).encode()


def decode(raw: bytes | None) -> tuple[int, str]:
    if raw is None:
        return 0, ""
    d = json.loads(raw)
    return d["seq"], d["model"]


@dataclass(frozen=True)
class Published:
    seq: int
    attempts: int  # CAS rounds: more than 1 when another publish won a race
    resent: int  # copies of a CAS sent again after a lost answer


@dataclass(frozen=True)
class GaveUp:
    """`decide` chose not to publish over what another deployer published."""

    ours_maybe_served: bool  # a copy of ours whose answer was lost may have landed first


def publish_anyway(current_model: str, mine: str) -> str:
    """A `decide` that publishes ours whatever won the race (the racing deployers below)."""
    return mine


def give_way(current_model: str, mine: str) -> None:
    """A `decide` for a reviewed deploy: whatever changed since the review wins."""
    return None


def publish(
    client: Client,
    model: str,
    decide: Decide = publish_anyway,
    based_on: bytes | None = None,
) -> Published | GaveUp:
    """Point the fleet at `model` with CAS on the pointer value `based_on` (default: the
    value read now); when another publish came first, `decide` chooses again from the value
    now served, or gives up."""
    attempts = resent = 0
    maybe_served = False
    current = client.get(POINTER) if based_on is None else based_on
    while True:
        attempts += 1
        seq, _ = decode(current)
        new = encode(seq + 1, model)
        result, copies = cas_once(client, current, new)
        resent += copies
        if result.succeeded or result.current_value == new:  # ours (its answer maybe lost)
            return Published(seq + 1, attempts, resent)
        current = result.current_value  # someone else published first...
        maybe_served = maybe_served or copies > 0  # ...or over a lost copy of ours
        chosen = decide(decode(current)[1], model)
        if chosen is None:
            return GaveUp(maybe_served)
        model = chosen


def cas_once(client: Client, expected: bytes | None, new: bytes) -> tuple[CasResult, int]:
    """One CAS from `expected` to `new`, sent again while its outcome is unknown, and how
    many copies were sent again: `new` is unique (its id), so a copy applies only if no
    earlier copy did."""
    for copy in range(RESENDS):
        try:
            result = client.cas(
                POINTER, expected_value=expected, expect_absent=expected is None, new_value=new
            )
            return result, copy
        except OutcomeUnknown:
            continue
    raise OutcomeUnknown(f"{RESENDS} copies of a CAS on {POINTER!r} went unanswered")


def published(result: Published | GaveUp) -> Published:
    if isinstance(result, GaveUp):
        raise AssertionError("publish_anyway never gives up")
    return result


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--deployers", type=int, default=3)
    parser.add_argument("--publishes", type=int, default=8, help="publishes per deployer")
    parser.add_argument("--readers", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    with Client(args.cluster) as deploy_client, Client(args.cluster) as read_client:
        deploy_client.connect()  # a wrong address fails here at once, not at its deadline
        # 1. Create the pointer only if it does not exist (CAS on absence).
        created = deploy_client.cas(POINTER, expect_absent=True, new_value=encode(1, "ranker-v1"))
        expect(created.succeeded, "the pointer should not exist yet")
        again = deploy_client.cas(POINTER, expect_absent=True, new_value=encode(1, "other"))
        expect(not again.succeeded, "a second create must fail")
        expect(decode(again.current_value) == (1, "ranker-v1"), "CAS reports the current value")
        print(f"run {RUN}: pointer created at seq 1 -> ranker-v1")

        # 2. A stale CAS loses: it names a value that is no longer current.
        old = read_client.get(POINTER)
        seq = published(publish(deploy_client, "ranker-v2")).seq
        stale = deploy_client.cas(POINTER, expected_value=old, new_value=encode(2, "ranker-x"))
        expect(not stale.succeeded, "a CAS from a stale read must fail")
        expect(decode(read_client.get(POINTER)) == (seq, "ranker-v2"), "readers see v2")
        print(f"published ranker-v2 (seq {seq}); a CAS from the old value was refused")

        # 3. Deployers race while readers poll. Check: (a) no publish is lost: the final seq
        #    counts every publish (and at most one more per CAS sent again after a lost
        #    answer: a copy that landed and was overwritten before it was sent again);
        #    (b) each reader's seq never goes back; (c) a read that starts after a publish
        #    was acknowledged sees that seq or a newer one.
        acked: list[tuple[float, int]] = []  # (acknowledged at, seq)
        reads: list[tuple[float, int]] = []  # (read started at, seq seen)
        lock = threading.Lock()
        errors: list[BaseException] = []
        stop = threading.Event()
        contested = [0]
        resent = [0]

        def deployer(d: int) -> None:
            try:
                for i in range(args.publishes):
                    done = published(publish(deploy_client, f"ranker-d{d}-{i}"))
                    with lock:
                        acked.append((time.monotonic(), done.seq))
                        contested[0] += done.attempts - 1
                        resent[0] += done.resent
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            last = 0
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    seq, _ = decode(read_client.get(POINTER))
                    expect(seq >= last, f"a reader saw seq {seq} after seq {last}")
                    last = seq
                    with lock:
                        reads.append((started, seq))
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(args.readers)]
        deployers = [threading.Thread(target=deployer, args=(d,)) for d in range(args.deployers)]
        for t in readers + deployers:
            t.start()
        for t in deployers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        if errors:
            raise errors[0]

        final_seq, final_model = decode(read_client.get(POINTER))
        total = args.deployers * args.publishes
        seqs = sorted(s for _, s in acked)
        expect(len(set(seqs)) == total, "two publishes were acknowledged at one seq")
        expect(
            seq + total <= final_seq <= seq + total + resent[0],
            f"final seq {final_seq}, expected {seq + total} (+ at most {resent[0]} resent)",
        )
        expect(seqs[0] > seq and seqs[-1] <= final_seq, "a publish outside the race's seqs")
        for started, seen in reads:
            newest_acked = max((s for at, s in acked if at < started), default=0)
            expect(
                seen >= newest_acked, f"a read saw seq {seen} after seq {newest_acked} was acked"
            )
        print(
            f"{total} publishes by {args.deployers} racing deployers ({contested[0]} CAS "
            f"retries after losing a race, {resent[0]} sent again after a lost answer), "
            f"{len(reads)} reads: none went back, none missed "
            f"an acknowledged publish; now serving {final_model} (seq {final_seq})"
        )

        # 4. Rollback is a publish of an older model under a newer seq. A deploy reviewed
        #    before it, based on what was served then, gives way instead of overwriting it.
        reviewed = read_client.get(POINTER)
        seq = published(publish(deploy_client, "ranker-v2")).seq
        with read_client.snapshot() as snap:
            expect(decode(snap.get(POINTER)) == (seq, "ranker-v2"), "snapshot sees rollback")
        late = publish(deploy_client, "ranker-v9", decide=give_way, based_on=reviewed)
        expect(late == GaveUp(False), "a deploy reviewed before the rollback must give way")
        expect(decode(read_client.get(POINTER)) == (seq, "ranker-v2"), "rollback still served")
        print(f"rolled back to ranker-v2 (seq {seq}); a deploy reviewed before it gave way")
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
