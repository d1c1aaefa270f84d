"""The CAS collects what it no longer needs (models/xet/store.py, collect): a xorb remembers when
it was last offered or used, and whether its bytes were dropped because committed files hold all
its chunks; a Xet file remembers that a commit rebuilt it and found its sha256 true."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("registry", "0004_trusted_signers")]

    operations = [
        migrations.AddField(
            model_name="xorb", name="last_used_at",
            field=models.DateTimeField(default=django.utils.timezone.now, help_text=(
                "When a dedup answer offered it or a shard used it last: a client may name it "
                "until well after that, so it is kept."))),
        migrations.AddField(
            model_name="xorb", name="bytes_dropped_at",
            field=models.DateTimeField(blank=True, null=True, help_text=(
                "Set when every chunk is in a committed file: the bytes are deleted and chunks "
                "are read from those files' blobs (models/xet/store.py, collect)."))),
        migrations.AddField(
            model_name="xetfile", name="rebuilt_at",
            field=models.DateTimeField(blank=True, null=True, help_text=(
                "When a commit rebuilt it from its chunks and the bytes hashed to its sha256: "
                "only then may its blob stand in for the chunks."))),
    ]
