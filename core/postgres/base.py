"""The backend Django loads for ENGINE "core.postgres": its own, but pooled with
LiveConnectionPool instead of a pool that checks nothing (or, with CONN_HEALTH_CHECKS, one
that makes a round trip to the server on every checkout); with server-side binding, batching
within its parameter limit (`core.postgres.operations`) and prepared statements that survive
a migration (`core.postgres.cursors`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

from core.postgres.cursors import PreparedStatementsCursor
from core.postgres.operations import DatabaseFeatures, DatabaseOperations
from core.postgres.pool import LiveConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
    # Django's own attributes, missing from django-stubs.
    _connection_pools: ClassVar[dict[str, Any]]
    _configure_connection: Callable[[Any], bool]

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if params.get("cursor_factory") is base.ServerBindingCursor:
            params["cursor_factory"] = PreparedStatementsCursor
        return params

    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        if options and self.alias != NO_DB_ALIAS and self.alias not in self._connection_pools:
            # As Django builds its own (django/db/backends/postgresql/base.py), with our class.
            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True
            pool = LiveConnectionPool(
                kwargs=kwargs,
                open=False,
                configure=self._configure_connection,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return super().pool
