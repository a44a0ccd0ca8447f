"""A key's limits checked against what it has: jobs queued or running, jobs and bytes stored, CPU used.

Each refusal is a QuotaExceeded whose message names the limit and where it comes from (the setting, or
the key's own limit, worker/state/apikeys.py), so that a student knows what to do and an operator what to change.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.settings import Settings


class QuotaExceeded(Exception):
    """The owner has reached one of its limits (active jobs, stored jobs, stored bytes, CPU): a 429 that says which."""


def _source(limit: float, default: float, env: str) -> str:
    """Where a limit comes from, for a 429's message: the setting, or the key's own."""
    return f"{env}={limit:g}" if limit == default else f"this key's own limit of {limit:g}"


def check_core_hours(used_s: float, limit_h: float) -> None:
    """Raise QuotaExceeded once the key has used its core-hours (0: no limit)."""
    if limit_h > 0 and used_s >= 3600 * limit_h:
        raise QuotaExceeded(f"this API key has used {used_s / 3600:.2f} core-hours of CPU, its limit of {limit_h:g} "
                            "(ZDL_MAX_CORE_HOURS_PER_KEY or the key's own); ask the service's admin for more")


def check_quotas(s: Settings, active: int, stored: int, used_bytes: int, more_bytes: int, limits: Mapping[str, float],
                 count: int = 1) -> None:
    """Raise QuotaExceeded if `count` more jobs (needing `more_bytes`) break one of the owner's `limits`."""
    these, whose = ("this job", "this job's") if count == 1 else (f"these {count} jobs", f"these {count} jobs'")
    max_active, max_stored, max_mb = int(limits["active_jobs"]), int(limits["stored_jobs"]), limits["stored_mb"]
    if active + count > max_active:
        raise QuotaExceeded(f"this API key already has {active} jobs queued or running, "
                            + ("the limit" if count == 1 else f"and {these} would exceed the limit")
                            + f" ({_source(max_active, s.max_active_jobs_per_key, 'ZDL_MAX_ACTIVE_JOBS_PER_KEY')}); "
                              "wait for one to finish or cancel one")
    free = "delete finished jobs you no longer need (DELETE /v1/jobs/{id})" + (
        f" or wait for them to expire ({s.job_ttl_days:g} days after they end, ZDL_JOB_TTL_DAYS)"
        if s.job_ttl_days else "")
    if stored + count > max_stored:
        raise QuotaExceeded(f"this API key stores {stored} jobs"
                            + (", its quota" if count == 1 else f", and {these} would exceed its quota")
                            + f" ({_source(max_stored, s.max_stored_jobs_per_key, 'ZDL_MAX_STORED_JOBS_PER_KEY')})"
                              f"; {free}")
    if used_bytes + more_bytes > int(max_mb * 2**20):
        mb_from = "ZDL_MAX_STORED_MB_PER_KEY" if max_mb == s.max_stored_mb_per_key else "this key's own limit"
        raise QuotaExceeded(f"{whose} results need {more_bytes / 2**20:.1f} MiB"
                            + f", and this API key's stored jobs already take {used_bytes / 2**20:.1f} of its "
                              f"{max_mb:g} MiB ({mb_from}); {free}")
