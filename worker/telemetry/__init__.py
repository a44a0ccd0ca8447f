"""What every process says about itself: structured JSON log lines (time, level, role, request, job, key,
worker) to stderr and to rotating files, the bottom layer that every other part may use."""
