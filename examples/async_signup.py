"""Sign-ups in an asyncio service: unique usernames and emails, and a per-tenant quota.

Run against a running cluster (see examples/README.md)::

    python examples/async_signup.py                  # with PAXOSKV_CLUSTER set
    python examples/async_signup.py --cluster HOST:PORT[,HOST:PORT...]

The asyncio form of unique_username.py, as a web service would run it: one `AsyncClient`
shared by every request handler (here, concurrent tasks), bodies as `async def` run by
`client.run`, reads awaited. Each tenant may have at most QUOTA
accounts, a limit no single key holds alone: a sign-up reads the tenant's account count and
writes it back one higher in the same transaction as the account and its two index
entries, so concurrent sign-ups past the quota cannot all commit. With the default 3 shards
split at "j" and "r", the four keys of a sign-up are in all three shards:

    acct/RUN/TENANT/ID       -> {"id": ID, "username": ..., "email": ...}
    uname/RUN/TENANT/NAME    -> ID      (usernames are unique per tenant)
    mail/RUN/EMAIL           -> ID      (emails are unique across tenants)
    quota/RUN/TENANT         -> the tenant's account count (8-byte counter)

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import unicodedata

from txn import AsyncClient, AsyncTransaction, PaxosKVError, decode_int, encode_int, prefix_end

RUN = secrets.token_hex(3)
QUOTA = 5


def canonical(text: str) -> str:
    """One form for every spelling of a name ("Ada", "ADA"): NFKC, case folded, NFKC."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def account_key(tenant: str, account_id: str) -> bytes:
    return f"acct/{RUN}/{tenant}/{account_id}".encode()


def username_key(tenant: str, username: str) -> bytes:
    return f"uname/{RUN}/{tenant}/{canonical(username)}".encode()


def email_key(email: str) -> bytes:
    return f"mail/{RUN}/{canonical(email)}".encode()


def quota_key(tenant: str) -> bytes:
    return f"quota/{RUN}/{tenant}".encode()


class Refused(Exception):
    """A sign-up or rename the rules refuse (a name taken, the quota full): an ordinary
    exception, so `run` does not retry it and its transaction writes nothing."""


async def sign_up(
    tx: AsyncTransaction, tenant: str, account_id: str, username: str, email: str
) -> None:
    """Create the account and claim its username, email and a place in the quota.

    `account_id` is chosen before `run`, so a re-run after a lost commit answer finds its
    own account and does nothing twice. The reads run at once (`asyncio.gather`); every
    one is awaited, or the commit is refused (a read never awaited reads nothing)."""
    record = {"id": account_id, "username": username, "email": email}
    existing, name_owner, email_owner, count = await asyncio.gather(
        tx.get(account_key(tenant, account_id)),
        tx.get(username_key(tenant, username)),
        tx.get(email_key(email)),
        tx.get(quota_key(tenant), for_update=True),  # every sign-up of the tenant writes it
    )
    if existing is not None:
        if json.loads(existing) == record:
            return  # an earlier attempt committed
        raise Refused(f"account id {account_id} exists")
    if name_owner is not None:
        raise Refused(f"username {username!r} is taken in {tenant}")
    if email_owner is not None:
        raise Refused(f"email {email!r} is taken")
    accounts = decode_int(count) if count is not None else 0
    if accounts >= QUOTA:
        raise Refused(f"{tenant} has its {QUOTA} accounts")
    tx.put(account_key(tenant, account_id), json.dumps(record).encode())
    tx.put(username_key(tenant, username), account_id.encode())
    tx.put(email_key(email), account_id.encode())
    tx.put(quota_key(tenant), encode_int(accounts + 1))


async def close_account(tx: AsyncTransaction, tenant: str, account_id: str) -> None:
    """Delete the account, free its username and email, and give back its quota place."""
    raw = await tx.get(account_key(tenant, account_id))
    if raw is None:
        return  # closed already (or an earlier attempt committed)
    record = json.loads(raw)
    count = await tx.get(quota_key(tenant), for_update=True)
    tx.delete(account_key(tenant, account_id))
    tx.delete(username_key(tenant, record["username"]))
    tx.delete(email_key(record["email"]))
    tx.put(quota_key(tenant), encode_int(decode_int(count or encode_int(1)) - 1))


async def check(client: AsyncClient, tenants: list[str]) -> dict[str, int]:
    """From ONE snapshot across all shards: each tenant's count equals its accounts and is
    within the quota, usernames are unique per tenant and emails overall, and every index
    entry names an account that has that name. Returns the accounts per tenant."""
    async with client.snapshot() as snap:
        accounts = {
            key.decode(): json.loads(value)
            async for key, value in snap.iterate(
                f"acct/{RUN}/".encode(), prefix_end(f"acct/{RUN}/".encode())
            )
        }
        emails = {
            key: value
            async for key, value in snap.iterate(
                f"mail/{RUN}/".encode(), prefix_end(f"mail/{RUN}/".encode())
            )
        }
        counts = {tenant: await snap.get(quota_key(tenant)) for tenant in tenants}
        names = {
            key: value
            async for key, value in snap.iterate(
                f"uname/{RUN}/".encode(), prefix_end(f"uname/{RUN}/".encode())
            )
        }
    per_tenant = {tenant: 0 for tenant in tenants}
    for key, record in accounts.items():
        tenant = key.split("/")[2]
        per_tenant[tenant] += 1
        expect(
            names.get(username_key(tenant, record["username"])) == record["id"].encode(),
            f"account {key} has no username entry",
        )
        expect(
            emails.get(email_key(record["email"])) == record["id"].encode(),
            f"account {key} has no email entry",
        )
    expect(len(names) == len(accounts) == len(emails), "index entries without an account")
    for tenant, raw in counts.items():
        count = decode_int(raw) if raw is not None else 0
        expect(
            count == per_tenant[tenant], f"{tenant}: count {count}, {per_tenant[tenant]} accounts"
        )
        expect(count <= QUOTA, f"{tenant} is over its quota: {count}")
    return per_tenant


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


async def walk_through(seeds: str) -> None:
    async with AsyncClient(seeds, max_attempts=100, settle_unknown=True) as client:
        await client.connect()  # a wrong address fails here at once, not after retries
        tenants = ["acme", "globex", "initech", "hooli"]
        keys = [
            account_key("acme", "x"),
            username_key("acme", "x"),
            email_key("x"),
            quota_key("acme"),
        ]
        print(f"run {RUN}: groups " + ", ".join(str(client.group_of(k)) for k in keys))

        async def attempt(tenant: str, username: str, email: str) -> bool:
            account_id = f"{tenant}-{secrets.token_hex(4)}"  # chosen before run
            try:
                await client.run(sign_up, tenant, account_id, username, email)
            except Refused:
                return False
            return True

        # 1. Twelve concurrent sign-ups per tenant, all different: QUOTA win in each.
        won = await asyncio.gather(
            *(
                attempt(tenant, f"user{i}", f"{tenant}.user{i}@example.com")
                for tenant in ("acme", "globex")
                for i in range(12)
            )
        )
        per_tenant = await check(client, tenants)
        print(f"quota race: {sum(won)} of {len(won)} sign-ups won: {per_tenant}")
        expect(per_tenant == dict(acme=QUOTA, globex=QUOTA, initech=0, hooli=0), "quota broken")

        # 2. Six concurrent sign-ups for one username, then four across tenants for one
        # email: exactly one of each race wins.
        names = await asyncio.gather(
            *(attempt("initech", "Ada", f"ada{i}@example.com") for i in range(6))
        )
        emails = await asyncio.gather(
            *(attempt("initech", f"grace{i}", "same@example.com") for i in range(2)),
            *(attempt("hooli", f"grace{i}", "same@example.com") for i in range(2)),
        )
        expect(sum(names) == 1 and sum(emails) == 1, f"races won: {names}, {emails}")
        print("name race: 1 of 6 won; email race across tenants: 1 of 4 won")
        per_tenant = await check(client, tenants)

        # 2. Closing an account gives its quota place, username and email back.
        closed = await client.get(username_key("acme", "user0"))  # some account's id
        expect(closed is not None, "no acme account to close")
        await client.run(close_account, "acme", (closed or b"").decode())
        after = await check(client, tenants)
        expect(after["acme"] == per_tenant["acme"] - 1, f"the close gave nothing back: {after}")
        await client.run(sign_up, "acme", "acme-late", "latecomer", "late@example.com")
        try:
            await client.run(sign_up, "acme", "acme-later", "later", "later@example.com")
            raise AssertionError("a sign-up past the quota was taken")
        except Refused as refused:
            print(f"refused as expected: {refused}")
        await check(client, tenants)
        print("closed one acme account; its place went to the next sign-up, then none was left")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")
    try:
        asyncio.run(walk_through(args.cluster))
    except (AssertionError, PaxosKVError) as exc:
        what = f"{type(exc).__name__}: {exc}" if isinstance(exc, PaxosKVError) else str(exc)
        print(f"FAILED: {what}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
