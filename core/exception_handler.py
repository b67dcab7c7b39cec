"""Turns every exception raised in a DRF view into the contract's error JSON."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from core.errors import RateLimited, api_error_of, error_body, suspicious_operation_log

logger = logging.getLogger(__name__)

_CODES_BY_TYPE: list[tuple[type[Exception], int, str]] = [
    (drf.UnsupportedMediaType, 415, "unsupported_media_type"),
    (drf.ParseError, 400, "malformed_json"),
    (drf.NotAuthenticated, 401, "not_authenticated"),
    (InvalidToken, 401, "token_invalid"),
    (TokenError, 401, "token_invalid"),
    (drf.AuthenticationFailed, 401, "authentication_failed"),
    (drf.PermissionDenied, 403, "permission_denied"),
    (drf.NotFound, 404, "not_found"),
    (drf.MethodNotAllowed, 405, "method_not_allowed"),
    (drf.NotAcceptable, 406, "not_acceptable"),
]


def _flatten(detail: Any) -> Any:
    """DRF's ErrorDetail lists → plain strings, keeping the nesting of field errors."""
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _message(exc: Exception) -> str:
    """A readable sentence from DRF's detail, which may be a dict (simplejwt) or a list."""
    if not isinstance(exc, drf.APIException):
        return str(exc)
    detail: Any = exc.detail
    if isinstance(detail, dict):
        detail = detail.get("detail", next(iter(detail.values()), ""))
    if isinstance(detail, list):
        detail = detail[0] if detail else ""
    return str(detail)


def render_exception(exc: Exception) -> Response:
    if isinstance(exc, drf.Throttled):
        wait = getattr(exc, "wait", None)
        exc = RateLimited(retry_after=math.ceil(wait) if wait is not None else 60)
    api_error = api_error_of(exc)
    if api_error is not None:
        return Response(
            error_body(api_error.code, api_error.message, api_error.details),
            status=api_error.status_code,
            headers=api_error.headers,
        )
    if isinstance(exc, drf.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields if isinstance(fields, list) else [fields]}
        return Response(
            error_body("validation_error", "The request has invalid fields.", {"fields": fields}),
            status=400,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is larger than 1 MiB."), status=413
        )
    if isinstance(exc, SuspiciousOperation):
        # A request Django refuses to read (more query fields than it parses, say): the
        # client's doing, a 400 as Django itself answers it.
        suspicious_operation_log(exc)
        return Response(error_body("bad_request", "The request could not be read."), status=400)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_denied", "Permission denied."), status=403)
    for exc_type, status, code in _CODES_BY_TYPE:
        if isinstance(exc, exc_type):
            message = _message(exc)
            if isinstance(exc, TokenError | InvalidToken):
                message = "The token is invalid or expired."
            headers = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="api"'
            return Response(error_body(code, message), status=status, headers=headers)
    if isinstance(exc, drf.APIException):
        return Response(error_body(str(exc.default_code), str(exc.detail)), status=exc.status_code)
    logger.exception("Unhandled exception in an API view")
    return Response(error_body("server_error", "An unexpected error occurred."), status=500)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    return render_exception(exc)
