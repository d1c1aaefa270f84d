"""python manage.py add_canary ORG/NAME --template T --alphabet A --length N --secret S"""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from evaluations.services import EvalRequestError, add_canary
from models.models import ModelFamily


class Command(BaseCommand):
    help = "Register a canary (a secret inserted into a family's training data) for canary_exposure."

    def add_arguments(self, parser):
        parser.add_argument("family", help="org/name")
        parser.add_argument("--template", required=True, help='e.g. "my secret code is {}"')
        parser.add_argument("--alphabet", required=True, help="e.g. 0123456789")
        parser.add_argument("--length", required=True, type=int)
        parser.add_argument("--secret", required=True, help="never printed or shown again")
        parser.add_argument("--user", help="record this user as the one who registered it")

    def handle(self, *args, family, template, alphabet, length, secret, user, **options):
        org, _, name = family.partition("/")
        target = ModelFamily.objects.filter(org=org, name=name).first()
        if target is None:
            raise CommandError(f"no family {family!r}; submit a checkpoint to it first")
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        try:
            canary = add_canary(actor=actor, family=target, template=template, alphabet=alphabet,
                                length=length, secret=secret)
        except (EvalRequestError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{canary.label} registered for {target} "
                          f"(|R| = {len(alphabet) ** length:,}); the secret is not shown again")
