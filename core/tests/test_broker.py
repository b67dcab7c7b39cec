"""The Celery broker connection (gemini_clone/broker.py)."""

from gemini_clone.broker import RedisTransport
from gemini_clone.celery import app


def test_messages_are_published_through_one_redis_client_per_channel():
    """The channel Celery's own publishes go through (the producer pool's: beat, a task's
    retry) is ours, and it hands out the same client every time instead of building one per
    message. The reply's enqueue keeps producers of its own (test_task_publish.py)."""
    with app.producer_or_acquire() as producer:
        assert isinstance(producer.connection.transport, RedisTransport)
        channel = producer.channel
        assert channel._create_client() is channel._create_client()
