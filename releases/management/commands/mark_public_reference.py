"""python manage.py mark_public_reference ORG/NAME@LABEL --note TEXT   (or --unmark --reason TEXT)"""

from django.core.management.base import BaseCommand, CommandError

from releases.errors import ReleaseInputError
from releases.references import (find_checkpoint, mark_public_reference,
                                 unmark_public_reference)


class Command(BaseCommand):
    help = ("Mark a checkpoint as already public, so policies' relative thresholds "
            "(max_above_reference, reference: ORG/NAME@LABEL) compare releases with it; "
            "--unmark withdraws the mark.")

    def add_arguments(self, parser):
        parser.add_argument("reference", help="ORG/NAME@LABEL")
        parser.add_argument("--note", default="", help="where and since when it is public")
        parser.add_argument("--unmark", action="store_true")
        parser.add_argument("--reason", default="", help="why it no longer counts (--unmark)")

    def handle(self, *args, reference, note, unmark, reason, **options):
        try:
            checkpoint = find_checkpoint(reference)
            if checkpoint is None:
                raise CommandError(f"no checkpoint {reference}; submit it first "
                                   "(manage.py submit_checkpoint)")
            if unmark:
                unmark_public_reference(actor=None, checkpoint=checkpoint, reason=reason)
                self.stdout.write(f"{reference} is no longer a reference")
            else:
                mark_public_reference(actor=None, checkpoint=checkpoint, note=note)
                self.stdout.write(f"{reference} is marked as already public (checkpoint "
                                  f"{checkpoint.pk}, {checkpoint.manifest_digest[:12]})")
        except ReleaseInputError as exc:
            raise CommandError(str(exc)) from None
