"""Django's PostgreSQL operations and features, within the parameter limit of server-side
binding (`DB_PREPARED_STATEMENTS`): every value is then a parameter, and one statement
carries at most 65,535 of them. Django batches `bulk_create`, `bulk_update` and a
deletion's cascades by `bulk_batch_size`, which for PostgreSQL has no bound of its own: a
user's 66,000 refresh tokens made account deletion fail. With client-side binding the
batches are merely smaller than they need be. Not bounded here: the one UPDATE of a
SET_NULL cascade over more than 65,535 parents (Django joins its batches into one
statement)."""

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
        if len(fields) >= 2 and fields[0] is fields[1]:
            # bulk_update names the key twice, then the fields (django/db/models/query.py):
            # per object, each field costs a WHEN on every key column and a THEN, and the
            # key's columns come once more in the IN. (A THEN that is an expression with
            # parameters of its own, F("n") + 1, costs more: nothing of ours sends one.)
            key = _columns(fields[0])
            per_object = key + sum(_columns(field) * (key + 1) for field in fields[2:])
        else:  # an insert's row, or a cascade's IN: one parameter per column named
            per_object = sum(_columns(field) for field in fields)
        return min(len(objs), max(MAX_QUERY_PARAMETERS // max(per_object, 1), 1))


def _columns(field: Any) -> int:
    if isinstance(field, models.CompositePrimaryKey):
        return len(field.fields)
    # A ForeignObject over several columns (a ForeignKey names one: itself).
    related = getattr(field, "local_related_fields", None)
    return len(related) if related else 1
