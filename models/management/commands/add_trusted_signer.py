from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from models.models import ModelFamily


class Command(BaseCommand):
    help = ("Trust a key's OpenSSF model signatures (model.sig) on a family's checkpoints; the "
            "family's checkpoints that carry one are checked again.")

    def add_arguments(self, parser):
        parser.add_argument("family", metavar="ORG/NAME")
        parser.add_argument("--public-key", required=True, metavar="PEM")
        parser.add_argument("--name", required=True, help="who holds the key, e.g. training-ci")
        parser.add_argument("--user", required=True, help="the release manager doing this")

    def handle(self, *args, **options):
        from models.provenance import add_trusted_signer

        org, _, name = options["family"].partition("/")
        family = ModelFamily.objects.filter(org=org, name=name).first()
        if family is None:
            raise CommandError(f"no family {options['family']}: submit a checkpoint to it first",
                               returncode=2)
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']}", returncode=2)
        try:
            pem = Path(options["public_key"]).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {options['public_key']}: {exc.strerror}",
                               returncode=2) from None
        try:
            signer = add_trusted_signer(actor=user, family=family, name=options["name"],
                                        public_pem=pem)
        except PermissionDenied as exc:
            raise CommandError(str(exc), returncode=1) from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages), returncode=2) from None
        self.stdout.write(f"{family} trusts {signer.name} (key {signer.key_id})")
