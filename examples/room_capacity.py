"""A capacity limit no single key can hold: at most 3 bookings per room, by scanning.

Run against a running cluster (see examples/README.md)::

    python examples/room_capacity.py                  # with PAXOSKV_CLUSTER set
    python examples/room_capacity.py --cluster HOST:PORT[,HOST:PORT...]

Each booking is its own key under its room's prefix; there is no counter key that every
booking would have to update. A booking transaction SCANS the room's prefix, counts, and
writes its own key only when the room is not full. The scan is phantom-safe: the range it
covered is checked again when the transaction commits (a booking that another transaction
added since is a retryable conflict, and `client.run` re-runs the function with a fresh
scan), and writes into the range wait until the transaction is resolved. So ten people
booking the same room at once end with exactly three bookings, never four.

    booking/RUN/ROOM/WHO   -> WHO

RUN is a random tag per run, so the example can run many times against one cluster.
Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading

from txn import Client, PaxosKVError, Transaction, prefix_end

RUN = secrets.token_hex(3)
CAPACITY = 3


def room_prefix(room: str) -> bytes:
    # Found by review: room "r101/annex" lay inside r101's prefix, so its bookings counted
    # against neither room's capacity check and r101 listed four.
    if not room or "/" in room:
        raise ValueError(f"room id {room!r}: must be non-empty and without '/'")
    return f"booking/{RUN}/{room}/".encode()


def booking_key(room: str, who: str) -> bytes:
    return room_prefix(room) + who.encode()


class Full(Exception):
    """The room has CAPACITY bookings. Not a paxoskv error: `client.run` does not retry it."""


def book(tx: Transaction, room: str, who: str) -> None:
    """Book `room` for `who`, unless the room is full (a re-run is a no-op)."""
    if tx.get(booking_key(room, who)) is not None:
        return
    prefix = room_prefix(room)
    # limit=CAPACITY: enough to decide (without a limit a scan reads every key of the
    # room). A scan that did not reach the limit covered the whole room, and that range is
    # checked again at commit (phantom-safe); one that reached it says the room is full.
    bookings = tx.scan(prefix, prefix_end(prefix), limit=CAPACITY)
    if len(bookings) >= CAPACITY:
        raise Full(f"room {room} is full ({len(bookings)} of {CAPACITY} booked)")
    tx.put(booking_key(room, who), who.encode())


def cancel(tx: Transaction, room: str, who: str) -> None:
    tx.delete(booking_key(room, who))


def bookings_of(client: Client, room: str) -> list[str]:
    """Who holds `room`, read in one snapshot."""
    prefix = room_prefix(room)
    with client.snapshot() as snap:
        # One more than CAPACITY: an overbooking would show.
        rows = snap.scan(prefix, prefix_end(prefix), limit=CAPACITY + 1)
        return [holder.decode() for _, holder in rows]


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def race(client: Client, room: str, people: list[str]) -> tuple[list[str], list[str]]:
    """Everyone books `room` at the same moment; returns who got it and who found it full."""
    barrier = threading.Barrier(len(people))
    booked: list[str] = []
    full: list[str] = []
    errors: list[BaseException] = []

    def attempt(who: str) -> None:
        barrier.wait()
        try:
            client.run(book, room, who)
            booked.append(who)
        except Full:
            full.append(who)
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(who,)) for who in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return booked, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--racers", type=int, default=10, help="concurrent bookings in the race")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")
    if args.racers <= CAPACITY:
        parser.error(f"--racers must be more than the capacity ({CAPACITY})")

    with Client(args.cluster, max_attempts=100, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries
        print(f"run {RUN}: rooms hold at most {CAPACITY} bookings")

        # 1. Book until full; the next booking is refused with a clear error.
        for who in ("ada", "grace", "edsger"):
            client.run(book, "r101", who)
        try:
            client.run(book, "r101", "barbara")
            raise AssertionError("a fourth booking of r101 should have been refused")
        except Full as exc:
            print(f"refused as expected: {exc}")
        client.run(book, "r101", "ada")  # already booked: a no-op, not a fourth booking
        expect(sorted(bookings_of(client, "r101")) == ["ada", "edsger", "grace"], "r101")

        # 2. A cancellation frees a place.
        client.run(cancel, "r101", "grace")
        client.run(book, "r101", "barbara")
        expect(sorted(bookings_of(client, "r101")) == ["ada", "barbara", "edsger"], "r101")
        print("grace cancelled, barbara booked r101")

        # 3. Everyone at once: exactly CAPACITY win, the others find the room full.
        people = [f"racer{i}" for i in range(args.racers)]
        booked, full = race(client, "r202", people)
        holders = bookings_of(client, "r202")
        expect(len(booked) == CAPACITY, f"{len(booked)} racers booked r202: {booked}")
        expect(sorted(holders) == sorted(booked), f"r202 holds {holders}, booked {booked}")
        expect(len(full) == args.racers - CAPACITY, f"{len(full)} racers found r202 full")
        print(
            f"race: {args.racers} concurrent bookings of r202 -> {len(booked)} booked "
            f"({', '.join(sorted(booked))}), {len(full)} found it full"
        )
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
