"""A configuration pointer: which model version serves traffic.

Run against a running cluster (see examples/README.md)::

    python examples/config_pointer.py --cluster 127.0.0.1:7001,127.0.0.1:7002

One key says which model version the fleet serves. Deployers move it with compare-and-set
(CAS), so two deployers racing from the same version cannot both win: the loser learns the
current value and decides again, and no update is silently lost. Every pointer value carries
a sequence number that each publish increases, so readers can check what they see:

    config/RUN/serving-model -> {"seq": 7, "model": "ranker-2024-06-01"}

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

from txn import Client, PaxosKVError

RUN = secrets.token_hex(3)
POINTER = f"config/{RUN}/serving-model".encode()


def encode(seq: int, model: str) -> bytes:
    return json.dumps({"seq": seq, "model": model}, sort_keys=True).encode()


def decode(raw: bytes | None) -> tuple[int, str]:
    if raw is None:
        return 0, ""
    d = json.loads(raw)
    return d["seq"], d["model"]


def publish(client: Client, model: str) -> tuple[int, int]:
    """Point the fleet at `model` with CAS on the value read; retry while others win.

    Returns (seq published, CAS attempts it took)."""
    attempts = 0
    current = client.get(POINTER)
    while True:
        attempts += 1
        seq, _ = decode(current)
        result = client.cas(POINTER, expected_value=current, new_value=encode(seq + 1, model))
        if result.succeeded:
            return seq + 1, attempts
        current = result.current_value  # someone else published first: decide again


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
        # 1. Create the pointer only if it does not exist (CAS on absence).
        created = deploy_client.cas(POINTER, expect_absent=True, new_value=encode(1, "ranker-v1"))
        expect(created.succeeded, "the pointer should not exist yet")
        again = deploy_client.cas(POINTER, expect_absent=True, new_value=encode(1, "other"))
        expect(not again.succeeded, "a second create must fail")
        expect(decode(again.current_value) == (1, "ranker-v1"), "CAS reports the current value")
        print(f"run {RUN}: pointer created at seq 1 -> ranker-v1")

        # 2. A stale CAS loses: it names a value that is no longer current.
        old = read_client.get(POINTER)
        seq, _ = publish(deploy_client, "ranker-v2")
        stale = deploy_client.cas(POINTER, expected_value=old, new_value=encode(2, "ranker-x"))
        expect(not stale.succeeded, "a CAS from a stale read must fail")
        expect(decode(read_client.get(POINTER)) == (seq, "ranker-v2"), "readers see v2")
        print(f"published ranker-v2 (seq {seq}); a CAS from the old value was refused")

        # 3. Deployers race while readers poll. Check: (a) no publish is lost: the final seq
        #    counts every publish; (b) each reader's seq never goes back; (c) a read that
        #    starts after a publish was acknowledged sees that seq or a newer one.
        acked: list[tuple[float, int]] = []  # (acknowledged at, seq)
        reads: list[tuple[float, int]] = []  # (read started at, seq seen)
        lock = threading.Lock()
        errors: list[BaseException] = []
        stop = threading.Event()
        contested = [0]

        def deployer(d: int) -> None:
            try:
                for i in range(args.publishes):
                    seq, attempts = publish(deploy_client, f"ranker-d{d}-{i}")
                    with lock:
                        acked.append((time.monotonic(), seq))
                        contested[0] += attempts - 1
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
        expect(final_seq == seq + total, f"final seq {final_seq}, expected {seq + total}")
        expect(sorted(s for _, s in acked) == list(range(seq + 1, seq + total + 1)), "lost")
        for started, seen in reads:
            newest_acked = max((s for at, s in acked if at < started), default=0)
            expect(
                seen >= newest_acked, f"a read saw seq {seen} after seq {newest_acked} was acked"
            )
        print(
            f"{total} publishes by {args.deployers} racing deployers ({contested[0]} CAS "
            f"retries after losing a race), {len(reads)} reads: none went back, none missed "
            f"an acknowledged publish; now serving {final_model} (seq {final_seq})"
        )

        # 4. Rollback is a publish of an older model under a newer seq.
        seq, _ = publish(deploy_client, "ranker-v2")
        with read_client.snapshot() as snap:
            expect(decode(snap.get(POINTER)) == (seq, "ranker-v2"), "snapshot sees rollback")
        print(f"rolled back to ranker-v2 (seq {seq})")
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
