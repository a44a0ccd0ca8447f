"""One router per resource: jobs, health, metrics."""
