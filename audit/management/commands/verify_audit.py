from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.services import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit log's hash chain; exit 0 when intact, 1 naming the first broken link."

    def handle(self, *args, **options):
        broken = verify_chain()
        if broken:
            raise CommandError(f"audit chain broken: {broken.reason}", returncode=1)
        self.stdout.write(f"audit chain intact: {AuditEvent.objects.count()} events")
