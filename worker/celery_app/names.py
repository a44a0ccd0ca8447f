"""The Celery task names: the only thing a message names besides its arguments (ids and keys, never arrays)."""

RUN_JOB = "zdl.run_job"
SERVE_BLOCKS = "zdl.serve_blocks"
SERVE_REPLICA = "zdl.serve_replica"
