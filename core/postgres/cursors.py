"""The cursor of server-side binding (`DB_PREPARED_STATEMENTS`), whose prepared statements
survive a migration.

A migration that changes the type of a column a prepared statement returns makes PostgreSQL
refuse that statement on every connection that prepared it ("cached plan must not change
result type"), and psycopg, which prepared it, would keep sending it: each connection of
each running process would fail the statement until it closed. Outside a transaction the
refused statement changed nothing, so the connection's prepared statements are dropped
(`DEALLOCATE ALL`, on which psycopg forgets its own too) and the statement runs again.
Inside one, the transaction is lost either way, and its rollback drops them likewise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.backends.postgresql.base import ServerBindingCursor
from psycopg import Cursor, errors

if TYPE_CHECKING:  # django-stubs do not describe Django's psycopg cursors
    _Cursor = Cursor[Any]
else:
    _Cursor = ServerBindingCursor

_STALE_PLAN = "cached plan must not change result type"


class PreparedStatementsCursor(_Cursor):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        try:
            return super().execute(query, params, **kwargs)
        except errors.FeatureNotSupported as error:
            if _STALE_PLAN not in str(error) or not self.connection.autocommit:
                raise
        self.connection.execute("DEALLOCATE ALL")
        return super().execute(query, params, **kwargs)
