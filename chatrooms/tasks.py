"""Celery tasks of the reply pipeline (being written this session)."""

from celery import shared_task


@shared_task(name="chatrooms.reply_generate")
def reply_generate(reply_id: int) -> None:
    raise NotImplementedError
