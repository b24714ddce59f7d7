"""Queued training jobs: tasks, their attempts and leases, the queue agents lease from,
and the reaper that requeues what a lost agent held (docs/agents.md, "Queue and leases")."""
