from django.apps import AppConfig

# Imported for what they register; neither imports a model.
from core import checks, task_context  # noqa: F401  (system checks; Celery signals)


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
