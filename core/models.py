from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker (see `core.workers`)."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField(help_text="By the database clock.")

    def __str__(self) -> str:
        return self.hostname
