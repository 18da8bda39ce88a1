"""A node's Prometheus metrics: what it counts and times, and what it shows when scraped.

Counted and timed by the shell as things happen (`NodeMetrics.observe_*`): every client
request by operation and answer code, with its time from arrival to answer; every synced
group-commit write of the Paxos state (its fsync included, as etcd's
`etcd_disk_wal_fsync_duration_seconds`); how long each wake of the loop held it; leader
changes each group's replica here saw. Read when scraped (`_StatusCollector`): each group's
role, leader, chosen and applied index (what `paxoskv status` shows, from the same
`StatusResponse`), the client memory, the peers refusing this node, the shard map version,
and the process's CPU, memory and file descriptors. Served by `shard.metrics_server`.

Labels are bounded: operations and codes are the protocol's enums, groups are the groups
this node hosts; no key or client ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router import kv_pb2 as kv

#: Latency buckets (seconds) from 0.25 ms to 8 s, doubling: a put takes 1-2 ms here, and an
#: fsync 0.05-0.3 ms; etcd's histograms double from 1 ms.
LATENCY_BUCKETS = tuple(0.00025 * 2**i for i in range(16))


_CODE_NAMES = {number: name for name, number in kv.ErrorCode.items()}


def response_code(response: kv.Response) -> str:
    """The answer's error code name (OK when it succeeded; a number a newer node sent as
    it is)."""
    body = response.WhichOneof("result")
    if body is None:
        return "OK"
    code = response.error.code if body == "error" else getattr(response, body).error.code
    return _CODE_NAMES.get(code) or str(code)


class _StatusCollector(Collector):
    """Gauges read from the node's status when scraped (on the loop's thread)."""

    def __init__(
        self,
        status: Callable[[], kv.StatusResponse],
        groups_without_leader: Callable[[], list[int]],
    ) -> None:
        self._status = status
        self._groups_without_leader = groups_without_leader

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        # As the health service judges it (a live leader heard within the election
        # timeout), not by the leader last named, which a replica cut off keeps (found by
        # review: 1 on a node whose peers were all stopped).
        leaderless = set(self._groups_without_leader())
        info = GaugeMetricFamily(
            "paxoskv_node_info",
            "This node: its name, id, cluster and software version (always 1).",
            labels=["node", "node_id", "cluster_id", "version"],
        )
        info.add_metric(
            [status.node_name, str(status.node_id), status.cluster_id, status.software_version],
            1,
        )
        yield info
        yield GaugeMetricFamily(
            "paxoskv_shard_map_version",
            "The shard map version this node holds.",
            value=status.map_version,
        )
        leader = GaugeMetricFamily(
            "paxoskv_group_is_leader",
            "1 while this node's replica leads the group.",
            labels=["group"],
        )
        has_leader = GaugeMetricFamily(
            "paxoskv_group_has_leader",
            "1 while this node's replica hears a live leader of the group (one a quorum "
            "acknowledged, or heard within the election timeout); 0 during an election or "
            "when cut off from the others.",
            labels=["group"],
        )
        chosen = GaugeMetricFamily(
            "paxoskv_group_chosen_index",
            "The highest log slot this replica knows chosen, with every slot below it.",
            labels=["group"],
        )
        applied = GaugeMetricFamily(
            "paxoskv_group_applied_index",
            "The highest log slot this replica has applied.",
            labels=["group"],
        )
        for group in status.groups:
            label = [str(group.group_id)]
            leader.add_metric(label, 1 if group.leader_id == status.node_id else 0)
            has_leader.add_metric(label, 0 if group.group_id in leaderless else 1)
            chosen.add_metric(label, group.chosen_index)
            applied.add_metric(label, group.applied_index)
        yield from (leader, has_leader, chosen, applied)
        yield GaugeMetricFamily(
            "paxoskv_client_bytes_held",
            "Bytes the node's client streams and calls hold now (requests and answers).",
            value=status.client_bytes_held,
        )
        yield GaugeMetricFamily(
            "paxoskv_client_bytes_limit",
            "The budget those bytes share; past it, answers are shed.",
            value=status.client_bytes_limit,
        )
        yield CounterMetricFamily(
            "paxoskv_answers_shed",
            "Requests and answers shed (answered UNAVAILABLE, which clients retry) for "
            "want of client memory, since the node started.",
            value=status.answers_shed,
        )
        yield GaugeMetricFamily(
            "paxoskv_peers_refusing",
            "Peers refusing this node's peer stream (another peer secret or shard map, data "
            "lost, another version): refused by a majority, it takes no part in consensus.",
            value=len(status.refused_by),
        )


class NodeMetrics:
    """A node's metrics in a registry of their own (one per node, also in one process)."""

    def __init__(
        self,
        status: Callable[[], kv.StatusResponse],
        groups_without_leader: Callable[[], list[int]],
    ) -> None:
        # Not auto_describe: it would read the status at registration, before the node runs.
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "paxoskv_requests",
            "Client requests the node answered, by operation and the answer code it gave "
            "(a read answer shed afterwards for want of client memory counts with its code "
            "and in paxoskv_answers_shed_total; requests the server refused before taking "
            "them, past its memory or outstanding-request bounds, are not counted).",
            ["op", "code"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "paxoskv_request_duration_seconds",
            "Time from a client request's submission to the node's core to its answer, by "
            "operation (a stream's queueing before it, for its kind's slots or client "
            "memory, not included).",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._persist_seconds = Histogram(
            "paxoskv_disk_persist_duration_seconds",
            "Time of each synced write of the Paxos state (one per loop cycle for every "
            "group: group commit), its fsync included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._wake_seconds = Histogram(
            "paxoskv_loop_busy_duration_seconds",
            "Time each wake of the node's loop held it (its cycles: persist, apply, answer; "
            "fsyncs run aside not counted). Long ones delay heartbeats.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._leader_changes = Counter(
            "paxoskv_group_leader_changes_seen",
            "Times this node's replica of the group learned of a leader: at its start, "
            "then after each election (etcd's leader_changes_seen_total).",
            ["group"],
            registry=self.registry,
        )
        self._request_counts: dict[tuple[str, str], Counter] = {}
        self._request_timers: dict[str, Histogram] = {}
        self.registry.register(_StatusCollector(status, groups_without_leader))
        ProcessCollector(registry=self.registry)

    def observe_request(self, op: str, response: kv.Response, seconds: float) -> None:
        """A client request of operation `op` answered with `response` after `seconds`."""
        # The labelled children, looked up once each: `labels()` costs microseconds, and
        # this runs for every request a node answers.
        code = response_code(response)
        counter = self._request_counts.get((op, code))
        if counter is None:
            counter = self._request_counts[(op, code)] = self._requests.labels(op, code)
        counter.inc()
        timer = self._request_timers.get(op)
        if timer is None:
            timer = self._request_timers[op] = self._request_seconds.labels(op)
        timer.observe(seconds)

    def observe_persist(self, seconds: float) -> None:
        self._persist_seconds.observe(seconds)

    def observe_wake(self, seconds: float) -> None:
        self._wake_seconds.observe(seconds)

    def count_leader_change(self, group_id: int) -> None:
        self._leader_changes.labels(str(group_id)).inc()
