"""Liveness and readiness probes.

`/readyz` is the web server's own readiness (what a load balancer or compose's healthcheck of
`web` asks); `/readyz/worker` says whether a Celery worker consumes the queue. They are apart
on purpose: without a worker the web server still serves everything but new replies, and
taking it out of rotation would turn a stalled queue into a full outage.

`/readyz` answers within 2 seconds whatever is down: PostgreSQL and Redis are checked at
the same time, each with a timeout of its own, and a check that has not answered by the
deadline counts as down. (Their threads are few and reused: a check that hangs on a
silent network holds one until its socket gives up, and the next probes count it down.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django_redis import get_redis_connection

from core.workers import workers_status

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # each check's own timeout, and the deadline of them all

_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _postgres_ok() -> bool:
    # A connection from the pool, as requests get them (checked, or a new one), but waiting
    # CHECK_SECONDS at most instead of DB_CONNECT_TIMEOUT_SECONDS.
    pool = connection.pool  # type: ignore[attr-defined]  # PostgreSQL's, not in the stubs
    pool.open()
    with pool.connection(timeout=CHECK_SECONDS) as conn:
        conn.execute("SELECT 1")
    return True


def _redis_ok() -> bool:
    return bool(get_redis_connection("default").ping())


def _outcome(name: str, future: asyncio.Future[bool]) -> bool:
    if not future.done():
        logger.warning("Readiness: %s did not answer within %s s", name, CHECK_SECONDS)
        return False
    if future.exception() is not None:
        logger.warning("Readiness: %s does not answer: %s", name, future.exception())
        return False
    return future.result()


async def readyz(request: HttpRequest) -> JsonResponse:
    # Async, so the probe is served on the event loop (gemini_clone/asgi.py) and never
    # queues behind API requests that hold every WSGI thread, waiting on a dead database.
    checks: dict[str, Callable[[], bool]] = {"postgres": _postgres_ok, "redis": _redis_ok}
    futures = {name: asyncio.wrap_future(_checks.submit(check)) for name, check in checks.items()}
    await asyncio.wait(futures.values(), timeout=CHECK_SECONDS)
    results = {name: _outcome(name, future) for name, future in futures.items()}
    down = [name for name, ok in results.items() if not ok]
    body = {
        "status": "ok" if not down else "unavailable",
        "checks": {name: "ok" if ok else "down" for name, ok in results.items()},
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
