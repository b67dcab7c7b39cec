"""The one error type of the API: a stable `code`, an HTTP status and a human message."""

from __future__ import annotations

import logging
from typing import Any

from django.db import OperationalError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client is meant to see, rendered as `{"error": {code, message, details}}`."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = headers or {}
        super().__init__(self.message)


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"
    message = "The service is unavailable."


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL did not answer: down, restarting, or no connection within
    DB_CONNECT_TIMEOUT_SECONDS. The request can be sent again (a send with the same
    Idempotency-Key is counted once)."""

    message = "The database is unavailable; try again in a few seconds."
    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__(
            details={"retry_after": self.retry_after_seconds},
            headers={"Retry-After": str(self.retry_after_seconds)},
        )


class RateLimited(ApiError):
    """More requests than API_RATE_PER_MINUTE from one user within a minute (core.throttling)."""

    status_code = 429
    code = "rate_limited"
    message = "Too many requests; send this one again after Retry-After seconds."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(
            details={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


def api_error_of(exc: Exception) -> ApiError | None:
    """The ApiError that an exception stands for, if any: ours, or a database that did not
    answer (logged here, as a warning: an outage is not a bug)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, OperationalError):
        # Connection refused, cut off, or none free in time. (Deadlocks and serialization
        # failures are OperationalErrors too: also worth sending again.)
        logger.warning("PostgreSQL unavailable: %s", exc)
        return DatabaseUnavailable()
    return None


def suspicious_operation_log(exc: Exception) -> None:
    """Log a request Django refused to read where Django logs it (`django.security.<kind>`,
    which operators may watch), as a warning."""
    logging.getLogger(f"django.security.{type(exc).__name__}").warning("%s", exc)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}
