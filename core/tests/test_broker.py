"""The Celery broker connection (gemini_clone/broker.py)."""

from gemini_clone.broker import RedisTransport
from gemini_clone.celery import app


def test_messages_are_published_through_one_redis_client_per_channel():
    """The channel the enqueue path publishes on (the producer pool's) is ours, and it hands
    out the same client every time instead of building one per message."""
    with app.producer_or_acquire() as producer:
        assert isinstance(producer.connection.transport, RedisTransport)
        channel = producer.channel
        assert channel._create_client() is channel._create_client()
