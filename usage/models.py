from __future__ import annotations

from django.conf import settings
from django.db import models


class DailyUsage(models.Model):
    """How many prompts a user sent on one day (in `USAGE_TIMEZONE`), and the tokens their
    replies cost."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage"
    )
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(
        default=0,
        db_default=0,  # the counting statements insert rows without it
        help_text="Tokens in and out of the replies completed that day.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="usage_one_row_per_user_day"),
        ]
        ordering = ("-day",)

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}: {self.count}"
