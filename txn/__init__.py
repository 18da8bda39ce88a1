"""Cross-shard transactions: hybrid logical clock, 2PC over Paxos groups, the client."""
