from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.sealing import lag
from audit.services import verify_chain


class Command(BaseCommand):
    help = ("Recompute the audit log's hash chain; exit 0 when intact, 1 naming the first broken "
            "link. With --heads, also check every event against the signed heads exported to a "
            "sink, which a rewrite of the database cannot change.")

    def add_arguments(self, parser):
        parser.add_argument("--heads", metavar="FILE",
                            help="exported heads: the file sink's JSON lines, or JSON")
        parser.add_argument("--public-key", metavar="PEM", action="append", default=[],
                            help="a public key the heads may be signed with (repeatable; "
                                 "default: the lab's current and retired keys)")

    def handle(self, *args, **options):
        broken = verify_chain()
        problem = None
        heads = []
        if options["heads"]:
            from audit.heads import read_heads, verify_heads

            path = Path(options["heads"])
            try:
                heads = read_heads(path.read_text(encoding="utf-8"), source=str(path))
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=2) from None
            except ValueError as exc:
                raise CommandError(str(exc), returncode=2) from None
            problem = verify_heads(heads, _public_keys(options["public_key"]))
        if problem and (broken is None or problem.seq <= broken.seq):
            raise CommandError(f"audit chain does not match the exported heads: {problem.reason}",
                               returncode=1)
        if broken:
            raise CommandError(f"audit chain broken: {broken.reason}", returncode=1)
        pending = lag()
        sealed = AuditEvent.objects.filter(seq__isnull=False).count()
        message = f"audit chain intact: {sealed} events"
        if heads:
            message += (f"; every event up to #{heads[-1]['seq']} matches the {len(heads)} "
                        "exported head(s)")
        if pending.unsealed:
            message += f"; {pending.sentence()}"
        self.stdout.write(message)


def _public_keys(paths: list[str]):
    from signing import keys

    if not paths:
        try:
            return keys.published_keys()
        except keys.SigningKeyMissing as exc:
            raise CommandError(str(exc), returncode=2) from None
    found = []
    for name in paths:
        try:
            found += keys.load_public_pems(Path(name).read_bytes(), source=name)
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}", returncode=2) from None
        except keys.SigningKeyMissing as exc:
            raise CommandError(str(exc), returncode=2) from None
    return found
