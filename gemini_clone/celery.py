"""The Celery app. Tasks live in each app's `tasks.py` and are discovered from INSTALLED_APPS."""

import os

from celery import Celery
from celery.signals import setup_logging, worker_init
from django.conf import settings

from gemini_clone.worker_priority import worker_priority_lower

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gemini_clone.settings")

app = Celery("gemini_clone", amqp="gemini_clone.broker:BrokerAmqp")
app.config_from_object("gemini_clone.celery_config:CELERY_CONFIG")
app.autodiscover_tasks()
# By name: the step reads the database, which Django sets up when the worker starts.
app.steps["consumer"].add("gemini_clone.worker_heartbeat:WorkerHeartbeat")


@setup_logging.connect
def _logging_from_django_settings(**_: object) -> None:
    """Worker and beat log like the web server: Django's LOGGING (core/logging_config.py),
    applied when Django starts, instead of Celery's own handlers on the root logger. So
    LOG_LEVEL and LOG_FORMAT rule them too (Celery's --loglevel would do nothing)."""


@worker_init.connect
def _worker_priority_lowered(**_: object) -> None:
    worker_priority_lower(settings.WORKER_NICE)
