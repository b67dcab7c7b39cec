from celery import shared_task


@shared_task(name="core.ping", time_limit=10)
def ping() -> str:
    """Health task: a worker that answers is a worker that consumes the queue."""
    return "pong"
