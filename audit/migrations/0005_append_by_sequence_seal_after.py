"""Events are appended with an id from a database sequence (no chain-head lock on the write
path) and sealed into the chain after commit (audit/sealing.py). Existing events are sealed
already (their id equals their seq); the sequence starts after the highest id."""

from django.db import migrations, models


def start_sequence_after_existing_ids(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return  # SQLite's AUTOINCREMENT continues from the highest rowid on its own
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), "
                       "COALESCE((SELECT MAX(id) FROM audit_auditevent), 0) + 1, false)")


class Migration(migrations.Migration):

    dependencies = [("audit", "0004_anchored_heads")]

    operations = [
        migrations.AlterField(
            model_name="auditevent", name="id",
            field=models.BigAutoField(primary_key=True, serialize=False)),
        migrations.RunPython(start_sequence_after_existing_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent", name="seq",
            field=models.BigIntegerField(blank=True, null=True, unique=True,
                                         help_text="Position in the hash chain, from 1; empty "
                                                   "until the event is sealed.")),
        migrations.AlterField(
            model_name="auditevent", name="prev_hash",
            field=models.CharField(blank=True, max_length=64)),
        migrations.AlterField(
            model_name="auditevent", name="hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True)),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["id"]}),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(condition=models.Q(("seq__isnull", True)), fields=["id"],
                               name="audit_event_unsealed")),
    ]
