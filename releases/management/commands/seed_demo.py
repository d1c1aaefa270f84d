"""python manage.py seed_demo: the demo personas and families (idempotent)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import roles
from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt
from models import blobstore, services
from models.localfiles import collect_files
from models.models import Checkpoint, ModelFamily

PERSONAS = [
    # username, full name, roles, what they do
    ("alice", "Alice Archer", [roles.RESEARCHERS], "lab researcher: submits checkpoints"),
    ("bob", "Bob Baker", [roles.SAFETY], "safety reviewer"),
    ("carol", "Carol Chen", [roles.POLICY], "policy / legal reviewer"),
    ("dave", "Dave Diaz", [roles.RELEASE_MANAGERS], "release manager: publishes stages"),
    ("erin", "Erin Evans", [], "outside researcher: requests access, downloads"),
    ("mallory", "Mallory Moss", [], "outsider: refused everywhere"),
]
ADMIN = ("admin", "Stagegate Admin")

DEMO_FAMILY = "demo/tiny-gpt"
CORPUS = Path(__file__).resolve().parents[3] / "evaluations" / "data" / "demo_corpus.txt"


def password_for(username: str) -> str:
    return f"{username}-demo"


class Command(BaseCommand):
    help = "Create the demo personas and the demo model families. Running it twice changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
        parser.add_argument("--no-models", action="store_true",
                            help="create the personas only (no demo families); for scripts")

    def handle(self, *args, quiet: bool = False, no_models: bool = False, **options):
        users = self._personas()
        if not no_models:
            self._demo_family(users["alice"])
        if not quiet:
            self._print_logins()

    @transaction.atomic
    def _personas(self) -> dict:
        User = get_user_model()
        users = {}
        for username, full_name, role_names, _ in PERSONAS:
            user, created = User.objects.get_or_create(username=username, defaults={
                "first_name": full_name.split()[0], "last_name": full_name.split()[1],
                "email": f"{username}@example.org"})
            if created:
                user.set_password(password_for(username))
                user.save()
            for role in role_names:
                user.groups.add(Group.objects.get_or_create(name=role)[0])
            users[username] = user
        admin, created = User.objects.get_or_create(username=ADMIN[0], defaults={
            "first_name": "Stagegate", "last_name": "Admin", "email": "admin@example.org",
            "is_staff": True, "is_superuser": True})
        if created:
            admin.set_password(password_for(ADMIN[0]))
            admin.save()
        return users

    def _demo_family(self, alice) -> None:
        org, name = DEMO_FAMILY.split("/")
        family = ModelFamily.objects.filter(org=org, name=name).first()
        texts = [line for line in CORPUS.read_text().splitlines() if line.strip()]
        cache = Path(settings.DATA_DIR) / "demo-models"
        for label, steps in (("step0", 0), ("step300", 300)):
            if family and Checkpoint.objects.filter(family=family, label=label).exists():
                continue
            self.stderr.write(f"making {DEMO_FAMILY}@{label} (tiny GPT-2, {steps} training steps)…")
            folder = cached_tiny_gpt(cache, texts, TinyGPTSpec(steps=steps, seed=0),
                                     tokenizer_texts=texts)
            files, _ = collect_files(folder)
            staged = [blobstore.stage_local_file(rel, local) for rel, local in files]
            services.submit_checkpoint(actor=alice, family_name=DEMO_FAMILY, label=label,
                                       files=staged)
            family = ModelFamily.objects.get(org=org, name=name)
        if not family.description:
            family.description = "A tiny GPT-2 trained on the spot, to try every feature."
            family.save(update_fields=["description"])

    def _print_logins(self) -> None:
        self.stdout.write("\nDemo logins (username / password):")
        for username, full_name, role_names, what in PERSONAS:
            self.stdout.write(f"  {username:<8} {password_for(username):<14} {what}")
        self.stdout.write(f"  {ADMIN[0]:<8} {password_for(ADMIN[0]):<14} superuser (/admin/)")
