"""The worker's CPU per reply, in-process: replies generated one after the other by
`chatrooms.replies.reply_attempt` against the fake Gemini answering at once (in a process of
its own, so its work is not counted).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/reply_cpu.py

The database of DATABASE_URL is migrated first and gets one user and chatroom of its own;
REDIS_URL should name a scratch Redis database. Prints the CPU time of this process (every
thread counted) and the wall time per reply for each round, then the median round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replies", type=int, default=200, help="replies per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    fake = subprocess.Popen(
        [sys.executable, "-m", "testing.fake_gemini", "--port", "0", "--print-url"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        os.environ.update(
            GEMINI_API_KEY="fake-gemini-key",
            GEMINI_BASE_URL=fake.stdout.readline().strip(),
            DJANGO_SETTINGS_MODULE="gemini_clone.settings",
            LOG_LEVEL="WARNING",
        )
        _measure(replies=args.replies, rounds=args.rounds)
    finally:
        fake.terminate()
        fake.wait(timeout=10)


def _measure(*, replies: int, rounds: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts.models import User
    from chatrooms.models import Chatroom, Message
    from chatrooms.replies import reply_attempt
    from core.db import db_connection_release

    user, _ = User.objects.get_or_create(phone="+15550000001")
    cpu_ms, wall_ms = [], []
    try:
        for _ in range(rounds + 1):  # the first round warms up (imports, connections)
            ids = []
            for index in range(replies):
                # A chatroom each: a short history, as for most sends.
                chatroom = Chatroom.objects.create(user=user, name="reply_cpu")
                Message.objects.create(
                    chatroom=chatroom, role="user", content=f"Question {index}", status="completed"
                )
                reply = Message.objects.create(chatroom=chatroom, role="model", status="pending")
                ids.append(reply.pk)
            db_connection_release()
            cpu, wall = time.process_time(), time.perf_counter()
            for reply_id in ids:
                reply_attempt(reply_id=reply_id)
            cpu_ms.append((time.process_time() - cpu) * 1000 / replies)
            wall_ms.append((time.perf_counter() - wall) * 1000 / replies)
            unfinished = Message.objects.filter(pk__in=ids).exclude(status="completed")
            assert not unfinished.exists(), list(unfinished.values("status", "error_message")[:3])
            Chatroom.objects.filter(user=user).delete()
    finally:
        Chatroom.objects.filter(user=user).delete()
    for index, (cpu_round, wall_round) in enumerate(zip(cpu_ms[1:], wall_ms[1:], strict=True)):
        print(f"round {index + 1}: {cpu_round:.2f} ms CPU, {wall_round:.2f} ms wall per reply")
    print(
        f"median of {rounds} rounds of {replies}: {statistics.median(cpu_ms[1:]):.2f} ms CPU, "
        f"{statistics.median(wall_ms[1:]):.2f} ms wall per reply"
    )


if __name__ == "__main__":
    main()
