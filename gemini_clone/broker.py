"""The broker connection of the Celery app: kombu's, safe to close once it was collected, and
with a Redis client that is built once instead of for every message sent.

When the broker goes away, Celery 5.7.0's consumer first *collects* the broken connection
(kombu's `Connection.collect()`: close the channels, then detach the transport) and then
closes it (`Consumer.on_connection_error_after_connected`, since celery/celery#10242). With
the Redis transport the collect's close of the default channel fails part-way, reading the
pending BRPOP's reply from the dead socket, and kombu keeps that half-closed channel as the
default channel. The close that follows finishes closing it: the channel puts its
unacknowledged messages back (any acks_late task running: a reply being generated), which
needs a new Redis connection pool, built from the transport's connection info that collect()
has just detached: AttributeError("'NoneType' object has no attribute 'hostname'"). Celery
only survives connection errors there, so the worker exits ("Unrecoverable error").

Here a collected connection forgets its default channel, as it forgets its transport, so the
close has nothing left to do, as in Celery 5.6. Unacknowledged messages that Redis kept stay
in its `unacked` hash, which a worker restores after the visibility timeout; the reply sweep
recovers their replies in any case.

kombu's Redis channel builds a new `redis.Redis` for every command it sends outside its
consumer loop, every publish included: about 200 µs of CPU each (most of it copying
redis-py's table of 170 response callbacks), on the send path of every message. A client
holds no connection of its own and is thread-safe, so the channel here keeps one per pool.
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP
from kombu import Connection
from kombu.transport import redis as kombu_redis


class _ClientReusingChannel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own client, which kombu already keeps
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:  # a new pool: a new client
            client = self._sync_client = super()._create_client()
        return client


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above; settings.py names it
    (`CELERY_BROKER_TRANSPORT`) when the broker is Redis."""

    Channel = _ClientReusingChannel


class CollectSafeConnection(Connection):
    def collect(self, socket_timeout: float | None = None) -> None:
        try:
            super().collect(socket_timeout)
        finally:
            self._default_channel = None


class BrokerAmqp(AMQP):
    """Celery's messaging layer with the connection above (`Celery(amqp=...)`)."""

    Connection = CollectSafeConnection
