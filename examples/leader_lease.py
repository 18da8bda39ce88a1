"""Leader election with a lease: the leader's key goes by itself when its holder stops.

Run against a running cluster (see examples/README.md)::

    python examples/leader_lease.py                  # with PAXOSKV_CLUSTER set
    python examples/leader_lease.py --cluster HOST:PORT[,HOST:PORT...]

One key names the leader of a service, written with a time to live (a lease, as etcd's
election API keeps one):

    lease/RUN/leader -> b"cand-1"     deleted by the store TTL seconds after its last renewal

- campaign: `cas(expect_absent=True, new_value=me, ttl_s=TTL)`; one candidate wins each
  vacancy. Its version is the term's fencing token (`put_fenced` writes with it). Each
  candidate's value is its own, so a claim whose answer was lost (OutcomeUnknown) is sent
  again, and a failure that finds our value means the lost one won.
- renew: `cas(expected_version=token, touch=True, ttl_s=TTL)` before the lease runs out,
  from a thread of its own (a step of the holder's work may stall longer than the lease):
  the value and the version stay (the token stays valid), the deadline moves on. A renewal
  that fails tells the holder it lost the lease: it stops acting as leader. A holder acts
  outside the store only until it sent its last successful claim or renewal plus TTL, by
  its monotonic clock (an answer can come late: README, "Time to live"); its writes inside
  the store are fenced by the token whatever its clock says.
- crash: a holder that stops renewing (a crash, a pause, a partition) needs no one to clean
  up after it: its shard's leader deletes the key at the deadline, the delete is a change
  a watch sees, and the next candidate's campaign wins.
- resign: `cas(expected_version=token, delete=True)`, at once.

Candidates run as threads; each holds the lease for a few renewals and then "crashes"
(stops renewing without resigning), except the last, which resigns. A follower watches the
key and sees every term begin and end, in order. The checks: terms never overlap (each
new holder took over after the last one's lease was gone), the store never deleted a lease
before its deadline, a crashed holder's renewal fails afterwards, and a fenced write with
an old token is refused.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time

from txn import (
    Change,
    Client,
    Conflict,
    FencingTokenRejected,
    OutcomeUnknown,
    PaxosKVError,
    Watch,
    wall_ns_of,
)

RUN = secrets.token_hex(3).encode()
LEADER = b"lease/" + RUN + b"/leader"  # with 3 default shards: the second shard
WORK = b"work/" + RUN + b"/log"  # what the leader writes, fenced by its token: the third
TTL_S = 1.0
RENEW_EVERY_S = TTL_S / 3  # renew well before the lease runs out, as etcd's clients do


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


def campaign(client: Client, me: bytes, deadline_s: float) -> int:
    """Wait until this candidate holds the lease; returns its token (the key's version)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            won = client.cas(LEADER, expect_absent=True, new_value=me, ttl_s=TTL_S)
        except OutcomeUnknown:
            continue  # it may have won: the next claim finds our own value if it did
        except Conflict:
            continue  # a transaction was writing the key: nothing was written, claim again
        if won.succeeded:
            return won.version
        if won.current_value == me:  # a claim whose answer was lost had won
            return won.current_version
        time.sleep(RENEW_EVERY_S / 4)  # a candidate's pause between tries, not a wait on state
    raise AssertionError(f"{me.decode()} never won the lease in {deadline_s} s")


def lead(client: Client, me: bytes, token: int, renewals: int) -> None:
    """Serve a term: `renewals` renewals from a thread of their own, and fenced writes
    until they end (the token never changes)."""
    lost: list[BaseException] = []

    def renew() -> None:
        # Its own thread: renewing between steps of the work would let any slow step (one
        # meeting a frozen leader of the shard it writes waits an attempt timeout or more)
        # outlast the lease (found by an application trial).
        try:
            for _ in range(renewals):
                time.sleep(RENEW_EVERY_S)
                # A renewal not confirmed within the lease ends (OutcomeUnknown) while it
                # may still be held; one at a silent leader is sent again to the new one.
                renewed = client.cas(
                    LEADER, expected_version=token, touch=True, ttl_s=TTL_S, timeout_s=0.9 * TTL_S
                )
                expect(
                    renewed.succeeded and renewed.version == token, f"{me.decode()} lost its lease"
                )
        except BaseException as exc:  # the holder's loop below stops and raises it
            lost.append(exc)

    renewer = threading.Thread(target=renew)
    renewer.start()
    written = 0
    while renewer.is_alive():
        client.run(
            lambda tx, i=written: tx.put_fenced(WORK, b"%s:%d" % (me, i), lock=LEADER, token=token)
        )
        written += 1
        renewer.join(RENEW_EVERY_S / 2)  # the work's own pace
    if lost:
        raise lost[0]


def follow(watch: Watch, terms: int, seen: list[Change]) -> None:
    """Record every change of the leader key until `terms` terms have ended."""
    ended = 0
    while ended < terms:
        batch = watch.next_batch(timeout_s=30.0)
        expect(bool(batch), "the follower waited 30 s for a change")
        for change in batch:
            if change.key == LEADER:
                seen.append(change)
                ended += change.value is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--renewals", type=int, default=4, help="renewals per term")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    with Client(args.cluster, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not at its deadline
        seen: list[Change] = []
        terms: list[tuple[bytes, int]] = []  # (holder, token), in the order they won
        errors: list[BaseException] = []
        lock = threading.Lock()
        with client.watch(LEADER, LEADER + b"\x00") as watch:
            follower = threading.Thread(target=follow, args=(watch, args.candidates, seen))
            follower.start()

            def candidate(n: int) -> None:
                me = b"cand-%d" % n
                try:
                    token = campaign(client, me, deadline_s=60.0)
                    with lock:
                        terms.append((me, token))
                    lead(client, me, token, args.renewals)
                    with lock:
                        last = len(terms) == args.candidates  # nobody is waiting any more
                    if last:
                        resigned = client.cas(LEADER, expected_version=token, delete=True)
                        expect(resigned.succeeded, "the last leader could not resign")
                        return
                    # A crash: no resignation, no more renewals. The store ends the term.
                    expect(client.get(LEADER) == me, f"{me.decode()} lost its lease early")
                except BaseException as exc:
                    errors.append(exc)

            threads = [
                threading.Thread(target=candidate, args=(n,)) for n in range(args.candidates)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            follower.join()
        if errors:
            raise errors[0]

        # Every term began with the holder's write and ended with a delete, in order: the
        # follower saw put, delete, put, delete, ... with the holders in the order they won.
        expect(len(seen) == 2 * args.candidates, f"the follower saw {len(seen)} changes")
        for (holder, token), begun, ended in zip(terms, seen[0::2], seen[1::2], strict=True):
            expect(begun.value == holder and begun.version == token, f"term of {holder!r}")
            expect(ended.value is None and ended.version > token, f"end of {holder!r}")
        # A crashed holder's lease lasted at least TTL_S after its last renewal: no term
        # ended earlier than the renewals it made and one TTL after them.
        shortest = args.renewals * RENEW_EVERY_S + TTL_S
        for ended_term, (holder, token) in zip(seen[1:-2:2], terms[:-1], strict=True):
            held_s = (wall_ns_of(ended_term.version) - wall_ns_of(token)) / 1e9
            expect(held_s >= shortest, f"{holder!r} lost its lease after {held_s:.2f} s")
        # The first holder's token is stale: its renewal and its fenced writes are refused.
        first_token = terms[0][1]
        late = client.cas(LEADER, expected_version=first_token, touch=True, ttl_s=TTL_S)
        expect(not late.succeeded, "a crashed holder renewed a lease it had lost")
        try:
            client.run(lambda tx: tx.put_fenced(WORK, b"zombie", lock=LEADER, token=first_token))
        except FencingTokenRejected:
            pass
        else:
            raise AssertionError("a fenced write with a stale token was accepted")
        expect(client.get(LEADER) is None, "the last leader resigned: no lease is left")
        for (holder, token), ended_term in zip(terms, seen[1::2], strict=True):
            held_s = (wall_ns_of(ended_term.version) - wall_ns_of(token)) / 1e9
            print(f"{holder.decode()}: term {token}, held {held_s:.2f} s")
        print(
            f"{args.candidates} terms, none overlapping; {args.candidates - 1} holders stopped "
            f"without resigning and the store ended their leases (TTL {TTL_S:g} s); the last "
            "resigned; a stale token was refused"
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
