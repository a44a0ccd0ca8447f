"""The service's state in Redis and its codecs: every key, the job and sweep records, the frame and checkpoint
codecs, step arrays, the registered Lua scripts, the cancel flag, metrics, and the reasons that end a job."""
