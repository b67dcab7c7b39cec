from django.apps import AppConfig

from core import checks  # noqa: F401  (registers the system checks; it imports no model)


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
