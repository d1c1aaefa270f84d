"""After 0005 has pinned every publication: every publication names its checkpoint, and the
database refuses a published release's checkpoint ever changing. (Apart from 0005 because
PostgreSQL cannot alter a table that the same transaction has just updated rows of.)"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0002_scan_reports'),
        ('releases', '0005_pin_what_is_published'),
    ]

    operations = [
        migrations.AlterField(
            model_name='stagepublication',
            name='checkpoint',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='registry.checkpoint'),
        ),
        migrations.AddConstraint(
            model_name='release',
            constraint=models.CheckConstraint(condition=models.Q(('published_checkpoint__isnull', True), ('published_checkpoint', models.F('checkpoint')), _connector='OR'), name='published_bytes_never_change'),
        ),
    ]
