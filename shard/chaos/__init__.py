"""Jepsen-style chaos runs against real node processes: `paxoskv chaos`.

- `history`: the operation history (Jepsen conventions) recorded as JSON lines;
- `workloads`: register (single-key read/write/cas), bank (cross-shard transfers and
  snapshot reads), list-append (transactions of appends and reads);
- `linearizability`, `bank_checker`, `elle`: the checkers;
- `nemesis`: faults (kill, pause, partition, restart-all, mix) on a seeded schedule;
- `netns`: real network partitions with Linux network namespaces;
- `runner`: one run end to end; `report`: report.json and the summary; `cli`: the command.
"""
