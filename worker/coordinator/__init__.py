"""One job's life on a coordinator worker: take its lease, run it (fan-out or gang), report its progress,
finish it."""
