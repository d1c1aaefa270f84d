"""python manage.py load_policy FILE [--user USERNAME]"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from releases.policies_service import load_policy_version
from releases.policy import PolicyError


class Command(BaseCommand):
    help = "Validate a policy YAML file and load it as the newest policy version."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--user", help="record this user as the one who loaded it")

    def handle(self, *args, file, user, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file} is not a file")
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        try:
            text = path.read_bytes().decode("utf-8")
            version, created = load_policy_version(actor=actor, text=text, source=path.name)
        except UnicodeDecodeError:
            raise CommandError(f"{path.name} is not UTF-8 text") from None
        except PolicyError as exc:
            raise CommandError(str(exc)) from None
        word = "loaded" if created else "already loaded"
        self.stdout.write(f"policy {version.name} {version.version} {word} "
                          f"(sha256 {version.content_hash[:16]}); new releases use it")
