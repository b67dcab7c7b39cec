"""Tasks carry the id of the request that queued them, and write one line when they end.

A task published while a request is served (a send queueing its reply) gets the request's
id in its message headers; the worker sets it for the task's run, so every line the reply
writes there carries it, and the task's own line too. A retry queued from inside the task
carries it on. Tasks queued by beat have none.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from core.request_context import request_id_var

REQUEST_ID_MESSAGE_HEADER = "request_id"

logger = structlog.stdlib.get_logger("gemini_clone.task")


@before_task_publish.connect
def _request_id_into_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_var.get()
    if request_id is not None and headers is not None:
        headers[REQUEST_ID_MESSAGE_HEADER] = request_id


@task_prerun.connect
def _task_started(task: Task | None = None, **_: Any) -> None:
    if task is None:
        return
    # Custom message headers become attributes of the task's request.
    request_id = getattr(task.request, REQUEST_ID_MESSAGE_HEADER, None)
    task.request.started_at = time.perf_counter()
    task.request.request_id_token = request_id_var.set(
        request_id if isinstance(request_id, str) else None
    )


@task_postrun.connect
def _task_ended(
    task: Task | None = None, task_id: str | None = None, state: str | None = None, **_: Any
) -> None:
    if task is None:
        return
    started_at = getattr(task.request, "started_at", None)
    logger.info(
        "task",
        task=task.name,
        task_id=task_id,
        state=state,
        duration_ms=round((time.perf_counter() - started_at) * 1000, 1) if started_at else None,
    )
    token = getattr(task.request, "request_id_token", None)
    if token is not None:
        request_id_var.reset(token)
