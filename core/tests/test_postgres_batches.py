"""Statements within PostgreSQL's limit of 65,535 parameters (`core.postgres.operations`),
which server-side binding (DB_PREPARED_STATEMENTS, on by default) makes a real bound."""

import pytest
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import User
from accounts.services import account_delete
from core.postgres.operations import MAX_QUERY_PARAMETERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def server_side_binding():
    """Client-side binding has no parameter limit: without the setting, nothing is tested."""
    if not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        pytest.skip("DB_PREPARED_STATEMENTS is off: no parameter limit to stay within")


def _refresh_tokens_stored(user: User, count: int) -> None:
    """`count` outstanding refresh tokens of `user`, in one statement (md5 jtis: hex)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OutstandingToken._meta.db_table} "  # noqa: S608 (ours)
            "(user_id, jti, token, created_at, expires_at) "
            "SELECT %s, md5(n::text), 't', now(), now() + interval '7 days' "
            "FROM generate_series(1, %s) AS n",
            [user.pk, count],
        )


def test_an_account_with_more_refresh_tokens_than_a_statement_has_parameters_is_deleted(
    server_side_binding,
):
    """Django deletes a user's tokens' blacklist and family rows with `token_id IN (...)`:
    one statement for all of them, unless the backend batches it."""
    user = User.objects.create_user(phone="+919812345777", password=None)
    tokens = MAX_QUERY_PARAMETERS + 500
    _refresh_tokens_stored(user, tokens)

    account_delete(user=user)

    assert not User.objects.filter(pk=user.pk).exists()
    assert not OutstandingToken.objects.filter(user_id=user.pk).exists()


def test_bulk_batches_fit_the_parameter_limit():
    fields = OutstandingToken._meta.concrete_fields[1:4]
    assert connection.ops.bulk_batch_size(fields, range(100)) == 100
    assert connection.ops.bulk_batch_size(fields, range(10**6)) == MAX_QUERY_PARAMETERS // 3
    # bulk_update's shape: the key twice, then the fields; 1 + 2 x 3 parameters per object.
    pk = OutstandingToken._meta.pk
    shaped = [pk, pk, *fields]
    assert connection.ops.bulk_batch_size(shaped, range(10**6)) == MAX_QUERY_PARAMETERS // 7


def test_bulk_update_over_many_rows_fits_the_parameter_limit(server_side_binding):
    """bulk_update costs 2 parameters per field and object, and one more for the key: 11 per
    object for these five fields, so 6,000 objects (more than 65,535 // 11, fewer than
    65,535 // 7, the seven columns Django names) are too many for one statement. Few rows,
    as tests go: PostgreSQL's time for the CASE grows with the square of a batch."""
    user = User.objects.create_user(phone="+919812345778", password=None)
    rows = 6_000
    _refresh_tokens_stored(user, rows)
    tokens = list(OutstandingToken.objects.filter(user_id=user.pk))
    for token in tokens:
        token.token = "u"
        token.jti = "j" + token.jti[1:]  # md5 is hex: no old value starts with "j"

    fields = ["user", "jti", "token", "created_at", "expires_at"]
    assert OutstandingToken.objects.bulk_update(tokens, fields) == rows
    assert OutstandingToken.objects.filter(user_id=user.pk, token="u").count() == rows
