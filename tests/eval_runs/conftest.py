from __future__ import annotations

from pathlib import Path

import pytest

from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt
from models import blobstore, services
from models.localfiles import collect_files

TEXTS = [f"the model number {i} reads the text and writes it down again" for i in range(40)]


@pytest.fixture(scope="session")
def tiny_model_dir(model_cache) -> Path:
    return cached_tiny_gpt(model_cache, TEXTS, TinyGPTSpec(steps=40, seed=1))


@pytest.fixture(scope="session")
def tiny_model_dir_v2(model_cache) -> Path:
    return cached_tiny_gpt(model_cache, TEXTS, TinyGPTSpec(steps=80, seed=1))


def submit_folder(actor, folder: Path, *, family="lab/tiny-gpt", label="step40"):
    files, _ = collect_files(folder)
    staged = [blobstore.stage_local_file(rel, local) for rel, local in files]
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)
