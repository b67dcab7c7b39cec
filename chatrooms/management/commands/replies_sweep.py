from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chatrooms.tasks import replies_sweep_enqueue


class Command(BaseCommand):
    help = "Enqueue again the replies no worker is on (what the periodic beat task does)."

    def handle(self, *args: Any, **options: Any) -> None:
        reply_ids = replies_sweep_enqueue()
        self.stdout.write(f"Enqueued {len(reply_ids)} replies: {reply_ids}")
