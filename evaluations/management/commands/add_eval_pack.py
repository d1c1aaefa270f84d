"""python manage.py add_eval_pack FILE"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluations.services import EvalRequestError, add_eval_pack


class Command(BaseCommand):
    help = "Validate and add an eval pack (JSONL with a YAML header); it becomes an eval by its name."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file} is not a file")
        try:
            pack = add_eval_pack(actor=None, data=path.read_bytes())
        except EvalRequestError as exc:
            raise CommandError(f"{path.name}: {exc}") from None
        self.stdout.write(f"pack {pack.name} version {pack.version} ({pack.type}, {pack.items} "
                          f"items, sha256 {pack.sha256[:12]}) is now the eval `{pack.name}`")
