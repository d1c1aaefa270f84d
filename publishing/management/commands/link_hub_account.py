"""python manage.py link_hub_account USERNAME --endpoint URL --username HUB_NAME [--user ACTOR]"""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from publishing.services import PublicationInputError, link_hub_account


class Command(BaseCommand):
    help = ("Record a Stagegate user's account name on a Hub: the name a publication target "
            "grants that person's access to (e.g. a partner's, from their agreement).")

    def add_arguments(self, parser):
        parser.add_argument("username", help="the Stagegate user")
        parser.add_argument("--endpoint", required=True,
                            help="the Hub, e.g. https://huggingface.co")
        parser.add_argument("--username", dest="hub_username", required=True,
                            help="their user name on that Hub")
        parser.add_argument("--user", help="record this release manager as the one who linked it")

    def handle(self, *args, username, endpoint, hub_username, user, **options):
        users = get_user_model().objects
        person = users.filter(username=username).first()
        if person is None:
            raise CommandError(f"no user named {username!r}")
        actor = None
        if user:
            actor = users.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        try:
            account = link_hub_account(actor=actor, user=person, endpoint=endpoint,
                                       username=hub_username)
        except (PublicationInputError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{account}")
