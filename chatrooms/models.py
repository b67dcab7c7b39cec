from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

CHATROOM_NAME_MAX_CHARS = 200
CHATROOM_SYSTEM_PROMPT_MAX_CHARS = 4000


class Chatroom(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chatrooms"
    )
    # null until the user names it or a title is generated from the first message.
    name = models.CharField(  # noqa: DJ001
        max_length=CHATROOM_NAME_MAX_CHARS, null=True, blank=True
    )
    system_prompt = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-id"], name="chatroom_user_newest")]
        ordering = ("-id",)

    def __str__(self) -> str:
        return self.name or f"Chatroom {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        MODEL = "model"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELED = "canceled"
        BLOCKED = "blocked"

    IN_FLIGHT = (Status.PENDING, Status.STREAMING)
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELED, Status.BLOCKED)

    chatroom = models.ForeignKey(Chatroom, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=8, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Set by the send service, so a prompt and its reply share one instant.
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Reply bookkeeping (role=model only).
    usage_day = models.DateField(
        null=True,
        blank=True,
        help_text="Day whose prompt count this reply used; refunded on failure.",
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    # db_default too: a web process of the previous release, still running during a deploy,
    # inserts rows without these columns.
    tokens_estimated = models.BooleanField(
        default=False,
        db_default=False,
        help_text="The token counts are our estimate, not the model's report.",
    )
    superseded = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A reply regenerated since: still readable, no longer in the model's history.",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # `attempts` never goes back (it is the fencing token); an operator's retry moves this
    # base up to it instead, so the retry limit and the backoff count from the retry.
    attempt_base = models.PositiveSmallIntegerField(
        default=0, help_text="Attempts made before the operator's last retry."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While in the future, one worker owns the generation."
    )
    model_name = models.CharField(max_length=100, blank=True, default="")
    # The table also has `search_vector`, a generated column with its GIN index (migration
    # 0006, chatrooms/search.py), left out of the model: no query but search reads it.

    class Meta:
        indexes = [
            models.Index(fields=["chatroom", "-id"], name="message_chatroom_newest"),
            models.Index(
                fields=["status", "created_at"],
                name="message_in_flight",
                condition=models.Q(status__in=["pending", "streaming"]),
            ),
        ]
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.role} message {self.pk} ({self.status})"


class IdempotencyRecord(models.Model):
    """The first answer to a send made with an `Idempotency-Key`, replayed for retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_headers = models.JSONField(default=dict)
    # The rendered bytes (as text), so a replay is byte for byte the first answer.
    response_body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_one_per_user_key"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
