"""Celery side of the training service: settings, Redis store, the coordinator and the block loops."""
