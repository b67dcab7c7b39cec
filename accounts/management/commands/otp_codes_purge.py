from __future__ import annotations

import datetime as dt
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand

from accounts.maintenance import otp_codes_purge


def _positive_hours(raw: str) -> int:
    try:
        hours = int(raw)
    except ValueError:
        raise ArgumentTypeError(f"{raw!r} is not a whole number of hours") from None
    if hours < 1:
        raise ArgumentTypeError("must be at least 1: the hourly send limits need that history")
    return hours


class Command(BaseCommand):
    help = (
        "Delete one-time codes older than OTP_RETENTION_SECONDS, or --older-than-hours "
        "(what the hourly beat task does)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than-hours",
            type=_positive_hours,
            default=None,
            metavar="N",
            help="Delete codes created more than N hours ago (at least 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours: int | None = options["older_than_hours"]
        older_than = None if hours is None else dt.timedelta(hours=hours)
        deleted = otp_codes_purge(older_than=older_than)
        self.stdout.write(f"Deleted {deleted} one-time codes.")
