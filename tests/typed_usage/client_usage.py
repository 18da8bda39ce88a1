"""The clients' documented usage, type-checked: `mypy` (pyproject's `files`) checks this
module, so a signature that rejects what the README shows fails `test_mypy_strict`. Never
run: the functions only need to type-check.

Found by review: `@client.transactional` on an `async def` and `await client.run(body)`
were rejected by mypy (`Awaitable[T] | T` left T to be inferred from a union).
"""

from __future__ import annotations

from txn import AsyncClient, AsyncTransaction, Client, Transaction, transactional


async def async_usage(seeds: str) -> int:
    async with AsyncClient(seeds) as client:

        @client.transactional
        async def incr(tx: AsyncTransaction, key: bytes) -> int:
            value = int(await tx.get(key) or b"0") + 1
            tx.put(key, b"%d" % value)
            return value

        async def body(tx: AsyncTransaction) -> int:
            return len(await tx.scan(b"a", b"b"))

        def plain(tx: AsyncTransaction) -> str:
            tx.put(b"k", b"v")
            return "done"

        counted = await incr(b"k")
        scanned = await client.run(body)
        said = await client.run(plain)
        return counted + scanned + len(said)


def sync_usage(seeds: str) -> int:
    with Client(seeds) as client:

        @client.transactional
        def incr(tx: Transaction, key: bytes) -> int:
            value = int(tx.get(key) or b"0") + 1
            tx.put(key, b"%d" % value)
            return value

        @transactional
        def rename(tx: Transaction, old: bytes, new: bytes) -> bool:
            value = tx.get(old)
            if value is None:
                return False
            tx.delete(old)
            tx.put(new, value)
            return True

        def body(tx: Transaction) -> int:
            return len(tx.scan(b"a", b"b"))

        ok = rename(client, b"a", b"b")
        scanned = client.run(body)
        return incr(b"k") + scanned + int(ok)


async def module_level_decorator_on_both_clients(seeds: str) -> int:
    """`@transactional` on a coroutine function: awaited with an AsyncClient or inside an
    AsyncTransaction (found by review: `q: int = await add(ac, ...)` failed strict mypy)."""

    @transactional
    async def add(tx: AsyncTransaction, key: bytes, n: int) -> int:
        total = int(await tx.get(key) or b"0") + n
        tx.put(key, b"%d" % total)
        return total

    async with AsyncClient(seeds) as client:
        alone: int = await add(client, b"k", 1)
        async with client.transaction() as tx:
            composed: int = await add(tx, b"k", 2)
    return alone + composed


def wrong_arguments_are_rejected(seeds: str) -> None:
    """Each call below is wrong; mypy must say so (strict: an ignore it does not need is
    itself an error). Found by review: the decorators and `run` dropped the parameter
    types, so these passed."""

    def body(tx: Transaction, key: bytes) -> int:
        return len(tx.get(key) or b"")

    with Client(seeds) as client:
        incr = client.transactional(body)
        incr("not bytes")  # type: ignore[call-overload]
        incr(b"k", 2)  # type: ignore[call-overload]
        client.run(body, "not bytes")  # type: ignore[arg-type]
        composed = transactional(body)
        composed(client, 1)  # type: ignore[arg-type]


async def wrong_async_arguments_are_rejected(seeds: str) -> None:
    async def body(tx: AsyncTransaction, key: bytes) -> int:
        return len(await tx.get(key) or b"")

    async with AsyncClient(seeds) as client:
        incr = client.transactional(body)
        await incr("not bytes")  # type: ignore[call-overload]
        await client.run(body, 5)  # type: ignore[call-overload]
