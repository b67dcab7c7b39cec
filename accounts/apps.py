from django.apps import AppConfig

from accounts import checks  # noqa: F401  (registers the system checks; it imports no model)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
