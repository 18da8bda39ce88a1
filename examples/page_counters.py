"""Page-view counters by atomic adds: many writers, no conflicts, every view counted once.

Run against a running cluster (see examples/README.md)::

    python examples/page_counters.py                  # with PAXOSKV_CLUSTER set
    python examples/page_counters.py --cluster HOST:PORT[,HOST:PORT...]

Threads record page views. Each view is one transaction that adds 1 to the page's counter
and 1 to the site's total, and raises the site's "latest view" stamp:

    views/RUN/page/home  -> 8-byte little-endian count (txn.decode_int reads it)
    views/RUN/total      -> the same, the sum of every page's count
    views/RUN/latest     -> the newest view's stamp (AtomicOp.BYTE_MAX keeps the largest)

`tx.add` and `tx.atomic` read nothing: the shard adds to the value the key has when the
transaction commits. So writers of the same counters never make each other retry for a
changed read, where the same updates as read-modify-writes (get, then put the value plus
one) conflict whenever two of them read the same count. The run does both and prints how
many attempts each took. All keys share one prefix, so one shard holds them and each view
commits in one Paxos round (one-phase commit).

Checks, from one snapshot at the end: each page's count is the number of its views recorded,
the total is their sum, and the latest stamp is the largest one written.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sys
import threading

from txn import AtomicOp, Client, PaxosKVError, Transaction, decode_int, encode_int

RUN = secrets.token_hex(3)
PREFIX = f"views/{RUN}/".encode()
PAGES = ("home", "pricing", "docs")


def page_key(page: str) -> bytes:
    return PREFIX + b"page/" + page.encode()


TOTAL = PREFIX + b"total"
LATEST = PREFIX + b"latest"


def record_view(tx: Transaction, page: str, stamp: bytes) -> None:
    """One view: atomic operations only, so this transaction reads nothing."""
    tx.add(page_key(page), 1)
    tx.add(TOTAL, 1)
    tx.atomic(LATEST, AtomicOp.BYTE_MAX, stamp)


def record_view_by_reading(tx: Transaction, page: str) -> None:
    """The same count kept by read-modify-write: correct too, but racing writers conflict."""
    for key in (page_key(page), TOTAL):
        tx.put(key, encode_int(decode_int(tx.get(key)) + 1))


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def run_writers(client: Client, threads: int, views: int, atomic: bool) -> tuple[dict, int]:
    """`threads` writers record `views` views each, spread over the pages; returns the views
    recorded per page and how many transaction attempts that took."""
    attempts = itertools.count()
    recorded = dict.fromkeys(PAGES, 0)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def body(tx: Transaction, page: str, stamp: bytes) -> None:
        next(attempts)
        if atomic:
            record_view(tx, page, stamp)
        else:
            record_view_by_reading(tx, page)

    def writer(w: int) -> None:
        try:
            for i in range(views):
                page = PAGES[(w + i) % len(PAGES)]
                client.run(body, page, b"%04d-%04d" % (i, w))
                with lock:
                    recorded[page] += 1
        except BaseException as exc:  # reported by main
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return recorded, next(attempts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--threads", type=int, default=6, help="concurrent writers")
    parser.add_argument("--views", type=int, default=20, help="views each writer records")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")
    if args.threads < 1 or args.views < 1:
        parser.error("--threads and --views must be at least 1")

    with Client(args.cluster, max_attempts=100, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries
        groups = {client.group_of(key) for key in (TOTAL, LATEST, *map(page_key, PAGES))}
        expect(len(groups) == 1, f"the counters span groups {sorted(groups)}, not one shard")
        print(f"run {RUN}: {args.threads} writers x {args.views} views, counters in one shard")

        recorded, attempts = run_writers(client, args.threads, args.views, atomic=True)
        views = sum(recorded.values())
        with client.snapshot() as snap:
            counts = {page: decode_int(snap.get(page_key(page))) for page in PAGES}
            total = decode_int(snap.get(TOTAL))
            latest = snap.get(LATEST)
        expect(counts == recorded, f"counts {counts}, views recorded {recorded}")
        expect(total == views, f"total {total}, views recorded {views}")
        newest = b"%04d-%04d" % (args.views - 1, args.threads - 1)
        expect(latest == newest, f"latest stamp {latest!r}, the largest written {newest!r}")
        print(f"atomic adds:        {views} views, {attempts} attempts; counts {counts}")

        for page in PAGES:  # start the read-modify-write round from the same counts
            client.put(page_key(page), encode_int(0))
        client.put(TOTAL, encode_int(0))
        recorded, attempts = run_writers(client, args.threads, args.views, atomic=False)
        with client.snapshot() as snap:
            counts = {page: decode_int(snap.get(page_key(page))) for page in PAGES}
            total = decode_int(snap.get(TOTAL))
        expect(counts == recorded and total == sum(recorded.values()), f"counts {counts}")
        print(f"read-modify-write:  {views} views, {attempts} attempts (the rest were conflicts)")
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
