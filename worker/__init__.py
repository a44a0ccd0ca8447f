"""Celery side of the training service, one sub-package per role: `state` (Redis and its codecs), `scheduling`
(admission, dispatch, liveness, leases), `coordinator` (one job's life), `fanout` and `gang` (the two execution
protocols), `celery_app` (the only importer of Celery) and `cluster` (`zdl cluster up`); settings in `settings`."""
