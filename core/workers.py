"""Which Celery workers are alive.

A running worker records a heartbeat every WORKER_HEARTBEAT_INTERVAL_SECONDS while it consumes
tasks (`gemini_clone.worker_heartbeat`); one silent for WORKER_HEARTBEAT_MAX_AGE_SECONDS is
gone. `/readyz/worker`, `manage.py worker_heartbeat_check` and the send path read them. Times
come from the database clock, the one every worker and web process shares.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Now

from core.models import WorkerHeartbeat

_TABLE = WorkerHeartbeat._meta.db_table
# Heartbeats of workers gone this long are deleted with the next clean stop of any worker.
_FORGOTTEN_AFTER = dt.timedelta(days=7)

_RECORD_SQL = f"""
    INSERT INTO {_TABLE} (hostname, seen_at) VALUES (%(hostname)s, now())
    ON CONFLICT (hostname) DO UPDATE SET seen_at = now()
"""  # noqa: S608 (the table name is ours, the value a parameter)


@dataclass(frozen=True)
class WorkersStatus:
    alive: int
    last_seen_at: dt.datetime | None


def worker_heartbeat_record(*, hostname: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, {"hostname": hostname})


def worker_heartbeat_forget(*, hostname: str) -> None:
    """A worker that stops cleanly is gone at once (and long-dead ones are forgotten)."""
    WorkerHeartbeat.objects.filter(
        Q(hostname=hostname) | Q(seen_at__lt=Now() - _FORGOTTEN_AFTER)
    ).delete()


def _alive_since() -> Any:
    return Now() - dt.timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS)


def workers_live() -> QuerySet[WorkerHeartbeat]:
    """The heartbeats of the workers alive now (an `Exists` of it goes into other queries)."""
    return WorkerHeartbeat.objects.filter(seen_at__gt=_alive_since())


def workers_status() -> WorkersStatus:
    """How many workers are alive, and when any worker was last heard of. One query."""
    row = WorkerHeartbeat.objects.aggregate(
        alive=Count("pk", filter=Q(seen_at__gt=_alive_since())), last_seen_at=Max("seen_at")
    )
    return WorkersStatus(alive=row["alive"], last_seen_at=row["last_seen_at"])


def worker_heartbeat_is_fresh(*, hostname: str) -> bool:
    return workers_live().filter(hostname=hostname).exists()
