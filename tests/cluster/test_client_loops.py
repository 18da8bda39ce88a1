"""A sync Client beside other event loops of its process that use grpc.aio, in a script of
its own against a real cluster: the only loops in it are the script's (in the test
process, the fixtures' loops have used gRPC too)."""

from __future__ import annotations

import subprocess
import sys

from router.loop_end import PASSED_OVER
from shard.cluster import LocalCluster

#: A user's script: a Client, and an event loop that leaves a gRPC call behind when it
#: ends; the call completes in the gRPC core at its deadline, and the Client's loop, the
#: one still polling, reads its completion. Exit 0 once a loop reported it, 3 if none did.
SCRIPT = """
import asyncio, logging, socket, sys, threading
import grpc, txn

reported = threading.Event()

class Reported(logging.Handler):
    def emit(self, record):
        reported.set()

logging.basicConfig(level=logging.ERROR)
logging.getLogger("paxoskv.client").setLevel(logging.DEBUG)
logging.getLogger().addHandler(Reported())
silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen()
address = "127.0.0.1:%d" % silent.getsockname()[1]
left = []

async def leave_a_call_waiting():
    channel = grpc.aio.insecure_channel(address)
    left.append(asyncio.ensure_future(channel.unary_unary("/x/y")(b"", timeout=0.3)))
    await asyncio.sleep(0)

with txn.Client(sys.argv[1]) as client:
    client.get(b"loops")
    ended = asyncio.new_event_loop()
    ended.run_until_complete(leave_a_call_waiting())
    ended.close()
    sys.exit(0 if reported.wait(10) else 3)
"""


def test_a_completion_of_an_ended_loop_reaching_the_clients_loop_prints_nothing(
    shared_cluster: LocalCluster,
) -> None:
    """Found by a user's walk-through: a sync Client living on past an `asyncio.run` that
    used grpc.aio printed "Exception in callback PollerCompletionQueue._handle_events ...
    Event loop is closed" with a traceback, when its loop read a completion of the ended
    loop's call (gRPC's one poller serves every loop of the process)."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, shared_cluster.env_value()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert PASSED_OVER in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
