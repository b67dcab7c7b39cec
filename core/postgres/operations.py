"""Django's PostgreSQL operations and features, within the parameter limit of server-side
binding (`DB_PREPARED_STATEMENTS`): every value is then a parameter, and one statement
carries at most 65,535 of them. Django batches `bulk_create` and a deletion's cascades by
`bulk_batch_size`, which for PostgreSQL has no bound of its own: a user's 66,000 refresh
tokens made account deletion fail. With client-side binding the batches are merely smaller
than they need be. Not bounded here: `bulk_update`, whose objects cost two parameters per
field (nothing of ours calls it), and the one UPDATE of a SET_NULL cascade over more than
65,535 parents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.backends.postgresql import features, operations

# PostgreSQL's extended query protocol counts a statement's parameters in 16 bits.
MAX_QUERY_PARAMETERS = 65_535


class DatabaseFeatures(features.DatabaseFeatures):
    max_query_params = MAX_QUERY_PARAMETERS  # QuerySet.in_bulk batches by it


class DatabaseOperations(operations.DatabaseOperations):
    def bulk_batch_size(self, fields: Sequence[Any], objs: Sequence[Any]) -> int:
        return min(len(objs), MAX_QUERY_PARAMETERS // max(len(fields), 1))
