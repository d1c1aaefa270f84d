"""Helpers for tests that submit real model folders."""

from __future__ import annotations

from pathlib import Path

from models import blobstore, services
from models.localfiles import collect_files


def submit_folder(actor, folder: Path, *, family="lab/tiny-gpt", label="step40"):
    files, _ = collect_files(folder)
    staged = [blobstore.stage_local_file(rel, local) for rel, local in files]
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)

