from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import TokenScope
from accounts.services import create_token


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it alone on stdout."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.ALL)
        parser.add_argument("--name", default="command line")

    def handle(self, *args, username, scope, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}; create one first (e.g. seed_demo)")
        _, raw = create_token(actor=user, user=user, name=name, scope=scope)
        self.stdout.write(raw)
