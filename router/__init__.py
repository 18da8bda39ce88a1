"""Shard map and routing: key ranges -> Paxos group -> replicas."""
