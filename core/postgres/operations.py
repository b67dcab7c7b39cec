"""Django's PostgreSQL operations and features, within the parameter limit of server-side
binding (`DB_PREPARED_STATEMENTS`): every value is then a parameter, and one statement
carries at most 65,535 of them. Django batches `bulk_create` and a deletion's cascades by
`bulk_batch_size`, which for PostgreSQL has no bound of its own: a user's 66,000 refresh
tokens made account deletion fail. With client-side binding the batches are merely smaller
than they need be. Not bounded here: the one UPDATE of a SET_NULL cascade over more than
65,535 parents (Django joins its batches into one statement)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.backends.postgresql import features, operations

# PostgreSQL's extended query protocol counts a statement's parameters in 16 bits.
MAX_QUERY_PARAMETERS = 65_535


class DatabaseFeatures(features.DatabaseFeatures):
    max_query_params = MAX_QUERY_PARAMETERS  # QuerySet.in_bulk batches by it


class DatabaseOperations(operations.DatabaseOperations):
    def bulk_batch_size(self, fields: Sequence[Any], objs: Sequence[Any]) -> int:
        columns = sum(
            len(field.fields) if isinstance(field, models.CompositePrimaryKey) else 1
            for field in fields
        )
        # An insert or a cascade's IN costs one parameter per column named; bulk_update names
        # the key twice and each field once, but costs each field twice (WHEN key THEN value)
        # and the key once more: two per column bounds both.
        return min(len(objs), max(MAX_QUERY_PARAMETERS // max(2 * columns, 1), 1))
