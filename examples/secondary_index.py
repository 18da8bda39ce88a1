"""A secondary index maintained atomically with its records, and a scan by index.

Run against a running cluster (see examples/README.md)::

    python examples/secondary_index.py                  # with PAXOSKV_CLUSTER set
    python examples/secondary_index.py --cluster HOST:PORT[,HOST:PORT...]

Products are stored by id; an index by category lets us list the products of a category
with one range scan. Record and index entry are written in the same transaction, so the
index can never point to a product that is not in that category, nor miss one — even while
threads keep moving products between categories. With the default 3 shards the records
(product/...) live in the second shard and the index (idx/...) in the first: every update
is a cross-shard transaction.

    product/RUN/ID                  -> {"id": ID, "name": ..., "category": ..., "price": ...}
    idx/RUN/category/CATEGORY/ID    -> b""   (the key alone carries the information)

A query by category scans the index prefix and reads the records it points to, all in one
read-only snapshot, so what it returns is exactly the products of that category at one
timestamp.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import threading
from typing import Any

from txn import Client, PaxosKVError, Snapshot, Transaction, prefix_end

RUN = secrets.token_hex(3)
CATEGORIES = ["books", "games", "music", "tools"]


def product_key(pid: str) -> bytes:
    return f"product/{RUN}/{pid}".encode()


def index_prefix(category: str) -> bytes:
    # Found by review: index_key("books", "rare/p1") was index_key("books/rare", "p1"), so
    # moving one product out of "books/rare" dropped the other from "books".
    if not category or "/" in category:
        raise ValueError(f"category {category!r}: must be non-empty and without '/'")
    return f"idx/{RUN}/category/{category}/".encode()


def index_key(category: str, pid: str) -> bytes:
    return index_prefix(category) + pid.encode()


# ---------------------------------------------------------------------------- writes


def put_product(tx: Transaction, product: dict[str, Any]) -> None:
    """Insert or update a product; moves its index entry when the category changes."""
    key = product_key(product["id"])
    old = tx.get(key)
    if old is not None:
        old_category = json.loads(old)["category"]
        if old_category != product["category"]:
            tx.delete(index_key(old_category, product["id"]))
    tx.put(key, json.dumps(product).encode())
    tx.put(index_key(product["category"], product["id"]), b"")


def delete_product(tx: Transaction, pid: str) -> None:
    raw = tx.get(product_key(pid))
    if raw is not None:
        tx.delete(product_key(pid))
        tx.delete(index_key(json.loads(raw)["category"], pid))


def move_product(tx: Transaction, pid: str, category: str) -> None:
    raw = tx.get(product_key(pid))
    if raw is not None:
        put_product(tx, {**json.loads(raw), "category": category})


# ---------------------------------------------------------------------------- reads


class IndexDrift(Exception):
    """The index and the records disagree: a bug in the code that writes them (both are
    written in one transaction, so the store never shows half of a change)."""


def products_in(snap: Snapshot, category: str, page: int = 1000) -> list[dict[str, Any]]:
    """Scan by index: the ids from the index range, then their records, in one snapshot.

    `iterate` reads the range a page of `page` keys at a time, all at the snapshot's
    timestamp: a category of any size is read whole (a `scan` with a limit would cut it).
    Raises `IndexDrift` when an entry names a product that is not there.
    """
    prefix = index_prefix(category)
    ids = [
        k[len(prefix) :].decode()
        for k, _ in snap.iterate(prefix, prefix_end(prefix), page_keys=page)
    ]
    out = []
    for pid in ids:
        raw = snap.get(product_key(pid))
        if raw is None:
            raise IndexDrift(f"index {category} -> {pid}, but product {pid} is missing")
        out.append(json.loads(raw))
    return out


def check_index(client: Client) -> dict[str, list[str]]:
    """Index and records agree exactly, at one timestamp. Returns category -> ids."""
    with client.snapshot() as snap:
        prefix = f"product/{RUN}/".encode()
        records = list(snap.iterate(prefix, prefix_end(prefix)))
        by_index = {c: products_in(snap, c, page=3) for c in CATEGORIES}  # pages, too
    products = [json.loads(v) for _, v in records]
    for category, listed in by_index.items():
        for p in listed:
            expect(p["category"] == category, f"{p['id']} listed under {category}: {p}")
        want = sorted(p["id"] for p in products if p["category"] == category)
        got = sorted(p["id"] for p in listed)
        expect(got == want, f"index {category} lists {got}, records say {want}")
    return {c: sorted(p["id"] for p in listed) for c, listed in by_index.items()}


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


# ---------------------------------------------------------------------------- the walk-through


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--moves", type=int, default=20, help="category moves per thread")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    with Client(args.cluster, max_attempts=200, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries
        rng = random.Random(7)
        pids = [f"p{i:02d}" for i in range(12)]
        for pid in pids:
            client.run(
                put_product,
                {
                    "id": pid,
                    "name": f"product {pid}",
                    "category": rng.choice(CATEGORIES),
                    "price": rng.randint(1, 99),
                },
            )
        print(
            f"run {RUN}: {len(pids)} products in group {client.group_of(product_key('x'))}, "
            f"index in group {client.group_of(index_key('books', 'x'))}"
        )
        for category, ids in check_index(client).items():
            print(f"  {category}: {', '.join(ids) or '-'}")

        # A move is one transaction: the product leaves one index range and enters another.
        client.run(move_product, "p00", "music")
        with client.snapshot() as snap:
            expect("p00" in [p["id"] for p in products_in(snap, "music")], "p00 not in music")
            for other in ("books", "games", "tools"):
                expect("p00" not in [p["id"] for p in products_in(snap, other)], "p00 twice")
        client.run(delete_product, "p01")
        check_index(client)
        print("moved p00 to music, deleted p01: index still exact")

        # Threads move products around while a reader checks the index in snapshots.
        live = [p for p in pids if p != "p01"]
        errors: list[BaseException] = []
        stop = threading.Event()
        checks = [0]

        def mover(seed: int) -> None:
            r = random.Random(seed)
            try:
                for _ in range(args.moves):
                    client.run(move_product, r.choice(live), r.choice(CATEGORIES))
            except BaseException as exc:
                errors.append(exc)

        def checker() -> None:
            try:
                while not stop.is_set():
                    check_index(client)
                    checks[0] += 1
            except BaseException as exc:
                errors.append(exc)

        movers = [threading.Thread(target=mover, args=(i,)) for i in range(args.threads)]
        reader = threading.Thread(target=checker)
        reader.start()
        for t in movers:
            t.start()
        for t in movers:
            t.join()
        stop.set()
        reader.join()
        if errors:
            raise errors[0]
        final = check_index(client)
        expect(sum(len(ids) for ids in final.values()) == len(live), "products lost or doubled")
        print(
            f"{args.threads * args.moves} concurrent moves, {checks[0]} snapshot checks of "
            "index == records during the run; final:"
        )
        for category, ids in final.items():
            print(f"  {category}: {', '.join(ids) or '-'}")
    print("OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, IndexDrift) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except PaxosKVError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
