from __future__ import annotations

from django.conf import settings
from django.db import models

# A Pro user's prompts are counted on the row of their chatroom's slot, 1 to PRO_SLOTS, in
# the send's transaction: one user's concurrent sends in different chatrooms then rarely
# wait for each other's commit on one row (README, "Design decisions").
PRO_SLOTS = 16


def pro_slot(chatroom_id: int) -> int:
    """The slot a Pro prompt sent in chatroom `chatroom_id` is counted on."""
    return 1 + chatroom_id % PRO_SLOTS


class DailyUsage(models.Model):
    """How many prompts a user sent on one day (in `USAGE_TIMEZONE`), and the tokens their
    replies cost, as the sum of the day's rows: slot 0 holds a Basic user's count (one row,
    so its lock serialises the sends that check the limit) and the tokens; slots 1 to
    PRO_SLOTS hold a Pro user's count, spread by chatroom."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage"
    )
    day = models.DateField()
    slot = models.PositiveSmallIntegerField(default=0, db_default=0)
    count = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(
        default=0,
        db_default=0,  # the counting statements insert rows without it
        help_text="Tokens in and out of the replies completed that day.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day", "slot"], name="usage_one_row_per_user_day_slot"
            ),
        ]
        ordering = ("-day",)

    def __str__(self) -> str:
        return f"{self.user_id} {self.day} #{self.slot}: {self.count}"
