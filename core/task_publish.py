"""Queueing a task from the web's hot path for about two thirds of `Task.delay()`'s CPU.

Every send queues its reply. `delay()` goes through `apply_async` and `Celery.send_task`:
options merged and routed, a producer checked out of kombu's pool (a queue under a lock)
and back in, a result object built, the arguments' repr computed by `saferepr`. Measured
in-process with the Redis broker: about 355 µs of CPU per message, against about 230 µs
here, of which the LPUSH itself is about 70.

The message is built and sent by Celery's own `create_task_message` and
`send_task_message`, so its format, queue declaration, routing, retry policy and the
`before_task_publish` / `after_task_publish` signals (the request id rides on the first,
core/task_context.py) are Celery's, and so are the task's time limits and, when a task
queues another (the reply sweep), its parent's ids. Left out is what these messages never
use: a result (the tasks ignore theirs: no `reply_to`), a task's own queue or routing (ours
all go to the default queue), arguments other than ids.

kombu's producers are not thread-safe: each publish takes one from a list of idle ones (a
pop and an append, atomic under the GIL) and puts it back, so there are never more than
publishes run at once, and at most `broker_pool_limit` are kept. A producer whose publish
failed is dropped with its connection; a broken connection is otherwise mended by the retry
policy (`send_task_message` publishes through `Connection.ensure`).
"""

from __future__ import annotations

import os

from celery import Task
from celery.utils import uuid
from kombu import Producer

_idle_producers: list[Producer] = []
# A child process must not write on its parent's broker sockets.
os.register_at_fork(after_in_child=_idle_producers.clear)


def task_publish(task: Task, *ids: int) -> None:
    """Queue `task(*ids)`, as `task.delay(*ids)` does (run at once when
    CELERY_TASK_ALWAYS_EAGER is set)."""
    app = task.app
    if app.conf.task_always_eager:
        task.delay(*ids)
        return
    parent = app.current_worker_task
    message = app.amqp.create_task_message(
        uuid(),
        task.name,
        ids,
        {},
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        create_sent_event=app.conf.task_send_sent_event,
        root_id=(parent.request.root_id or parent.request.id) if parent else None,
        parent_id=parent.request.id if parent else None,
        ignore_result=task.ignore_result,
        argsrepr=repr(ids),
        kwargsrepr="{}",
    )
    try:
        producer = _idle_producers.pop()
    except IndexError:
        producer = app.amqp.Producer(app.connection_for_write())
    try:
        app.amqp.send_task_message(producer, task.name, message)
    except BaseException:
        producer.connection.release()
        raise
    kept = app.conf.broker_pool_limit  # None: no limit
    if kept is None or len(_idle_producers) < kept:
        _idle_producers.append(producer)
    else:
        producer.connection.release()
