"""Statements within PostgreSQL's limit of 65,535 parameters (`core.postgres.operations`),
which server-side binding (DB_PREPARED_STATEMENTS, on by default) makes a real bound."""

import pytest
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import User
from accounts.services import account_delete
from core.postgres.operations import MAX_QUERY_PARAMETERS

pytestmark = pytest.mark.django_db


def test_an_account_with_more_refresh_tokens_than_a_statement_has_parameters_is_deleted():
    """Django deletes a user's tokens' blacklist and family rows with `token_id IN (...)`:
    one statement for all of them, unless the backend batches it."""
    user = User.objects.create_user(phone="+919812345777", password=None)
    tokens = MAX_QUERY_PARAMETERS + 500
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OutstandingToken._meta.db_table} "  # noqa: S608 (ours)
            "(user_id, jti, token, created_at, expires_at) "
            "SELECT %s, md5(n::text), 't', now(), now() + interval '7 days' "
            "FROM generate_series(1, %s) AS n",
            [user.pk, tokens],
        )

    account_delete(user=user)

    assert not User.objects.filter(pk=user.pk).exists()
    assert not OutstandingToken.objects.filter(user_id=user.pk).exists()


def test_bulk_batches_fit_the_parameter_limit():
    fields = ["a", "b", "c"]
    assert connection.ops.bulk_batch_size(fields, range(100)) == 100
    assert connection.ops.bulk_batch_size(fields, range(10**6)) == MAX_QUERY_PARAMETERS // 6


def test_bulk_update_of_two_fields_over_many_rows_fits_the_parameter_limit():
    """bulk_update costs 2 parameters per field and object, and one more for the key: 5 per
    object here, so 16,383 objects (65,535 // 4, the four columns Django names) are too many
    for one statement."""
    user = User.objects.create_user(phone="+919812345778", password=None)
    rows = MAX_QUERY_PARAMETERS // 4 + 100
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OutstandingToken._meta.db_table} "  # noqa: S608 (ours)
            "(user_id, jti, token, created_at, expires_at) "
            "SELECT %s, md5(n::text), 't', now(), now() + interval '7 days' "
            "FROM generate_series(1, %s) AS n",
            [user.pk, rows],
        )
    tokens = list(OutstandingToken.objects.filter(user_id=user.pk))
    for token in tokens:
        token.token = "u"
        token.jti = "j" + token.jti[1:]

    assert OutstandingToken.objects.bulk_update(tokens, ["token", "jti"]) == rows
    assert OutstandingToken.objects.filter(user_id=user.pk, token="u").count() == rows
