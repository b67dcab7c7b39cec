"""Full-text search over messages (chatrooms/search.py): a generated column PostgreSQL keeps
up to date on every write, and its GIN index.

Adding a stored generated column rewrites the table under an exclusive lock (seconds per
million messages); on a large table, run this migration in a quiet moment. The model does
not declare the column, so no other query reads it.
"""

from django.db import migrations

_TABLE = "chatrooms_message"
# 'simple': words as written, lowercased, no stemming and no stop words, so every language
# is matched alike (an English stemmer would mangle Hindi or French). chatrooms/search.py
# parses queries with the same configuration.
SEARCH_CONFIG = "simple"


class Migration(migrations.Migration):
    dependencies = [("chatrooms", "0005_message_superseded_tokens_estimated")]

    operations = [
        migrations.RunSQL(
            sql=[
                f"ALTER TABLE {_TABLE} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
                f"(to_tsvector('{SEARCH_CONFIG}'::regconfig, content)) STORED",
                f"CREATE INDEX message_search ON {_TABLE} USING gin (search_vector)",
            ],
            reverse_sql=[
                "DROP INDEX message_search",
                f"ALTER TABLE {_TABLE} DROP COLUMN search_vector",
            ],
        ),
    ]
