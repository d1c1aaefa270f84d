from django.core.management.base import BaseCommand, CommandError

from releases.models import StagePublication


class Command(BaseCommand):
    help = ("Sign every published stage that has no signatures yet (stages published before "
            "signing existed, or whose signing is still being retried); safe to run twice.")

    def handle(self, *args, **options):
        from releases.signatures import sign_after_publication
        from signing.keys import SigningKeyMissing, current_key

        try:
            current_key()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc), returncode=1) from None
        pending = list(StagePublication.objects.filter(signature__isnull=True)
                       .values_list("pk", flat=True))
        for publication_id in pending:
            sign_after_publication(publication_id)
        self.stdout.write(f"signed {len(pending)} published stage(s)")
