"""The service's state in Redis and its codecs: every key, the job and sweep records, metrics, step
arrays, replies typed at the edge, and the exceptions and public reasons that end a job."""
