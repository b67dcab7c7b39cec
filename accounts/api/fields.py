"""Serializer fields of the account endpoints."""

from __future__ import annotations

from typing import Any

import phonenumbers
from django.conf import settings

from core.fields import StrictCharField


class PhoneField(StrictCharField):
    """A phone number in any common format, returned as its E.164 string.

    Numbers without a leading `+` (or an international prefix) are read in
    `PHONENUMBER_DEFAULT_REGION`, which `DEFAULT_PHONE_REGION` sets.
    """

    default_error_messages = {"invalid_phone": "Enter a valid phone number."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("help_text", "Any common format; answered in E.164 (`+919876543210`).")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        raw = super().to_internal_value(data)
        try:
            number = phonenumbers.parse(raw, settings.PHONENUMBER_DEFAULT_REGION)
        except phonenumbers.NumberParseException:
            self.fail("invalid_phone")
        if not phonenumbers.is_valid_number(number):
            self.fail("invalid_phone")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
