"""Liveness and readiness probes.

`/readyz` is the web server's own readiness (what a load balancer or compose's healthcheck of
`web` asks); `/readyz/worker` says whether a Celery worker consumes the queue. They are apart
on purpose: without a worker the web server still serves everything but new replies, and
taking it out of rotation would turn a stalled queue into a full outage.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django_redis import get_redis_connection

from core.workers import workers_status

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _postgres_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("Readiness: PostgreSQL does not answer", exc_info=True)
        return False


def _redis_ok() -> bool:
    try:
        return bool(get_redis_connection("default").ping())
    except Exception:
        logger.warning("Readiness: Redis does not answer", exc_info=True)
        return False


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"postgres": _postgres_ok(), "redis": _redis_ok()}
    down = [name for name, ok in checks.items() if not ok]
    body = {
        "status": "ok" if not down else "unavailable",
        "checks": {name: "ok" if ok else "down" for name, ok in checks.items()},
        "down": down,
    }
    return JsonResponse(body, status=200 if not down else 503)


def readyz_worker(request: HttpRequest) -> JsonResponse:
    """200 while some worker sent a heartbeat within WORKER_HEARTBEAT_MAX_AGE_SECONDS, else 503."""
    body: dict[str, object] = {
        "workers": None,
        "last_heartbeat": None,
        "max_age_seconds": settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS,
    }
    try:
        status = workers_status()
    except Exception:
        logger.warning("Worker readiness: PostgreSQL does not answer", exc_info=True)
        down = ["postgres"]
    else:
        body["workers"] = status.alive
        body["last_heartbeat"] = status.last_seen_at.isoformat() if status.last_seen_at else None
        down = [] if status.alive else ["worker"]
    return JsonResponse(
        {"status": "ok" if not down else "unavailable", **body, "down": down},
        status=200 if not down else 503,
    )
