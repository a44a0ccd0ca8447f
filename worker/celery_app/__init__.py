"""The Celery wiring: the app and its configuration, task names, the tasks themselves (thin wrappers), the
heartbeat bootstep and `JobQueue`, the one way a job is sent to a coordinator. The only package that imports Celery."""
