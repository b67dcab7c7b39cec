"""The broker connection of the Celery app: kombu's, safe to close once it was collected.

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
"""

from __future__ import annotations

from celery.app.amqp import AMQP
from kombu import Connection


class CollectSafeConnection(Connection):
    def collect(self, socket_timeout: float | None = None) -> None:
        try:
            super().collect(socket_timeout)
        finally:
            self._default_channel = None


class BrokerAmqp(AMQP):
    """Celery's messaging layer with the connection above (`Celery(amqp=...)`)."""

    Connection = CollectSafeConnection
