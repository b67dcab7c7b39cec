"""Idempotency records keep the rendered answer (body text and headers) instead of a JSON
value, so a replay is byte for byte the first answer."""

import json

from django.db import migrations, models


def _to_text(apps, schema_editor):
    Record = apps.get_model("chatrooms", "IdempotencyRecord")
    for record in Record.objects.all().iterator():
        record.response_body_text = json.dumps(
            record.response_body, ensure_ascii=False, separators=(",", ":")
        )
        record.save(update_fields=["response_body_text"])


class Migration(migrations.Migration):
    dependencies = [("chatrooms", "0002_message_created_at_default")]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="response_headers",
            field=models.JSONField(default=dict),
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="response_body_text",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.RunPython(_to_text, migrations.RunPython.noop),
        migrations.RemoveField(model_name="idempotencyrecord", name="response_body"),
        migrations.RenameField(
            model_name="idempotencyrecord", old_name="response_body_text", new_name="response_body"
        ),
    ]
