"""The Flink job's latest completed checkpoint, from the Flink REST API.

``GET /jobs/overview`` names the jobs; for the running one (else the most recently started),
``GET /jobs/<id>/checkpoints`` has ``latest.completed.latest_ack_timestamp``: when the last
checkpoint, and with it the last Paimon commit, completed. Its age is how stale the tables are.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from streampulse.dashboard.times import iso_ms


async def _get(session: aiohttp.ClientSession, url: str, timeout_s: float) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
        response.raise_for_status()
        return await response.json(content_type=None)


def pick_job(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The running job (the newest if several), else the most recently started one."""
    if not jobs:
        return None
    running = [j for j in jobs if j.get("state") == "RUNNING"]
    return max(running or jobs, key=lambda j: int(j.get("start-time") or 0))


def checkpoint_view(job: dict[str, Any], checkpoints: dict[str, Any], now: float) -> dict[str, Any]:
    """The dashboard's checkpoint panel from the REST answers."""
    counts = checkpoints.get("counts") or {}
    latest = (checkpoints.get("latest") or {}).get("completed") or {}
    acked = latest.get("latest_ack_timestamp")
    view: dict[str, Any] = {
        "source": "flink",
        "job": job.get("name"),
        "job_id": job.get("jid"),
        "job_state": job.get("state"),
        "completed": int(counts.get("completed") or 0),
        "failed": int(counts.get("failed") or 0),
        "in_progress": int(counts.get("in_progress") or 0),
        "checkpoint_id": latest.get("id"),
        "completed_at": None,
        "age_s": None,
        "duration_ms": latest.get("end_to_end_duration"),
        "size_bytes": latest.get("checkpointed_size", latest.get("state_size")),
    }
    if acked:
        view["completed_at"] = iso_ms(int(acked))
        view["age_s"] = round(max(now - int(acked) / 1000, 0.0), 1)
    return view


async def flink_checkpoint(
    session: aiohttp.ClientSession, base_url: str, timeout_s: float, now: float
) -> dict[str, Any]:
    """The checkpoint panel; an unreachable API is reported in ``error``, not raised."""
    base = base_url.rstrip("/")
    try:
        overview = await _get(session, f"{base}/jobs/overview", timeout_s)
        job = pick_job(list(overview.get("jobs") or []))
        if job is None:
            return {"source": "flink", "error": f"no job at {base}"}
        checkpoints = await _get(session, f"{base}/jobs/{job['jid']}/checkpoints", timeout_s)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, AttributeError) as exc:
        return {"source": "flink", "error": f"{base}: {type(exc).__name__}: {exc}".rstrip(": ")}
    return checkpoint_view(job, checkpoints, now)
