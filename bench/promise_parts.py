"""What one promise part costs: building it, encoding it, decoding it (replica rule 18).

    python bench/promise_parts.py [--votes 200000] [--vote-bytes 300] [--sizes-mib 2,4,48]
                                  [--repeat 3] [--json FILE]

An acceptor holding `--votes` votes of `--vote-bytes` each is asked for its promise with
`max_promise_bytes` set to each size: the first part's build (`Replica._make_promise`),
its encoding and its decoding (`paxos.codec`) are timed, medians of `--repeat` rounds. A
part must arrive within an election timeout (150-300 ms by default) for the candidate to
wait for it, which is what the default of `max_promise_bytes` is chosen by.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

from paxos import Ballot
from paxos.codec import decode, encode
from paxos.config import ReplicaConfig
from paxos.replica import Replica
from paxos.storage import MemoryStorage


def acceptor(votes: int, vote_bytes: int, bound: int) -> Replica:
    """A replica of a 3-replica group holding `votes` votes of one `vote_bytes` command."""
    config = ReplicaConfig(node_id=1, voters=(1, 2, 3), max_promise_bytes=bound)
    replica = Replica(config, MemoryStorage().load(), 0, random.Random(1))
    value = (b"x" * vote_bytes,)
    for slot in range(1, votes + 1):
        replica._log[slot] = (Ballot(1, 2), value)
    return replica


def measure(votes: int, vote_bytes: int, size_mib: float, repeat: int) -> dict[str, float]:
    replica = acceptor(votes, vote_bytes, int(size_mib * 1024 * 1024))
    build, enc, dec = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        promise = replica._make_promise(2, Ballot(3, 2), 1)
        built = time.perf_counter()
        data = encode(promise)
        encoded = time.perf_counter()
        decode(data)
        decoded = time.perf_counter()
        build.append(built - started)
        enc.append(encoded - built)
        dec.append(decoded - encoded)
    total = [b + e + d for b, e, d in zip(build, enc, dec, strict=True)]
    return {
        "size_mib": size_mib,
        "part_votes": len(promise.accepted),
        "part_mib": round(len(data) / 2**20, 2),
        "build_ms": round(1000 * statistics.median(build), 1),
        "encode_ms": round(1000 * statistics.median(enc), 1),
        "decode_ms": round(1000 * statistics.median(dec), 1),
        "total_ms": round(1000 * statistics.median(total), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=200_000, help="votes the acceptor holds")
    parser.add_argument("--vote-bytes", type=int, default=300, help="bytes of each vote's command")
    parser.add_argument(
        "--sizes-mib", default="2,4,48", help="max_promise_bytes values to try, in MiB"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rows = [
        measure(args.votes, args.vote_bytes, float(size), args.repeat)
        for size in args.sizes_mib.split(",")
    ]
    print(
        f"{platform.processor() or platform.machine()}, {args.votes} votes of {args.vote_bytes} B"
    )
    print(
        f"{'bound':>9} {'votes':>7} {'MiB':>6} {'build':>8} {'encode':>8} {'decode':>8} {'total':>8}"
    )
    for r in rows:
        print(
            f"{r['size_mib']:>5g} MiB {r['part_votes']:>7} {r['part_mib']:>6} "
            f"{r['build_ms']:>5} ms {r['encode_ms']:>5} ms {r['decode_ms']:>5} ms "
            f"{r['total_ms']:>5} ms"
        )
    if args.json:
        report = {"votes": args.votes, "vote_bytes": args.vote_bytes, "parts": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
