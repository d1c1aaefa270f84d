"""python manage.py submit_checkpoint PATH --family ORG/NAME --label LABEL --user USERNAME [--json]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from models import blobstore, services
from models.localfiles import NotACheckpointPath, collect_files
from models.errors import SubmissionError


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = self.done / self.total
            rate = self.done / max(now - self.started, 1e-6)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r  [{bar:<30}] {frac:6.1%}  {blobstore.format_size(self.done)}"
                              f" of {blobstore.format_size(self.total)}  "
                              f"{blobstore.format_size(int(rate))}/s ")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


class Command(BaseCommand):
    help = "Submit a checkpoint file or model folder for review."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a .safetensors/.bin/... file or a model folder")
        parser.add_argument("--family", required=True, help="org/name, e.g. eleuther/pythia-70m")
        parser.add_argument("--label", required=True, help="unique in the family, e.g. step1000")
        parser.add_argument("--user", required=True, help="the submitting user's username")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print one JSON object with id, manifest_digest, parameters, status")

    def handle(self, *args, path, family, label, user, as_json: bool = False, **options):
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"no user named {user!r}; check --user")
        root = Path(path).expanduser()
        try:
            files, skipped = collect_files(root)
        except NotACheckpointPath as exc:
            raise CommandError(str(exc)) from None
        if skipped:
            self.stderr.write(f"skipping {len(skipped)} hidden file(s), e.g. {skipped[0]}")
        progress = Progress(sum(local.stat().st_size for _, local in files))
        staged: list[blobstore.StagedFile] = []
        try:
            for relative, local in files:
                staged.append(blobstore.stage_local_file(relative, local, progress=progress))
            progress.finish()
            checkpoint = services.submit_checkpoint(actor=actor, family_name=family,
                                                    label=label, files=staged)
        except (SubmissionError, blobstore.FileTooLarge, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"could not read {exc.filename or path}: {exc.strerror or exc}") from None
        finally:
            for item in staged:
                item.discard()
        if as_json:
            self.stdout.write(json.dumps({
                "id": checkpoint.pk, "family": checkpoint.family.repo_id, "label": checkpoint.label,
                "manifest_digest": checkpoint.manifest_digest, "commit": checkpoint.commit,
                "parameters": checkpoint.parameters, "status": checkpoint.status,
                "census": checkpoint.census}))
            return
        census = checkpoint.census
        self.stdout.write(
            f"Submitted {checkpoint} (id {checkpoint.pk}, {checkpoint.get_status_display()})\n"
            f"  manifest digest  {checkpoint.manifest_digest}\n"
            f"  parameters       {census['parameters']['total']:,} "
            f"({', '.join(f'{k}: {v:,}' for k, v in census['parameters']['by_dtype'].items())})\n"
            f"  tensors          {census['tensor_count']}\n"
            f"  files            {census['file_count']} ({blobstore.format_size(census['bytes']['total'])})")
        if census.get("scan_pending"):
            self.stdout.write(
                f"  not yet counted  {', '.join(census['scan_pending'])}: pickle files are read only "
                f"after the scanner proves them safe (see the checkpoint page)")

