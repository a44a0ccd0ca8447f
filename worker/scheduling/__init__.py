"""Who runs what, when: admission (a job's cost plan), fair dispatch of queued jobs to coordinator slots, worker
liveness (heartbeats) and the coordinators' rounds, leases, turns on the block workers, and when sent work is lost."""
