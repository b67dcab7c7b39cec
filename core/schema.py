"""OpenAPI generation: every operation documents the contract's error responses too, among
them the 503 any endpoint answers while the database is down and the 429 of the per-user
request throttle."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable snake_case identifier.")
    message = serializers.CharField(help_text="Human sentence.")
    details = serializers.DictField(
        help_text="Field errors under `fields` for `validation_error`, or numbers."
    )


class ErrorResponseSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_COMMON_ERRORS = {
    "413": f"Body over {settings.API_MAX_BODY_BYTES} bytes (`payload_too_large`).",
    "500": "Unexpected error (`server_error`); never a traceback.",
}
_BODY_ERRORS = {
    "400": "Invalid fields (`validation_error`) or malformed JSON (`malformed_json`).",
    "415": "Body is not `application/json` (`unsupported_media_type`).",
}
_AUTH_ERRORS = {"401": "Missing, malformed or expired token."}
_UNAVAILABLE = (
    "`service_unavailable`: the database did not answer within a few seconds (down or "
    "restarting). Nothing to fix on the client's side: send the request again after "
    "`Retry-After` seconds."
)
_RETRY_AFTER = {
    "schema": {"type": "integer"},
    "description": "Seconds to wait before sending the request again (`service_unavailable`).",
}
_RATE_LIMITED = (
    f"`rate_limited`: more than {settings.API_RATE_PER_MINUTE} requests from this user in this "
    "clock minute (API_RATE_PER_MINUTE, every authenticated endpoint together); send it again "
    "after `Retry-After` seconds, also in `details.retry_after`."
)
_RATE_LIMITED_RETRY_AFTER = {
    "schema": {"type": "integer"},
    "description": "Seconds to wait before sending the request again.",
}


class ApiAutoSchema(AutoSchema):
    """Adds the error shape to each operation; views may name more codes with `extend_schema`."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if getattr(self.view, "html_page", False):
            return responses  # a browser page outside /api: no JSON errors to promise
        errors = dict(_COMMON_ERRORS)
        if self.method in {"POST", "PUT", "PATCH"}:
            errors.update(_BODY_ERRORS)
        authenticated = bool(self.view.permission_classes) and not getattr(
            self.view, "public_endpoint", False
        )
        if authenticated:
            errors.update(_AUTH_ERRORS)
        # Added to what the view documents itself (a 503 billing_unavailable, a 429
        # daily_limit_exceeded), never in place of it.
        shared = {"503": _UNAVAILABLE}
        if authenticated and self.view.throttle_classes:
            shared["429"] = _RATE_LIMITED
        if "{" in self.path:
            errors.setdefault("404", "Not found, or not yours (`not_found`).")
        errors.update(shared)
        for status, description in errors.items():
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    ErrorResponseSerializer, status, direction=direction
                )
                responses[status]["description"] = description
            elif status in shared:
                responses[status]["description"] += f" Or {description}"
        responses["503"].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER
        if "429" in shared:
            responses["429"].setdefault("headers", {})["Retry-After"] = _RATE_LIMITED_RETRY_AFTER
        return responses


_REQUEST_ID_HEADER = {
    "schema": {"type": "string"},
    "description": (
        "The request's id: the client's own `X-Request-ID` when it sent 1 to 200 characters of "
        "`[A-Za-z0-9._-]`, else a new one. Every log line written for the request carries it, "
        "in the worker too for a send's reply: quote it when reporting a problem."
    ),
}


def schema_add_request_id_header(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Every response of every operation carries `X-Request-ID` (core/request_log.py)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})["X-Request-ID"] = _REQUEST_ID_HEADER
    return result
