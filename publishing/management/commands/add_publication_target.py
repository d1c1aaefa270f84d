"""python manage.py add_publication_target ORG/NAME --endpoint URL --repo REMOTE_ORG/NAME
(--token-env VAR | --token-stdin) [--user USERNAME]"""

import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from models.models import ModelFamily
from publishing.services import PublicationInputError, add_publication_target


class Command(BaseCommand):
    help = ("Mirror a family's published stages to a repo on a Hugging Face Hub. The token is "
            "read by the workers from an environment variable (--token-env), or read from "
            "standard input and stored encrypted (--token-stdin); never give it on the command "
            "line.")

    def add_arguments(self, parser):
        parser.add_argument("family", help="ORG/NAME of the Stagegate family")
        parser.add_argument("--endpoint", required=True,
                            help="the Hub, e.g. https://huggingface.co")
        parser.add_argument("--repo", required=True, help="REMOTE_ORG/NAME on that Hub")
        token = parser.add_mutually_exclusive_group(required=True)
        token.add_argument("--token-env", help="the workers' environment variable with the token")
        token.add_argument("--token-stdin", action="store_true",
                           help="read the token from standard input and store it encrypted")
        parser.add_argument("--user", help="record this release manager as the one who added it")

    def handle(self, *args, family, endpoint, repo, token_env, token_stdin, user, **options):
        org, _, name = family.partition("/")
        found = ModelFamily.objects.filter(org=org, name=name).first()
        if found is None:
            raise CommandError(f"no family {family!r} (give ORG/NAME as on its page)")
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        token = sys.stdin.readline().strip() if token_stdin else ""
        if token_stdin and not token:
            raise CommandError("--token-stdin: standard input held no token")
        try:
            target = add_publication_target(actor=actor, family=found, endpoint=endpoint,
                                            remote_repo=repo, token_env=token_env or "",
                                            token=token)
        except PublicationInputError as exc:
            raise CommandError(str(exc)) from None
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"publication target {target.pk}: {target} "
                          f"(token: {target.token_source}); published stages of the family are "
                          "mirrored there from now on")
