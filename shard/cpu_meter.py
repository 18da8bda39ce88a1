"""CPU accounting for benchmarks, from /proc (Linux): who used the machine during a run.

The benchmark machine is shared and small (2 cores here), so every figure is reported with
the CPU seconds of the client (this process), the servers under test, our idle servers,
interrupts (mostly the run's own loopback traffic, which no process is charged for) and
everything else (`other_share` of all CPU: a run with a high share was disturbed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | str) -> float:
    """User+system CPU seconds of one process (`"self"` for this one); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu_s() -> tuple[float, float]:
    """(process CPU, interrupt CPU) seconds of all cores since boot, from /proc/stat.

    Process CPU is user+nice+system; interrupt CPU is irq+softirq.
    """
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (
            int(x) for x in f.readline().split()[1:8]
        )
    return (user + nice + system) / _CLK_TCK, (irq + softirq) / _CLK_TCK


class CpuMeter:
    """CPU used between construction and `result()`.

    Args:
        servers: pids of the servers under test (their sum is `servers_s`, each one's share
            `servers_each_s`, in the order given).
        idle: pids of our own servers that are not under test in this run.
    """

    def __init__(self, servers: Sequence[int], idle: Sequence[int] = ()) -> None:
        self.servers = list(servers)
        self.idle = list(idle)
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, list[float], float]:
        procs, irqs = machine_cpu_s()
        return (
            time.monotonic(),
            procs,
            irqs,
            process_cpu_s("self"),
            [process_cpu_s(p) for p in self.servers],
            sum(process_cpu_s(p) for p in self.idle),
        )

    def result(self) -> dict[str, float | list[float]]:
        """wall_s, capacity_s (wall x cores), client_s, servers_s, servers_each_s,
        idle_servers_s, irq_s, other_s and other_share (other_s / capacity_s)."""
        t0, procs0, irq0, me0, each0, idle0 = self._start
        t1, procs1, irq1, me1, each1, idle1 = self._sample()
        each = [b - a for a, b in zip(each0, each1, strict=True)]
        client, servers, idle = me1 - me0, sum(each), idle1 - idle0
        capacity = (t1 - t0) * (os.cpu_count() or 1)
        other = max(0.0, (procs1 - procs0) - client - servers - idle)
        return {
            "wall_s": round(t1 - t0, 3),
            "capacity_s": round(capacity, 2),
            "client_s": round(client, 2),
            "servers_s": round(servers, 2),
            "servers_each_s": [round(s, 3) for s in each],
            "idle_servers_s": round(idle, 2),
            "irq_s": round(irq1 - irq0, 2),
            "other_s": round(other, 2),
            "other_share": round(other / capacity, 3) if capacity > 0 else 0.0,
        }
