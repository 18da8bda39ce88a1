"""Unique usernames and emails across shards, kept by transactions.

Run against a running cluster (see examples/README.md)::

    python examples/unique_username.py                  # with PAXOSKV_CLUSTER set
    python examples/unique_username.py --cluster HOST:PORT[,HOST:PORT...]

A users table keyed by user id, plus two unique indexes. The index entries live in OTHER
shards than the user record (with the default 3 shards split at "j" and "r": email/... in
the first, name/... in the second, user/... in the third), so every sign-up, rename and
delete is a cross-shard transaction. The store has no unique constraint; uniqueness comes from
serializability: a sign-up READS the index keys it needs absent and WRITES them, so two
sign-ups racing for the same username cannot both commit — the second one's read is stale at
PREPARE, it is re-run from fresh reads, and then it sees the name taken.

    user/RUN/ID            -> {"id": ID, "username": ..., "email": ...}
    name/RUN/USERNAME      -> ID      USERNAME and EMAIL in canonical form (`canonical`):
    email/RUN/EMAIL        -> ID      "Ada" and "ada" are one name, as users expect

RUN is a random tag per run, so the example can run many times against one cluster.
Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import unicodedata

from txn import Client, PaxosKVError, Transaction, prefix_end

RUN = secrets.token_hex(3)


# ---------------------------------------------------------------------------- keys


def user_key(user_id: str) -> bytes:
    return f"user/{RUN}/{user_id}".encode()


def canonical(text: str) -> str:
    """The form two spellings of one name share, Unicode's NFKC_Casefold: NFKC, case
    folded, NFKC again (folding can undo the normalization: "\u03aa\u0300" and "\u1fd2"
    differ after one pass). "Ada", "ADA" and "ada" in fullwidth letters are one username,
    and so are "straße" and "strasse". Uniqueness is of this form; the record keeps the
    spelling the user gave."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def name_key(username: str) -> bytes:
    return f"name/{RUN}/{canonical(username)}".encode()


def email_key(email: str) -> bytes:
    return f"email/{RUN}/{canonical(email)}".encode()


class Taken(Exception):
    """A sign-up or rename asked for a username or email someone else has. Its message
    names what is taken, not by whom: it may be shown to the user who asked.

    An ordinary exception, not a paxoskv error: `client.run` does not retry it, and the
    transaction it was raised in is aborted (nothing written)."""


# ---------------------------------------------------------------------------- operations


def create_user(tx: Transaction, user_id: str, username: str, email: str) -> None:
    """Create the user and claim both index entries, all or nothing.

    `user_id` is chosen by the caller BEFORE the retry loop, so a re-run after an unknown
    commit outcome finds its own record and does nothing twice (idempotent)."""
    existing = tx.get(user_key(user_id))
    if existing is not None:
        if json.loads(existing) == {"id": user_id, "username": username, "email": email}:
            return  # an earlier attempt committed
        raise Taken(f"user id {user_id} exists")
    if tx.get(name_key(username)) is not None:
        raise Taken(f"username {username!r} is taken")
    if tx.get(email_key(email)) is not None:
        raise Taken(f"email {email!r} is taken")
    record = {"id": user_id, "username": username, "email": email}
    tx.put(user_key(user_id), json.dumps(record).encode())
    tx.put(name_key(username), user_id.encode())
    tx.put(email_key(email), user_id.encode())


def rename_user(tx: Transaction, user_id: str, new_username: str) -> None:
    """Move the user's name index entry atomically: nobody ever sees both or neither."""
    raw = tx.get(user_key(user_id))
    if raw is None:
        raise KeyError(f"no user {user_id}")
    record = json.loads(raw)
    if record["username"] == new_username:
        return
    old_key, new_key = name_key(record["username"]), name_key(new_username)
    if new_key != old_key:  # not only a new spelling of the user's own name ("ada" -> "Ada")
        if tx.get(new_key) is not None:
            raise Taken(f"username {new_username!r} is taken")
        tx.delete(old_key)
        tx.put(new_key, user_id.encode())
    record["username"] = new_username
    tx.put(user_key(user_id), json.dumps(record).encode())


def delete_user(tx: Transaction, user_id: str) -> None:
    """Delete the user and free its username and email, all or nothing."""
    raw = tx.get(user_key(user_id))
    if raw is None:
        return
    record = json.loads(raw)
    tx.delete(user_key(user_id))
    tx.delete(name_key(record["username"]))
    tx.delete(email_key(record["email"]))


def check_consistency(client: Client) -> int:
    """Read users and both indexes in ONE snapshot (one timestamp, all shards) and check:
    no two users share a username or email, every index entry points to a user that has
    that username/email, and every user has both entries. Returns the user count."""

    with client.snapshot() as snap:
        ranges = {}
        for name in ("user", "name", "email"):
            prefix = f"{name}/{RUN}/".encode()
            # iterate: every key, a page at a time, all at the snapshot's one timestamp.
            ranges[name] = {
                k[len(prefix) :].decode(): v for k, v in snap.iterate(prefix, prefix_end(prefix))
            }
    users = {uid: json.loads(v) for uid, v in ranges["user"].items()}
    usernames = [canonical(u["username"]) for u in users.values()]
    emails = [canonical(u["email"]) for u in users.values()]
    expect(len(set(usernames)) == len(usernames), f"two users share a username: {usernames}")
    expect(len(set(emails)) == len(emails), f"two users share an email: {emails}")
    for field, index in (("username", ranges["name"]), ("email", ranges["email"])):
        for value, uid in index.items():
            user = users.get(uid.decode())
            expect(
                user is not None and canonical(user[field]) == value,
                f"index entry {field} {value!r} -> user {uid!r}, but that user is {user}",
            )
        expect(len(index) == len(users), f"{len(users)} users but {len(index)} {field}s")
    return len(users)


# ---------------------------------------------------------------------------- the walk-through


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def race_for(client: Client, attempts: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Start one thread per (username, email) sign-up at the same moment; returns the user
    ids that won and the errors the others got. Any other error (the cluster unreachable, a
    commit that could not be settled) is raised here, not lost in its thread."""
    barrier = threading.Barrier(len(attempts))
    won: list[str] = []
    lost: list[str] = []
    failed: list[BaseException] = []
    lock = threading.Lock()

    def sign_up(i: int, username: str, email: str) -> None:
        user_id = f"racer{i}-{secrets.token_hex(2)}"  # chosen before the retry loop
        barrier.wait()
        try:
            client.run(create_user, user_id, username, email)
            with lock:
                won.append(user_id)
        except Taken as exc:
            with lock:
                lost.append(str(exc))
        except BaseException as exc:  # raised by race_for, not lost with the thread
            with lock:
                failed.append(exc)

    threads = [
        threading.Thread(target=sign_up, args=(i, username, email))
        for i, (username, email) in enumerate(attempts)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return won, lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    parser.add_argument("--racers", type=int, default=6, help="concurrent sign-ups per race")
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")
    if args.racers < 2:
        parser.error("--racers must be at least 2: a race needs two sign-ups")

    with Client(args.cluster, max_attempts=100, settle_unknown=True) as client:
        client.connect()  # a wrong address fails here at once, not after run()'s retries
        where = {"users": user_key("x"), "usernames": name_key("x"), "emails": email_key("x")}
        print(
            f"run {RUN}: "
            + ", ".join(f"{table} in group {client.group_of(key)}" for table, key in where.items())
        )

        # 1. Create, and refuse duplicates with a clear error.
        client.run(create_user, "u1", "ada", "ada@example.com")
        client.run(create_user, "u2", "grace", "grace@example.com")
        print("created u1 ada, u2 grace")
        for username, email in (
            ("ada", "other@example.com"),
            ("ada2", "grace@example.com"),
            ("ADA", "ada3@example.com"),  # one name in another case: the same username
            ("\uff41\uff44\uff41", "ada5@example.com"),  # "ada" in fullwidth letters: the same
            ("ada4", "Grace@Example.com"),
        ):
            try:
                client.run(create_user, "u3", username, email)
            except Taken as exc:
                print(f"refused as expected: {exc}")
            else:
                raise AssertionError(f"sign-up {username}/{email} should have been refused")
        client.run(create_user, "u1", "ada", "ada@example.com")  # a re-run is a no-op
        expect(check_consistency(client) == 2, "expected 2 users")

        # 2. Rename moves the index entry atomically; the old name is free afterwards.
        client.run(rename_user, "u1", "lovelace")
        expect(client.get(name_key("ada")) is None, "old username still indexed")
        expect(client.get(name_key("lovelace")) == b"u1", "new username not indexed")
        client.run(rename_user, "u1", "Lovelace")  # a new spelling of the user's own name
        expect(client.get(name_key("lovelace")) == b"u1", "a respelled name lost its entry")
        try:
            client.run(rename_user, "u2", "lovelace")
            raise AssertionError("renaming onto a taken username should fail")
        except Taken as exc:
            print(f"refused as expected: {exc}")
        client.run(create_user, "u3", "ada", "ada.b@example.com")
        print("renamed u1 to lovelace; the name ada was free again for u3")
        expect(check_consistency(client) == 3, "expected 3 users")

        # 3. Delete frees both index entries.
        client.run(delete_user, "u3")
        expect(client.get(name_key("ada")) is None, "deleted user's username still indexed")
        expect(check_consistency(client) == 2, "expected 2 users after the delete")
        print("deleted u3")

        # 4. Concurrent conflicting sign-ups: exactly one wins each race.
        n = args.racers
        won, lost = race_for(client, [("hopper", f"racer{i}@example.com") for i in range(n)])
        expect(len(won) == 1, f"{len(won)} sign-ups won the username race: {won}")
        expect(all("hopper" in e for e in lost), f"unexpected errors: {lost}")
        print(
            f"username race: {n} concurrent sign-ups for 'hopper' -> 1 won ({won[0]}), "
            f"{len(lost)} got: {lost[0]}"
        )
        won, lost = race_for(client, [(f"racer{i}", "same@example.com") for i in range(n)])
        expect(len(won) == 1, f"{len(won)} sign-ups won the email race: {won}")
        print(
            f"email race: {n} concurrent sign-ups for same@example.com -> 1 won, "
            f"{len(lost)} refused"
        )
        users = check_consistency(client)
        expect(users == 4, f"expected 4 users, found {users}")
        print(
            f"consistency check passed: {users} users, unique usernames and emails, "
            "every index entry points to its user"
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
