"""Django's PostgreSQL backend, with a connection pool that hands out only live connections.

`DATABASES["default"]["ENGINE"] = "core.postgres"` (settings.py sets it).
"""
