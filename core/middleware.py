"""Guarantees for every `/api` path: bodies over 1 MiB are refused first, and no error is HTML
(a database that does not answer is a 503, whichever view met it)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import (
    ImproperlyConfigured,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import LazyObject, empty
from django.utils.module_loading import import_string

from core.errors import api_error_of, error_body, suspicious_operation_log
from core.request_context import UNMATCHED_URL_NAME, request_facts_var

logger = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
    503: "service_unavailable",
}


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/") or request.path_info == "/api"


def json_error(status: int, code: str | None = None, message: str | None = None) -> JsonResponse:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return JsonResponse(
        error_body(code or _CODES_BY_STATUS.get(status, "error"), message or f"{phrase}."),
        status=status,
    )


class ApiBodySizeLimitMiddleware(MiddlewareMixin):
    """Refuses a body over `API_MAX_BODY_BYTES` before any other work is done."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if not is_api_path(request):
            return None
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return json_error(400, "bad_request", "Content-Length is not a number.")
        if length > settings.API_MAX_BODY_BYTES:
            return json_error(413, "payload_too_large", "The request body is larger than 1 MiB.")
        return None


class ApiExceptionMiddleware(MiddlewareMixin):
    """Last line of defence: an error from outside DRF still leaves as the contract's JSON."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request):
            return None
        api_error = api_error_of(exception)
        if api_error is not None:
            response = JsonResponse(
                error_body(api_error.code, api_error.message, api_error.details),
                status=api_error.status_code,
            )
            for header, value in api_error.headers.items():
                response[header] = value
            return response
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "payload_too_large", "The request body is larger than 1 MiB.")
        if isinstance(exception, SuspiciousOperation):
            # A request Django refuses to read (too many query fields, say): the client's
            # doing, a 400 as Django answers it, logged where Django logs it.
            suspicious_operation_log(exception)
            return json_error(400, "bad_request", "The request could not be read.")
        logger.exception("Unhandled exception on %s %s", request.method, request.path_info)
        return json_error(500, "server_error", "An unexpected error occurred.")

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not is_api_path(request) or response.status_code < 400:
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith("application/json") and _is_error_shape(response):
            return response
        replacement = json_error(response.status_code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replacement[header] = response[header]
        return replacement


def _is_error_shape(response: HttpResponse) -> bool:
    if getattr(response, "streaming", False):
        return False
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


class SiteOnlyMiddleware:
    """Runs `settings.SITE_MIDDLEWARE` (sessions, login, messages) for every path outside
    /api, and skips it for the API.

    The API authenticates with bearer tokens and uses none of these; on a cached chatroom
    list they were a tenth of the request's CPU. The admin and the site's pages keep them,
    in their order. None of them has a view hook; CSRF, which has one, stays in MIDDLEWARE.
    Async-capable like the rest of the chain: one sync-only layer would make Django run the
    async stream view's whole chain on a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)
        handler: Callable[[HttpRequest], Any] = get_response
        for path in reversed(settings.SITE_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if any(hasattr(middleware, hook) for hook in _HOOKS):
                raise ImproperlyConfigured(f"{path} has hooks SiteOnlyMiddleware does not run.")
            handler = convert_exception_to_response(middleware)
        self._site: Callable[[HttpRequest], Any] = handler

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if is_api_path(request):
            return self.get_response(request)
        return self._site(request)


_HOOKS = ("process_view", "process_exception", "process_template_response")


class RequestFactsMiddleware:
    """Tells the request's log line (`core.request_log`) the route that served it and the
    user it was for. Async-capable, and never a thread hop: it only reads the request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self._async:
            return self._acall(request)
        response = self.get_response(request)
        _note_request_facts(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        _note_request_facts(request)
        return response


def _note_request_facts(request: HttpRequest) -> None:
    facts = request_facts_var.get()
    if facts is None:
        return
    match = request.resolver_match
    if match is not None and match.url_name != UNMATCHED_URL_NAME:
        facts.route = match.route
        facts.path_is_ids_only = not match.args and all(
            isinstance(value, int) for value in match.kwargs.values()
        )
    # Set by DRF's authentication, or by a view; a session's lazy user is read only if
    # something evaluated it already (reading it would cost a query).
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject) and user._wrapped is empty:
        return
    facts.user_id = getattr(user, "pk", None)
