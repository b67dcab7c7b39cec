"""Prepared statements (DB_PREPARED_STATEMENTS, on by default) and a migration run by another
process while this one is up (`core.postgres.cursors`)."""

import psycopg
import pytest
from django.db import NotSupportedError, connection, transaction

from testing.e2e import database_url

pytestmark = pytest.mark.django_db(transaction=True)

_READ = "SELECT v FROM prepared_probe WHERE v = %s"


@pytest.fixture
def probe_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE prepared_probe (v varchar(20))")
        cursor.execute("INSERT INTO prepared_probe VALUES ('a')")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE prepared_probe")


def _prepare_and_migrate() -> None:
    with connection.cursor() as cursor:
        for _ in range(6):  # past DB_PREPARE_THRESHOLD: prepared on this connection
            cursor.execute(_READ, ["a"])
    with psycopg.connect(database_url(), autocommit=True) as migration:
        migration.execute("ALTER TABLE prepared_probe ALTER COLUMN v TYPE varchar(40)")


def test_a_statement_prepared_before_a_migration_still_runs_after_it(probe_table):
    _prepare_and_migrate()
    with connection.cursor() as cursor:
        cursor.execute(_READ, ["a"])
        assert cursor.fetchone() == ("a",)


def test_inside_a_transaction_only_the_first_attempt_fails(probe_table):
    _prepare_and_migrate()
    with (
        pytest.raises(NotSupportedError, match="cached plan"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(_READ, ["a"])
    with transaction.atomic(), connection.cursor() as cursor:  # the rollback dropped them
        cursor.execute(_READ, ["a"])
        assert cursor.fetchone() == ("a",)
