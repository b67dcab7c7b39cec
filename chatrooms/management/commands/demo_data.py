from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from chatrooms.models import Message
from chatrooms.services import chatroom_create

# Two chatrooms, one with a finished conversation: enough to try the list, the detail, the
# history and a new send.
CONVERSATIONS = {
    "Trip to Kyoto": [
        (
            "Plan three days in Kyoto in April.",
            "Day 1: Fushimi Inari at dawn, then Gion. Day 2: "
            "Arashiyama's bamboo grove and the monkey park. Day 3: the Philosopher's Path under "
            "the cherry blossoms, and Nishiki market for lunch.",
        ),
        ("Which day needs the earliest start?", "Day 1: Fushimi Inari is quiet only before eight."),
    ],
    "Learning Rust": [],
}


class Command(BaseCommand):
    help = "A demo user with two chatrooms and a conversation, to try the product."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--phone", default="+919800000001", help="default: %(default)s")

    def handle(self, *args: Any, **options: Any) -> None:
        phone: str = options["phone"]
        if User.objects.filter(phone=phone).exists():
            raise CommandError(f"{phone} already has an account; pick another with --phone.")
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_user(
                phone, password, name="Demo User", phone_verified_at=timezone.now()
            )
            for name, turns in CONVERSATIONS.items():
                chatroom = chatroom_create(user=user, name=name)
                for prompt, answer in turns:
                    Message.objects.create(
                        chatroom=chatroom, role=Message.Role.USER, content=prompt,
                        status=Message.Status.COMPLETED, completed_at=timezone.now(),
                    )  # fmt: skip
                    Message.objects.create(
                        chatroom=chatroom, role=Message.Role.MODEL, content=answer,
                        status=Message.Status.COMPLETED, completed_at=timezone.now(),
                        model_name="demo",
                    )  # fmt: skip
        self.stdout.write(
            f"Demo user {phone} (password {password}) with {len(CONVERSATIONS)} chatrooms.\n"
            "Log in: POST /api/auth/login with that phone and password, or send-otp and "
            "verify-otp with the phone."
        )
