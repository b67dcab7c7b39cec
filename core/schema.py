"""OpenAPI generation: every operation documents the contract's error responses too."""

from __future__ import annotations

from typing import Any

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
    "413": "Body over 1 MiB (`payload_too_large`).",
    "500": "Unexpected error (`server_error`); never a traceback.",
}
_BODY_ERRORS = {
    "400": "Invalid fields (`validation_error`) or malformed JSON (`malformed_json`).",
    "415": "Body is not `application/json` (`unsupported_media_type`).",
}
_AUTH_ERRORS = {"401": "Missing, malformed or expired token."}


class ApiAutoSchema(AutoSchema):
    """Adds the error shape to each operation; views may name more codes with `extend_schema`."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if getattr(self.view, "html_page", False):
            return responses  # a browser page outside /api: no JSON errors to promise
        errors = dict(_COMMON_ERRORS)
        if self.method in {"POST", "PUT", "PATCH"}:
            errors.update(_BODY_ERRORS)
        if self.view.permission_classes and not getattr(self.view, "public_endpoint", False):
            errors.update(_AUTH_ERRORS)
        if "{" in self.path:
            errors.setdefault("404", "Not found, or not yours (`not_found`).")
        for status, description in errors.items():
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    ErrorResponseSerializer, status, direction=direction
                )
                responses[status]["description"] = description
        return responses
