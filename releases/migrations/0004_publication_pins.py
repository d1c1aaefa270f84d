"""Publication pins, pinned evidence, supersession, reopened bytes (schema; 0005 fills them)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0002_scan_reports'),
        ('releases', '0003_awaiting_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='BytesReopening',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('manifest_digest', models.CharField(db_index=True, max_length=64)),
                ('reason', models.TextField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name='policyversion',
            name='evidence',
            field=models.JSONField(blank=True, default=dict, help_text='Pinned at load time, for every eval the policy reads: the exact parameters and the sha256 of every pack that count ({eval: {params, packs}}). Runs with any other key are exploratory.'),
        ),
        migrations.AddField(
            model_name='release',
            name='failed_evals',
            field=models.JSONField(blank=True, default=list, help_text='Required evals that failed or errored, [{eval, error}], kept by the workflow so the review queue can say why without re-reading every run.'),
        ),
        migrations.AddField(
            model_name='release',
            name='published_checkpoint',
            field=models.ForeignKey(blank=True, help_text="The bytes every published stage serves, pinned at the first publication; from then on the release's checkpoint can never change (new bytes are a new release).", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='registry.checkpoint'),
        ),
        migrations.AddField(
            model_name='release',
            name='supersedes',
            field=models.ForeignKey(blank=True, help_text='The release whose bytes this one replaces.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='superseded_by', to='releases.release'),
        ),
        migrations.AddField(
            model_name='stagepublication',
            name='checkpoint',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='registry.checkpoint'),
        ),
        migrations.AddField(
            model_name='stagepublication',
            name='tier',
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name='bytesreopening',
            name='release',
            field=models.OneToOneField(help_text='The rejected or withdrawn release this lifts.', on_delete=django.db.models.deletion.PROTECT, related_name='reopening', to='releases.release'),
        ),
        migrations.AddField(
            model_name='bytesreopening',
            name='reopened_by',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
    ]
