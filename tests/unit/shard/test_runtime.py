"""NodeRuntime's cycle loop, in process: a one-node cluster on a real disk, no socket opened."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from paxos import Ballot, Role
from paxos.messages import Heartbeat
from router import kv_pb2 as kv
from router.tls import TlsFiles, TlsSetupError
from shard import execute as execute_module
from shard import runtime as runtime_module
from shard.config import ClusterConfig, NodeConfig, NodeTls
from shard.health import KV_SERVICE, NOT_SERVING, SERVING
from shard.runtime import MAX_CYCLES_PER_WAKE, NodeRuntime
from tests.unit.shard.runtime_support import (
    DEADLINE_S,
    AbortingContext,
    HeldSync,
    until,
    wake_until,
)


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        cluster_id="runtime-test",
        nodes=(NodeConfig(id=1, name="n1", address="127.0.0.1:1"),),
        replication=1,
        data_dir=str(tmp_path),
    )


async def elected(config: ClusterConfig) -> NodeRuntime:
    """A one-node runtime whose data group has elected its only replica."""
    runtime = NodeRuntime(config, config.nodes[0], first_start=True)
    replica = runtime.core.hosts[1].replica
    await wake_until(runtime, lambda: replica.role is Role.LEADER)
    return runtime


def _put(runtime: NodeRuntime, key: bytes, request_id: int = 1) -> kv.Request:
    request = kv.Request(id=request_id, put=kv.PutRequest(key=key, value=b"v"))
    request.put.header.cluster_id = runtime.config.cluster_id
    request.put.header.group_id = 1
    return request


async def put_and_wait(runtime: NodeRuntime, key: bytes, request_id: int = 1) -> kv.Response:
    """Submit a put as the client service does and run wakes until it is answered."""
    answer: asyncio.Future[kv.Response] = asyncio.get_running_loop().create_future()
    runtime.submit(_put(runtime, key, request_id), answer.set_result)
    await wake_until(runtime, answer.done)
    return answer.result()


def test_a_wake_serves_a_write_end_to_end(config: ClusterConfig) -> None:
    async def main() -> kv.Response:
        runtime = await elected(config)
        try:
            return await put_and_wait(runtime, b"k", request_id=7)
        finally:
            runtime.disk.close()

    response = asyncio.run(main())
    assert response.id == 7
    assert response.put.error.code == kv.OK, response
    assert response.put.version > 0


def test_a_slow_wake_is_logged_with_where_its_time_went(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Threshold: two thirds of the shortest election timeout (150 ms here), so 100 ms."""
    clock = SimpleNamespace(now=1000.0)
    runtime_clock = SimpleNamespace(
        perf_counter=lambda: clock.now, monotonic=time.monotonic, time_ns=time.time_ns
    )
    monkeypatch.setattr(runtime_module, "time", runtime_clock)  # this module's clock only
    disk = SimpleNamespace(sync_s=0.12)
    cycle_persists = execute_module.cycle_persists  # what the runtime module imported

    def persists(*args: Any) -> Any:
        clock.now += disk.sync_s  # the synced write held the loop this long
        return cycle_persists(*args)

    monkeypatch.setattr(runtime_module, "cycle_persists", persists)

    def slow_wakes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("slow wake")]

    async def main() -> None:
        runtime = await elected(config)
        try:
            caplog.clear()
            assert (await put_and_wait(runtime, b"slow")).put.error.code == kv.OK
            logged = slow_wakes()
            assert logged, "a wake with a 120 ms synced write was not logged"
            fields = logged[0].__dict__
            assert fields["wake_ms"] >= 120 and fields["persist_ms"] >= 120
            assert fields["cycles"] >= 1 and fields["apply_ms"] >= 0
            assert fields["election_timeout_ms"] == config.paxos.election_timeout_min_ms
            disk.sync_s = 0.03  # under the 100 ms threshold, even three in one wake
            caplog.clear()
            assert (await put_and_wait(runtime, b"fast")).put.error.code == kv.OK
            assert slow_wakes() == []
        finally:
            runtime.disk.close()

    with caplog.at_level(logging.WARNING, logger="paxoskv.node"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("cycles_with_work", "rewakes"),
    [(3, False), (MAX_CYCLES_PER_WAKE - 1, False), (MAX_CYCLES_PER_WAKE, True), (40, True)],
)
def test_a_wake_runs_a_bounded_number_of_cycles_and_comes_back_for_the_rest(
    config: ClusterConfig,
    monkeypatch: pytest.MonkeyPatch,
    cycles_with_work: int,
    rewakes: bool,
) -> None:
    """A wake stops after MAX_CYCLES_PER_WAKE cycles so the sockets are served, and sets
    its own wake when work is left; it does not when the work ran out first."""
    started: list[int] = []
    work = [(None, SimpleNamespace(messages=()))]

    def start_cycle(core: object, send: object) -> list[tuple[None, SimpleNamespace]]:
        started.append(1)
        return work if len(started) <= cycles_with_work else []

    monkeypatch.setattr(runtime_module, "start_cycle", start_cycle)
    monkeypatch.setattr(runtime_module, "cycle_persists", lambda *args: [])
    monkeypatch.setattr(runtime_module, "send_votes", lambda *args: False)
    monkeypatch.setattr(runtime_module, "apply_cycle", lambda *args: None)

    async def main() -> bool:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        try:
            runtime._wake.clear()
            await runtime._run_cycles()
            return runtime._wake.is_set()
        finally:
            runtime.disk.close()

    assert asyncio.run(main()) is rewakes
    assert len(started) == min(cycles_with_work + 1, MAX_CYCLES_PER_WAKE)


def test_a_wake_that_ran_past_its_budget_lets_the_loop_run_before_the_next(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: a wake that stopped at WAKE_BUDGET_S set its own wake and `run()`
    went straight back in (an Event already set does not suspend its waiter), so a follower
    applying a backlog held the loop until the end of it: no socket read, no timer, no peer
    link send in between. Every cycle here runs past a zero budget."""
    left = [20]

    def start_cycle(core: object, send: object) -> list[tuple[None, SimpleNamespace]]:
        return [(None, SimpleNamespace(messages=()))] if left[0] else []

    def apply_cycle(*args: object) -> None:
        left[0] -= 1

    monkeypatch.setattr(runtime_module, "WAKE_BUDGET_S", 0.0)
    monkeypatch.setattr(runtime_module, "start_cycle", start_cycle)
    monkeypatch.setattr(runtime_module, "cycle_persists", lambda *args: [])
    monkeypatch.setattr(runtime_module, "send_votes", lambda *args: False)
    monkeypatch.setattr(runtime_module, "apply_cycle", apply_cycle)

    async def main() -> list[int]:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        turns: list[int] = []

        async def other_task() -> None:  # a gRPC handler or a peer link, say
            while left[0]:
                turns.append(left[0])
                await asyncio.sleep(0)

        try:
            runtime._wake.set()
            runner = asyncio.create_task(runtime.run())
            other = asyncio.create_task(other_task())
            deadline = time.monotonic() + DEADLINE_S
            while left[0] and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            runtime._stopped.set()
            runtime._wake.set()
            await asyncio.wait_for(runner, DEADLINE_S)
            await other
            return turns
        finally:
            runtime.disk.close()

    turns = asyncio.run(main())
    # The other task ran between (nearly) every two cycles, not only once they were done.
    assert len(set(turns)) >= 15, turns


@pytest.mark.parametrize(("idle_s", "deferred"), [(0.01, False), (5.0, True)])
def test_a_wake_after_a_stall_defers_the_elections_before_the_timers_fire(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, idle_s: float, deferred: bool
) -> None:
    """A node back from SIGSTOP campaigned at once (its timers ran out while it heard
    nothing) and its leaders had to take their groups back (rule 12); it now first gives
    the peer links an election timeout to bring the leaders' heartbeats."""
    calls: list[str] = []

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        try:
            monkeypatch.setattr(runtime.core, "defer_elections", lambda now: calls.append("d"))
            monkeypatch.setattr(runtime.core, "tick", lambda now, wall: calls.append("t"))
            runtime._last_tick = time.monotonic() - idle_s
            await runtime._run_cycles()
        finally:
            runtime.disk.close()

    asyncio.run(main())
    assert calls == (["d", "t"] if deferred else ["t"])


def test_an_outbound_duty_cancelled_midway_still_reports_back(config: ClusterConfig) -> None:
    """Found by review: closing the node's own client (a TLS rotation rebuilds it) cancelled
    a duty's call, and without its callback the core kept the duty in flight for good (a
    Resolve never re-sent, a prepared transaction never asked about again)."""

    async def main() -> list[Any]:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        answers: list[Any] = []
        started = asyncio.Event()

        class StuckClient:
            async def send(self, *args: object, **kwargs: object) -> kv.Response:
                started.set()
                await asyncio.sleep(3600)
                raise AssertionError("unreachable")

        async def group_client() -> Any:
            return StuckClient()

        runtime._group_client = group_client  # type: ignore[method-assign]
        task = asyncio.create_task(runtime._call_group(1, kv.Request(), answers.append))
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        runtime.core.close()
        runtime.disk.close()
        return answers

    assert asyncio.run(main()) == [None]


def test_a_node_does_not_share_its_port_with_another_server(config: ClusterConfig) -> None:
    """Found by the user review: gRPC binds with SO_REUSEPORT by default, so a node started
    on the port a node of another cluster listened on, and the kernel split connections
    between the two (a client of one cluster read 'not found' from the other)."""

    async def main() -> None:
        other = grpc.aio.server()  # gRPC's defaults, SO_REUSEPORT included, as a node had
        port = other.add_insecure_port("127.0.0.1:0")
        await other.start()
        node = NodeConfig(id=1, name="n1", address=f"127.0.0.1:{port}")
        runtime = NodeRuntime(dataclasses.replace(config, nodes=(node,)), node, first_start=True)
        try:
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: address in use"):
                await runtime.start()
        finally:
            await runtime.stop(grace_s=0)
            await other.stop(0)

    asyncio.run(main())


def test_a_first_start_that_cannot_listen_leaves_no_data_behind(config: ClusterConfig) -> None:
    """Found by a user's walk-through: `paxoskv node --bootstrap` on a busy port created the
    node's data, and the retry on the corrected address was refused as a changed cluster."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        node = NodeConfig(id=1, name="n1", address=f"127.0.0.1:{busy.getsockname()[1]}")
        on_busy_port = dataclasses.replace(config, nodes=(node,))
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:.*address in use"):
            asyncio.run(runtime_module.serve(on_busy_port, node, first_start=True))
    assert not on_busy_port.node_data_dir(node).exists()


def test_a_metrics_address_must_bind_on_every_address_its_name_resolves_to(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the pre-check took a name if one of its addresses bound, as gRPC
    does; the metrics endpoint (an asyncio server) binds every one, so a name with one busy
    address passed the check and the node failed after touching its data."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free_then_busy = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ("127.0.0.2", "127.0.0.1")
        ]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: free_then_busy)

        async def asyncio_server() -> None:
            server = await asyncio.start_server(lambda r, w: None, ["127.0.0.2", "127.0.0.1"], port)
            server.close()

        with pytest.raises(OSError):
            asyncio.run(asyncio_server())  # why: an asyncio server needs every address
        runtime_module.check_can_listen(f"both:{port}")  # gRPC needs one
        with pytest.raises(OSError, match=f"cannot listen on both:{port}: address in use"):
            runtime_module.check_can_listen(f"both:{port}", every=True)
        node = NodeConfig(id=1, name="n1", address="127.0.0.1:0", metrics_address=f"both:{port}")
        with pytest.raises(OSError, match=f"cannot listen on both:{port}"):
            asyncio.run(
                runtime_module.serve(
                    dataclasses.replace(config, nodes=(node,)), node, first_start=True
                )
            )
    assert not config.node_data_dir(node).exists()


def test_an_address_of_a_family_without_sockets_is_passed_over_as_asyncio_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: with IPv6 disabled and "::1" still a name of localhost, the metrics
    check refused "localhost", which an asyncio server serves on 127.0.0.1 alone."""
    v6_then_v4 = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
    ]
    real_socket = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: object, **kwargs: object) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real_socket(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: v6_then_v4)
    monkeypatch.setattr(socket, "socket", no_ipv6)
    runtime_module.check_can_listen("localhost:0", every=True)
    runtime_module.check_can_listen("localhost:0")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: v6_then_v4[:1])
    with pytest.raises(OSError, match="cannot listen on localhost:0"):
        runtime_module.check_can_listen("localhost:0", every=True)


def test_a_node_whose_loop_crashed_logs_its_exit_after_the_stop(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A node whose loop crashed stops (fail-stop), and the stop logs "node stopped", which
    `paxoskv cluster status` takes for a clean stop when it is a log's last record
    (shard/cluster.py, rule 7): the crashed node logs why it exits after it."""

    async def crash(_self: NodeRuntime) -> None:
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(NodeRuntime, "run", crash)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        node = NodeConfig(id=1, name="n1", address=f"127.0.0.1:{probe.getsockname()[1]}")
    crashing = dataclasses.replace(config, nodes=(node,))
    with caplog.at_level(logging.INFO, logger="paxoskv.node"), pytest.raises(SystemExit) as exited:
        asyncio.run(runtime_module.serve(crashing, node, first_start=True))
    assert exited.value.code == runtime_module.CRASH_EXIT
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "paxoskv.node"]
    assert records[-2:] == [("INFO", "node stopped"), ("CRITICAL", "node exits: its loop crashed")]
    assert ("CRITICAL", "node loop crashed") in records


def test_a_first_start_refused_for_its_tls_files_leaves_no_data_behind(
    config: ClusterConfig, tmp_path: Path
) -> None:
    pems = tmp_path / "pems"
    pems.mkdir()
    for name in ("ca.pem", "n1.pem", "n1.key"):
        (pems / name).write_text("not a PEM\n")
    files = TlsFiles(ca_file=pems / "ca.pem", cert_file=pems / "n1.pem", key_file=pems / "n1.key")
    with_tls = dataclasses.replace(config, tls=NodeTls(files=files))
    with pytest.raises(TlsSetupError):
        NodeRuntime(with_tls, with_tls.nodes[0], first_start=True)
    assert not with_tls.node_data_dir(with_tls.nodes[0]).exists()


def _record_repeats(runtime: NodeRuntime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The groups whose heartbeats the runtime sent; its one group repeats a fake round."""
    sent: list[int] = []
    beat = Heartbeat(src=1, dst=2, ballot=Ballot(1, 1), chosen_watermark=0, seq=1)
    monkeypatch.setattr(runtime.core.hosts[1].replica, "repeat_heartbeats", lambda: [beat])
    monkeypatch.setattr(runtime, "_send", lambda group_id, msgs: sent.append(group_id))
    return sent


def test_a_large_write_syncs_aside_while_its_leader_repeats_its_heartbeats(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fsync of a large write runs in a worker thread; the loop meanwhile re-sends the
    heartbeats of the groups the node leads, and answers nothing before the fsync ends.
    The wait is not logged as a slow wake: the loop was not held."""
    monkeypatch.setattr(runtime_module, "SYNC_ASIDE_BYTES", 0)  # every synced write here

    async def main() -> None:
        runtime = await elected(config)
        try:
            held = HeldSync(runtime)
            sent = _record_repeats(runtime, monkeypatch)
            answer: asyncio.Future[kv.Response] = asyncio.get_running_loop().create_future()
            runtime.submit(_put(runtime, b"big"), answer.set_result)
            wake = asyncio.create_task(runtime._run_cycles())
            await until(lambda: len(sent) >= 3)  # three heartbeat intervals, still held
            assert held.started() and not wake.done() and not answer.done()
            held.release_all()
            await asyncio.wait_for(wake, DEADLINE_S)
            await wake_until(runtime, answer.done)
            assert answer.result().put.error.code == kv.OK
        finally:
            runtime.disk.close()

    with caplog.at_level(logging.WARNING, logger="paxoskv.node"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.getMessage().startswith("slow wake")]


def test_a_disk_that_hangs_gets_its_heartbeats_repeated_for_a_bounded_time(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SYNC_COVER_ELECTION_TIMEOUTS the repeats stop, so the followers may elect a
    leader whose disk works (here the cover is one heartbeat interval)."""
    monkeypatch.setattr(runtime_module, "SYNC_ASIDE_BYTES", 0)
    interval_s = config.paxos.heartbeat_interval_ms / 1000
    cover = interval_s / (config.paxos.election_timeout_max_ms / 1000)
    monkeypatch.setattr(runtime_module, "SYNC_COVER_ELECTION_TIMEOUTS", cover)

    async def main() -> list[int]:
        runtime = await elected(config)
        try:
            held = HeldSync(runtime)
            sent = _record_repeats(runtime, monkeypatch)
            runtime.submit(_put(runtime, b"k"), lambda response: None)
            wake = asyncio.create_task(runtime._run_cycles())
            await until(held.started)
            held_from = time.monotonic()
            await until(lambda: time.monotonic() > held_from + 6 * interval_s)
            held.release_all()
            await asyncio.wait_for(wake, DEADLINE_S)
            return sent
        finally:
            runtime.disk.close()

    assert len(asyncio.run(main())) <= 2  # at most the interval or two the cover spans


def test_a_stop_during_an_aside_fsync_waits_for_it_before_closing_the_disk(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop task may be cancelled while its fsync runs on, or run on to the end of its
    wake once it ends: the database must stay open until no fsync runs (closing it under
    a running flush_wal is undefined) and the wake has ended. A wake ends after a cycle
    whose fsync ran aside (the inbox waited meanwhile), so k2 waits for a next wake, which
    a stopped node does not run."""
    monkeypatch.setattr(runtime_module, "SYNC_ASIDE_BYTES", 0)
    closed_while_syncing: list[bool] = []

    async def main(cancel_the_loop: bool) -> None:
        runtime = await elected(config)
        held = HeldSync(runtime)
        close = runtime.disk.close

        def checked_close() -> None:
            closed_while_syncing.append(held.holding() or runtime._waking)
            close()

        runtime.disk.close = checked_close  # type: ignore[method-assign]
        runtime.submit(_put(runtime, b"k1"), lambda response: None)
        wake = asyncio.create_task(runtime._run_cycles())
        await until(held.started)
        runtime.submit(_put(runtime, b"k2", request_id=2), lambda response: None)
        if cancel_the_loop:
            wake.cancel()
        stopping = asyncio.create_task(runtime.stop(grace_s=0.0))
        await until(lambda: runtime._stopped.is_set())
        held.release()
        await asyncio.wait_for(stopping, DEADLINE_S)
        assert held.calls == 1  # k2 was left for a next wake
        wake.cancel()

    asyncio.run(main(cancel_the_loop=True))
    asyncio.run(main(cancel_the_loop=False))
    assert closed_while_syncing == [False, False]


def test_a_stop_during_an_aside_fsync_lets_the_wake_end_before_closing_the_disk(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() runs while the loop task runs on (`serve` cancels it only afterwards). Once
    the fsync ends, the rest of that wake still needs the database (the apply of the slot
    chosen before, its answer), however long stop() waited on the fsync: when stop's wait
    outlived a heartbeat interval, stop() resumed first and closed the database, and the
    loop task died on DbClosedError with the chosen put unanswered (found by review)."""
    monkeypatch.setattr(runtime_module, "SYNC_ASIDE_BYTES", 0)
    # No longer what keeps the cycles in one wake: a cycle whose fsync ran aside ends its
    # wake, so k2's accept runs in the next one (`runner` starts it).
    monkeypatch.setattr(runtime_module, "WAKE_BUDGET_S", DEADLINE_S)
    interval_s = config.paxos.heartbeat_interval_ms / 1000

    async def main() -> list[kv.Response]:
        runtime = await elected(config)
        held = HeldSync(runtime)
        answers: list[kv.Response] = []
        runner = asyncio.create_task(runtime.run())
        runtime.submit(_put(runtime, b"k1"), answers.append)
        await until(held.started)  # k1's accept, held
        runtime.submit(_put(runtime, b"k2", request_id=2), answers.append)
        held.release()
        await until(lambda: held.calls == 2)  # k2's accept; k1 is chosen in this cycle
        stopping = asyncio.create_task(runtime.stop(grace_s=0.0))
        await until(runtime._stopped.is_set)
        await asyncio.sleep(3 * interval_s)  # the loop waits on the fsync anew, after stop
        held.release_all()
        await asyncio.wait_for(stopping, DEADLINE_S)
        await asyncio.wait_for(runner, DEADLINE_S)  # the loop ended cleanly
        return answers

    answers = asyncio.run(main())
    assert [a.put.error.code for a in answers if a.id == 1] == [kv.OK]


def test_stop_answers_a_put_in_flight_before_it_closes(config: ClusterConfig) -> None:
    """SIGTERM drains: `stop` waits (up to its grace) while the core has client requests, so a
    put submitted just before it is answered before the client streams are told to go."""

    async def main() -> list[int]:
        runtime = await elected(config)
        answers: list[kv.Response] = []
        answered_at_drain: list[int] = []
        drain = runtime._kv.drain

        def recorded_drain() -> None:
            answered_at_drain.append(len(answers))
            drain()

        runtime._kv.drain = recorded_drain  # type: ignore[method-assign]
        runtime.submit(_put(runtime, b"in-flight"), answers.append)
        runner = asyncio.create_task(runtime.run())
        await asyncio.wait_for(runtime.stop(grace_s=2.0), DEADLINE_S)
        await asyncio.wait_for(runner, DEADLINE_S)
        assert [a.put.error.code for a in answers] == [kv.OK], answers
        return answered_at_drain

    assert asyncio.run(main()) == [1]


def test_stop_tells_each_open_batch_stream_it_is_drained(config: ClusterConfig) -> None:
    """An open Batch stream answers what it read, then says `drained` (its client re-sends the
    rest elsewhere) before the server stops: `stop` calls the client service's drain."""

    async def main() -> list[kv.ResponseBatch]:
        runtime = await elected(config)
        forever = asyncio.Event()

        async def requests() -> AsyncIterator[kv.RequestBatch]:
            yield kv.RequestBatch(requests=[_put(runtime, b"streamed")])
            await forever.wait()  # the client keeps its stream open

        stream = runtime._kv.Batch(requests(), AbortingContext())  # type: ignore[arg-type]
        runner = asyncio.create_task(runtime.run())
        batches = [await asyncio.wait_for(stream.__anext__(), DEADLINE_S)]
        stopping = asyncio.create_task(runtime.stop(grace_s=2.0))
        with contextlib.suppress(StopAsyncIteration):
            while not batches[-1].drained:
                batches.append(await asyncio.wait_for(stream.__anext__(), DEADLINE_S))
        await asyncio.wait_for(stopping, DEADLINE_S)
        await asyncio.wait_for(runner, DEADLINE_S)
        return batches

    batches = asyncio.run(main())
    assert [r.put.error.code for b in batches for r in b.responses] == [kv.OK]
    assert batches[-1].drained, batches


def test_a_request_that_arrives_once_the_stop_began_is_refused_unavailable(
    config: ClusterConfig,
) -> None:
    """Draining refuses new requests (the client re-sends them to another replica); taken,
    they would keep the drain waiting and be cut by the close."""

    async def main() -> list[kv.Response]:
        runtime = await elected(config)
        stopping = asyncio.create_task(runtime.stop(grace_s=1.0))
        await until(lambda: runtime._draining)
        answers: list[kv.Response] = []
        runtime.submit(_put(runtime, b"late"), answers.append)
        await asyncio.wait_for(stopping, DEADLINE_S)
        return answers

    answers = asyncio.run(main())
    assert [a.put.error.code for a in answers] == [kv.UNAVAILABLE], answers
    assert "shutting down" in answers[0].put.error.message


def test_stop_is_idempotent_and_a_cancelled_caller_does_not_cut_it_short(
    config: ClusterConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A second SIGTERM, or a supervisor calling stop again, waits for the stop under way:
    the disk is closed once, and a caller given up on (cancelled) leaves the stop running."""

    async def main() -> None:
        runtime = await elected(config)
        runner = asyncio.create_task(runtime.run())
        first = asyncio.create_task(runtime.stop(grace_s=1.0))
        second = asyncio.create_task(runtime.stop(grace_s=0))
        await until(lambda: runtime._draining)
        first.cancel()
        await asyncio.wait_for(second, DEADLINE_S)
        await asyncio.wait_for(runtime.stop(), DEADLINE_S)
        await asyncio.wait_for(runner, DEADLINE_S)

    with caplog.at_level(logging.INFO, logger="paxoskv.node"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("node stopping") == 1, messages
    assert messages.count("node stopped") == 1, messages


def test_the_health_watch_outlives_a_failing_look_and_says_not_serving_meanwhile(
    config: ClusterConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch that died would leave the health service SERVING for good."""

    async def main() -> list[int]:
        runtime = await elected(config)
        statuses = runtime._health._servicer.statuses
        looks = runtime.core.groups_without_leader
        failing = True
        failures: list[int] = []

        def look() -> list[int]:
            if failing:
                failures.append(1)
                raise RuntimeError("a bug in the core")
            return looks()

        runtime.core.groups_without_leader = look  # type: ignore[method-assign]
        runner = asyncio.create_task(runtime.run())
        watch = asyncio.create_task(runtime._watch_health())
        seen = []
        await until(lambda: statuses.get(KV_SERVICE) == NOT_SERVING)
        seen.append(statuses[KV_SERVICE])
        calls = len(failures)
        await until(lambda: len(failures) >= calls + 2)  # it went on failing meanwhile
        failing = False
        await until(lambda: statuses.get(KV_SERVICE) == SERVING)
        seen.append(statuses[KV_SERVICE])
        watch.cancel()
        await asyncio.wait_for(runtime.stop(grace_s=0), DEADLINE_S)
        await asyncio.wait_for(runner, DEADLINE_S)
        return seen

    with caplog.at_level(logging.INFO, logger="paxoskv.node"):
        assert asyncio.run(main()) == [NOT_SERVING, SERVING]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("health service failed" in m for m in messages) == 1, "logged at every look"
    assert sum("health service works again" in m for m in messages) == 1


def test_a_health_watch_that_cannot_look_says_not_serving_on_a_node_hosting_no_group(
    config: ClusterConfig,
) -> None:
    """Found by review: the fallback reported every hosted group leaderless, which for a
    node hosting none said SERVING."""

    async def main() -> int:
        runtime = await elected(config)
        statuses = runtime._health._servicer.statuses
        runtime._health.observe([])  # what a look says of a node whose groups have leaders
        assert statuses[KV_SERVICE] == SERVING
        hosts = runtime.core.hosts

        def look() -> list[int]:
            raise RuntimeError("a bug in the core")

        runtime.core.groups_without_leader = look  # type: ignore[method-assign]
        runtime.core.hosts = {}
        watch = asyncio.create_task(runtime._watch_health())
        await until(lambda: statuses.get(KV_SERVICE) == NOT_SERVING)
        watch.cancel()
        runtime.core.hosts = hosts
        await asyncio.wait_for(runtime.stop(grace_s=0), DEADLINE_S)
        return statuses[KV_SERVICE]

    assert asyncio.run(main()) == NOT_SERVING


def test_a_failed_background_task_is_logged_when_it_ends(
    config: ClusterConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)

        async def broken() -> None:
            raise RuntimeError("broken duty")

        runtime._spawn(broken())
        await until(lambda: not runtime._tasks)
        runtime.core.close()
        runtime.disk.close()

    with caplog.at_level(logging.INFO, logger="paxoskv.node"):
        asyncio.run(main())
    failed = [r for r in caplog.records if r.getMessage() == "background task failed"]
    assert len(failed) == 1
    assert "broken duty" in str(failed[0].exc_info[1])
    assert failed[0].task.endswith("broken")


def test_a_node_that_leads_nothing_still_waits_out_a_campaign_before_it_stops(
    config: ClusterConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Node rule 15: a campaign out when the node retired may win; the stop waits for it
    to be handed over, also when the node led nothing at the retirement (it returned at
    once, and the group it then won waited an election timeout for a leader)."""
    outcomes = iter([[1], [1], [1], []])  # campaigning, won and handing over, handed over
    led_answers = iter([[], [1], [1]])
    looks: list[str] = []

    def handing_off() -> list[int]:
        looks.append("handing_off")
        return next(outcomes)

    def led_groups() -> list[int]:
        return next(led_answers, [])

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        runtime.core.handing_off = handing_off  # type: ignore[method-assign]
        runtime.core.led_groups = led_groups  # type: ignore[method-assign]
        await asyncio.wait_for(runtime._hand_off_leadership(), DEADLINE_S)
        runtime.core.close()
        runtime.disk.close()

    with caplog.at_level(logging.INFO, logger="paxoskv.node"):
        asyncio.run(main())
    assert len(looks) == 4, "the stop returned before the campaign's group was handed over"
    done = [r for r in caplog.records if r.getMessage() == "leadership handed off"]
    assert [(r.groups, r.kept) for r in done] == [([1], [])]
