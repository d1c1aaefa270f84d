"""Data: pin every published stage to the bytes it was published with. Its own migration,
because PostgreSQL cannot build 0004's indexes in a transaction that has just updated rows."""

from django.db import migrations


def pin_what_is_published(apps, schema_editor):
    """Pin every published stage to the bytes it was published with (its publication's
    manifest digest). A release whose checkpoint was changed after it published a stage (the
    hole this closes) goes back to the checkpoint it published: that is what its audience was
    approved to get; the changed bytes need a release of their own."""
    Release = apps.get_model("releases", "Release")
    StagePublication = apps.get_model("releases", "StagePublication")
    Checkpoint = apps.get_model("registry", "Checkpoint")
    for publication in StagePublication.objects.select_related("release__checkpoint"):
        release = publication.release
        checkpoint = (release.checkpoint if release.checkpoint.manifest_digest
                      == publication.manifest_digest else
                      Checkpoint.objects.filter(family_id=release.checkpoint.family_id,
                                                manifest_digest=publication.manifest_digest)
                      .order_by("created_at", "id").first())
        publication.checkpoint_id = checkpoint.pk
        publication.tier = release.tier
        publication.save(update_fields=["checkpoint", "tier"])
    for release in Release.objects.exclude(current_stage=""):
        latest = (StagePublication.objects.filter(release=release)
                  .order_by("-published_at", "-id").first())
        if latest is None:
            continue
        release.published_checkpoint_id = latest.checkpoint_id
        if release.checkpoint_id != latest.checkpoint_id:
            release.checkpoint_id = latest.checkpoint_id
            release.manifest_digest = latest.manifest_digest
        release.save(update_fields=["published_checkpoint", "checkpoint", "manifest_digest"])


class Migration(migrations.Migration):

    dependencies = [
        ('releases', '0004_publication_pins'),
    ]

    operations = [
        migrations.RunPython(pin_what_is_published, migrations.RunPython.noop),
    ]
