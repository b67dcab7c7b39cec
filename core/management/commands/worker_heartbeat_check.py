"""Exit 0 while a worker sends heartbeats, else 1: the healthcheck of a worker container.

python manage.py worker_heartbeat_check                       # celery@<this host>
python manage.py worker_heartbeat_check --hostname w1@host
"""

from __future__ import annotations

import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.workers import worker_heartbeat_is_fresh


class Command(BaseCommand):
    help = "Fail unless the worker named --hostname sent a heartbeat recently."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hostname",
            default=f"celery@{socket.gethostname()}",
            help="The worker's node name (Celery's default: celery@<this host>).",
        )

    def handle(self, *args: Any, hostname: str, **options: Any) -> None:
        if not worker_heartbeat_is_fresh(hostname=hostname):
            raise CommandError(
                f"No heartbeat from {hostname} in the last "
                f"{settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS} s."
            )
        self.stdout.write(f"{hostname} is alive.")
