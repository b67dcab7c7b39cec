"""Serializer fields that accept only JSON strings (DRF's CharField turns `123` into `"123"`)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictStringMixin:
    """Refuses anything but a `str` before the field's own parsing runs."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictStringMixin, serializers.CharField):
    """A CharField for which numbers, booleans, lists and objects are a validation error."""


class StrictEmailField(StrictStringMixin, serializers.EmailField):
    """An EmailField with the same refusal of non-strings."""
