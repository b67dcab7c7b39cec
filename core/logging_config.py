"""How log lines look: for a console (the default, `./run.sh`) or one JSON object per line
(`LOG_FORMAT=json`, the Docker image's default), the same fields either way.

Every line goes through the standard library's logging (ours, Django's, Celery's); structlog
only renders it, so the code logs with `logging.getLogger` or with structlog's stdlib
logger and keyword fields alike. Each line gets the id of the request or task it was written
for (`core.request_context`).
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from django.core.exceptions import ImproperlyConfigured
from structlog.typing import EventDict, WrappedLogger

from core.request_context import request_id_var

LOG_FORMATS = ("console", "json")
_SAFE_EXTRA_FIELDS = ("status_code",)


def add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


_SHARED_PROCESSORS: list[Any] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_request_id,
]


def _renderer(log_format: str) -> Any:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    # Plain tracebacks: with `rich` installed, the default would print every frame's local
    # variables, a password or a code among them.
    return structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def logging_settings(*, log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for this format and root level; configures structlog to match."""
    if log_format not in LOG_FORMATS:
        choices = ", ".join(LOG_FORMATS)
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {choices}, not {log_format!r}")
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        final.append(structlog.processors.format_exc_info)
    final.append(_renderer(log_format))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": final,
                # Lines from logging.getLogger: of their `extra` fields, only those known to
                # hold no client data are kept (Django's `request` would bring the query
                # string, Celery's `data` a task's arguments).
                "foreign_pre_chain": [
                    *_SHARED_PROCESSORS,
                    structlog.stdlib.ExtraAdder(allow=_SAFE_EXTRA_FIELDS),
                ],
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own console handler (DEBUG only) would print every line a second time.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.db.backends": {"level": "INFO"},
            # Our request line (core.request_log) replaces Django's per-request warnings.
            "django.request": {"level": "ERROR"},
            "httpx": {"level": "WARNING"},
            "stripe": {"level": "WARNING"},  # one INFO line per API call
            "httpx2": {"level": "WARNING"},  # google-genai's HTTP client: one INFO line per call
        },
    }
