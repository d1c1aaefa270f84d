"""Helpers for tests that submit real model folders."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from models import blobstore, services
from models.localfiles import collect_files


def submit_folder(actor, folder: Path, *, family="lab/tiny-gpt", label="step40"):
    files, _ = collect_files(folder)
    staged = [blobstore.stage_local_file(rel, local) for rel, local in files]
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)


def in_background(script: str, *, cwd: Path, env: dict | None = None) -> Callable[[], dict]:
    """Start `script` in a fresh Python process now (beside a worker's run of the same eval);
    the function returned waits for it and gives the JSON its last line printed."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)

    def result() -> dict:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        return json.loads(stdout.strip().splitlines()[-1])

    return result
