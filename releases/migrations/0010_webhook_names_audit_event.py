"""A webhook delivery names its audit event by id: the event is sealed (given its seq) after
the transaction that queued the delivery commits. Existing rows keep their value: before this,
an event's id was its seq."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("releases", "0009_signed_publications")]

    operations = [
        migrations.RemoveConstraint(model_name="webhookdelivery",
                                    name="one_delivery_per_event_and_endpoint"),
        migrations.RenameField(model_name="webhookdelivery", old_name="audit_seq",
                               new_name="audit_event"),
        migrations.AlterField(
            model_name="webhookdelivery", name="audit_event",
            field=models.BigIntegerField(help_text="The id of the audit event this delivery "
                                                   "announces.")),
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.UniqueConstraint(fields=["endpoint", "audit_event"],
                                               name="one_delivery_per_event_and_endpoint")),
    ]
