"""Who runs what, when: the cost plan that admits a job, fair dispatch of queued jobs to coordinator slots,
worker liveness (heartbeats) and the leases and checkpoints that let a job survive its coordinator."""
