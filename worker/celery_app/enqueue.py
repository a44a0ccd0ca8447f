"""How a job reaches a coordinator: `JobQueue.enqueue` is the one way a job's id is sent to the coordinator
queue, and `JobQueue.dispatch` sends queued jobs through it while coordinator slots are free (the
scheduler, `worker.scheduling.scheduler`, decides which). The API, the tasks and the workers' rounds all
hold a JobQueue; none sends a job any other way."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from worker.celery_app.names import RUN_JOB
from worker.scheduling import scheduler
from worker.settings import Settings


@dataclass(frozen=True)
class JobQueue:
    """The coordinator queue of `settings`, reached through the Celery app `app`."""

    app: Celery
    settings: Settings

    def enqueue(self, job_id: str) -> None:
        """Send the job to a coordinator now (its lease keeps a duplicate from running it twice)."""
        self.app.send_task(RUN_JOB, args=[job_id], queue=self.settings.coordinator_queue)

    def dispatch(self, client: redis.Redis) -> list[str]:
        """Start queued jobs in free coordinator slots, API keys in turn; returns the ids sent."""
        return scheduler.dispatch(client, self.settings, self.enqueue)
