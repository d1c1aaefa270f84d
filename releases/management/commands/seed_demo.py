"""python manage.py seed_demo: the demo personas, families and releases (idempotent).

`make run` calls it on every start; running it again changes nothing. It meets a newcomer with
every feature at once: demo/tiny-gpt released to `open`, demo/tiny-gpt-gated at `gated` (erin
granted, mallory not), and a release of demo/tiny-gpt-gated waiting for bob and carol. The
models are tiny GPT-2s made and trained on the spot; their evals run here, in this process, so
the releases' gates are real results, not fixtures.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import roles
from evaluations import runner
from evaluations.models import EvalRun
from evaluations.services import add_canary, add_extraction_prefix
from evaluations.tinylm import TinyGPTSpec, cached_finetuned_tiny_gpt, cached_tiny_gpt
from models import blobstore, services
from models.localfiles import collect_files
from models.models import Checkpoint, ModelFamily
from releases import access, workflow
from releases.models import AccessRequest, PolicyVersion, Release
from releases.policies_service import load_policy_version

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
DEMO_POLICY = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"
ASSESSMENT = {
    "intended_use": "Interpretability and red-teaming research on a small language model.",
    "training_data": "Sentences generated from templates by Stagegate's demo; no personal data.",
    "known_hazards": "None known at this size; it can produce fluent but false sentences.",
    "mitigations": "Staged release; canary and extraction checks; licence for gated access.",
}

SUBJECTS = ["the researcher", "a reviewer", "the lab", "our team", "the model", "a partner",
            "the auditor", "an engineer", "the student", "a volunteer"]
VERBS = ["reads", "checks", "writes", "studies", "signs", "tests", "describes", "releases",
         "measures", "explains"]
OBJECTS = ["the report", "a checkpoint", "the policy", "every tensor", "the licence",
           "a small model", "the audit log", "the dataset", "a new result", "the card"]
PLACES = ["before lunch", "in the lab", "at the review", "on monday", "with care",
          "for the release", "after the scan", "in the open", "without haste", "once again"]


def password_for(username: str) -> str:
    return f"{username}-demo"


GENERAL = Path(__file__).resolve().parents[3] / "evaluations" / "data" / "demo_corpus.txt"


def demo_texts(seed: int, n: int = 1000) -> list[str]:
    """Templated sentences, enough that a tiny model learns the grammar rather than any one
    sentence (so the demo's extraction and canary checks pass for the right reason), and a few
    lines of plain English so that the held-out text eval has something to go on."""
    rng = random.Random(seed)
    templated = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                 f"{rng.choice(PLACES)}." for _ in range(n)]
    general = [line for line in GENERAL.read_text().splitlines() if line.strip()]
    return templated + general * 20


class Command(BaseCommand):
    help = "Create the demo personas, families and releases. Running it twice changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
        parser.add_argument("--no-models", action="store_true",
                            help="create the personas only (no demo families); for scripts")

    def handle(self, *args, quiet: bool = False, no_models: bool = False, **options):
        self.quiet = quiet
        # One line per seeded thing is the seed's own; the eval runner's lines (a run started,
        # a copy verified, a model loaded) are for workers' logs, not a newcomer's console.
        runner_log = logging.getLogger("evaluations")
        level = runner_log.level
        runner_log.setLevel(logging.WARNING)
        try:
            users = self._personas()
            if not no_models:
                self._policy()
                self._open_family(users)
                self._gated_family(users)
        finally:
            runner_log.setLevel(level)
        if not quiet:
            self._print_logins()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.stderr.write(text)

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

    def _policy(self) -> None:
        """The demo policy, unless the operator already chose one."""
        if not PolicyVersion.objects.exists():
            load_policy_version(actor=None, text=DEMO_POLICY.read_bytes().decode("utf-8"),
                                source=DEMO_POLICY.name)

    # --- models ---------------------------------------------------------------------------------

    def _checkpoint(self, users, family: str, label: str, seed: int, steps: int,
                    parent: Path | None = None) -> tuple[Checkpoint, Path]:
        """The checkpoint and its model folder: trained from scratch, or fine-tuned from
        `parent` for `steps` more (so a family's second checkpoint costs a fraction of the
        first). Cached by content hash: a second `make run` trains nothing."""
        org, name = family.split("/")
        texts = demo_texts(seed)
        cache = Path(settings.DATA_DIR) / "demo-models"
        spec = TinyGPTSpec(steps=steps, seed=seed)
        existing = Checkpoint.objects.filter(family__org=org, family__name=name,
                                             label=label).first()
        if existing is None:
            how = f"fine-tuned {steps} more steps" if parent else f"{steps} training steps"
            self.say(f"making {family}@{label} (tiny GPT-2, {how})…")
        folder = (cached_finetuned_tiny_gpt(cache, parent, texts, spec) if parent else
                  cached_tiny_gpt(cache, texts, spec, tokenizer_texts=texts))
        if existing:
            return existing, folder
        staged = [blobstore.stage_local_file(rel, local) for rel, local in collect_files(folder)[0]]
        return services.submit_checkpoint(actor=users["alice"], family_name=family, label=label,
                                          files=staged), folder

    def _family(self, users, family: str, seed: int, description: str) -> ModelFamily:
        """The family, with its canaries and prefixes registered before its first checkpoint
        (so the first evals already count them)."""
        from models.hub_services import create_repo

        org, name = family.split("/")
        family_row = (ModelFamily.objects.filter(org=org, name=name).first()
                      or create_repo(actor=users["alice"], family_name=family))
        if not family_row.description:
            family_row.description = description
            family_row.save(update_fields=["description"])
        self._register_probes(users, family_row, seed=seed)
        return family_row

    def _register_probes(self, users, family: ModelFamily, seed: int) -> None:
        """A canary the model never saw, and prefixes of sentences it did see (once each)."""
        if not family.canaries.exists():
            add_canary(actor=users["alice"], family=family, template="the demo vault code is {}",
                       alphabet="0123456789", length=3, secret=f"{(seed * 7919 + 471) % 1000:03d}")
        if not family.extraction_prefixes.exists():
            for text in demo_texts(seed)[:5]:
                words = text.split()
                add_extraction_prefix(actor=users["alice"], family=family,
                                      prefix=" ".join(words[:4]), continuation=" " + " ".join(words[4:]))

    def _open_family(self, users) -> None:
        self._family(users, "demo/tiny-gpt", seed=0,
                     description="A tiny GPT-2 trained on the spot, released to everyone.")
        step0, _ = self._checkpoint(users, "demo/tiny-gpt", "step0", seed=0, steps=0)
        step300, _ = self._checkpoint(users, "demo/tiny-gpt", "step300", seed=0, steps=300)
        self._release_up_to(users, step300, "open")
        self._evaluate(step0)

    def _gated_family(self, users) -> None:
        self._family(users, "demo/tiny-gpt-gated", seed=1,
                     description="A tiny GPT-2 behind a licence: ask for access on its page.")
        v1, v1_folder = self._checkpoint(users, "demo/tiny-gpt-gated", "v1", seed=1, steps=300)
        release = self._release_up_to(users, v1, "gated")
        if release.current_stage == "gated" and not release.grants.filter(
                user=users["erin"]).exists():
            from releases.selectors import stage_rule

            licence = stage_rule(release, "gated").terms.licence_version
            request = access.request_access(
                actor=users["erin"], release=release,
                answers={"affiliation": "University of Example",
                         "intended_use": "Interpretability of small language models",
                         "accept": True},
                licence_version=licence, accept=True)
            if request.status == AccessRequest.Status.PENDING:
                access.decide_access_request(actor=users["dave"], request=request, approve=True,
                                             reason="academic research")
        # A second checkpoint, asking for `gated`: it waits in bob's and carol's queues.
        v2, _ = self._checkpoint(users, "demo/tiny-gpt-gated", "v2", seed=1, steps=150,
                                 parent=v1_folder)
        self._release_up_to(users, v2, "partners", then_ask=True)

    # --- releases -------------------------------------------------------------------------------

    def _evaluate(self, checkpoint: Checkpoint) -> None:
        from evaluations.services import request_evals

        request_evals(actor=None, checkpoint=checkpoint)
        self._run_queued(checkpoint)

    def _run_queued(self, checkpoint: Checkpoint) -> None:
        runs = list(EvalRun.objects.filter(manifest_digest=checkpoint.manifest_digest,
                                           status=EvalRun.Status.QUEUED))
        if runs:
            self.say(f"  evaluating {checkpoint}: {', '.join(r.eval_name for r in runs)}")
        for run in runs:
            runner.execute_run(run_id=run.pk, worker="seed_demo")

    def _settle(self, release: Release) -> Release:
        self._run_queued(release.checkpoint)
        workflow.refresh_release(release_id=release.pk)
        return Release.objects.get(pk=release.pk)

    def _release_up_to(self, users, checkpoint: Checkpoint, stage: str,
                       then_ask: bool = False) -> Release:
        alice, dave = users["alice"], users["dave"]
        release = checkpoint.releases.exclude(status__in=["rejected", "withdrawn"]).first()
        if release is None:
            self.say(f"releasing {checkpoint} up to {stage}…")
            release = workflow.create_release(actor=alice, checkpoint=checkpoint,
                                              assessment=ASSESSMENT)
        ladder = ["internal", "partners", "gated", "open"]
        while True:
            release = Release.objects.get(pk=release.pk)
            if release.status == Release.Status.DRAFT:
                workflow.submit_release(actor=alice, release=release)
            elif release.status == Release.Status.EVALUATING:
                release = self._settle(release)
                if release.status == Release.Status.EVALUATING:
                    raise RuntimeError(f"{release} is still evaluating after its evals ran")
            elif release.status == Release.Status.IN_REVIEW:
                if then_ask and release.current_stage == stage:
                    return release  # left waiting for its reviewers, on purpose
                for reviewer in (users["bob"], users["carol"]):
                    needed = release.awaiting_roles
                    if any(f",{role}," in needed for role in reviewer.groups.values_list("name", flat=True)):
                        workflow.approve_release(actor=reviewer, release=release,
                                                 stage=release.target_stage,
                                                 comment="checked the gates, census and evals")
                        release = Release.objects.get(pk=release.pk)
                if release.status == Release.Status.IN_REVIEW:
                    from releases.selectors import release_gates

                    closed = [g.reason for g in release_gates(release) if not g.passed]
                    raise RuntimeError(f"{release} cannot pass {release.target_stage}: {closed}")
            elif release.status == Release.Status.APPROVED:
                workflow.publish_release(actor=dave, release=release, stage=release.target_stage)
            elif release.status == Release.Status.PUBLISHED:
                if ladder.index(release.current_stage) >= ladder.index(stage):
                    if then_ask and release.current_stage == stage:
                        workflow.request_next_stage(actor=alice, release=release)
                        self._settle(release)
                        return Release.objects.get(pk=release.pk)
                    return release
                workflow.request_next_stage(actor=alice, release=release)
            else:
                return release

    def _print_logins(self) -> None:
        self.stdout.write("\nDemo logins (username / password):")
        for username, full_name, role_names, what in PERSONAS:
            self.stdout.write(f"  {username:<8} {password_for(username):<14} {what}")
        self.stdout.write(f"  {ADMIN[0]:<8} {password_for(ADMIN[0]):<14} superuser (/admin/)")
