"""The Celery wiring: the app and its configuration, task names and the tasks themselves (thin wrappers).
The only package that imports Celery."""
