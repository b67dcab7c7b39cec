from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from chatrooms.replies import replies_stuck
from chatrooms.tasks import replies_sweep_enqueue


class Command(BaseCommand):
    help = (
        "Enqueue again the stuck replies: `streaming` ones whose worker's lease ran out, and "
        "`pending` ones untouched for --older-than seconds. --dry-run lists them only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.AI_PENDING_SWEEP_AGE_SECONDS,
            metavar="SECONDS",
            help="a pending reply counts as stuck after this long (default: "
            "AI_PENDING_SWEEP_AGE_SECONDS, %(default)s)",
        )
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        older_than: int = options["older_than"]
        if options["dry_run"]:
            stuck = replies_stuck(older_than_seconds=older_than)
            now = timezone.now()
            for reply in stuck:
                idle = int((now - reply.updated_at).total_seconds())
                self.stdout.write(
                    f"reply {reply.pk} in chatroom {reply.chatroom_id}: {reply.status}, "
                    f"idle {idle} s, attempts {reply.attempts}"
                )
            self.stdout.write(f"{len(stuck)} stuck replies (dry run: nothing enqueued)")
            return
        reply_ids = replies_sweep_enqueue(older_than_seconds=older_than)
        self.stdout.write(f"Enqueued {len(reply_ids)} replies: {reply_ids}")
